"""The Azure OpenAI surface driven by ``openai.AzureOpenAI`` and by ``openai.OpenAI`` on ``/openai/v1``,
over real sockets, against a gateway whose deployments sit on the simulator; bodies validated
against the OpenAI spec where its schemas apply, errors in Azure's envelopes (platform.md §1)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from modelgate.simulator import SimulatorThread
from modelgate.surfaces.azure.versions import DATED_VERSIONS, GA_VERSIONS
from tests.openai_spec import OpenAISpec
from tests.support import RunningGateway, gateway_in_thread, openai_sim_config

MASTER = "mg-test-azure"
VERSION = "2024-10-21"
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Tell me about the sea"}]


@pytest.fixture(scope="module")
def gateway(sim: SimulatorThread) -> Iterator[RunningGateway]:
    with gateway_in_thread(openai_sim_config(sim.base_url, master_key=MASTER)) as running:
        yield running


def azure(gateway: RunningGateway, **options: Any) -> openai.AzureOpenAI:
    options.setdefault("api_key", MASTER)
    options.setdefault("api_version", VERSION)
    return openai.AzureOpenAI(azure_endpoint=gateway.base_url, max_retries=0, **options)


def v1(gateway: RunningGateway, key: str = MASTER, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.base_url}/openai/v1", api_key=key, max_retries=0, **options)


def post(gateway: RunningGateway, path: str, body: Any, key: str = MASTER, **options: Any) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}{path}", json=body, headers={"api-key": key}, timeout=10, **options)


def new_key(gateway: RunningGateway, **fields: Any) -> str:
    response = httpx.post(f"{gateway.base_url}/admin/keys", headers={"authorization": f"Bearer {MASTER}"},
                          json={"project": "azure", **fields}, timeout=10)
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


# --- the dated routes, as AzureOpenAI calls them -------------------------------------------------


def test_chat_with_api_key_and_with_an_entra_token(gateway: RunningGateway, openai_spec: OpenAISpec) -> None:
    raw = azure(gateway).chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
    completion = raw.parse()
    assert (completion.choices[0].message.content or "").startswith("Simulated reply from gpt-4o")
    assert raw.headers["x-modelgate-deployment"] == "gpt-4o"
    assert raw.headers["apim-request-id"] == raw.headers["x-request-id"] == completion.id.replace("chatcmpl-", "req_")
    assert all(f"x-ratelimit-{p}-{k}" in raw.headers for p in ("limit", "remaining", "reset")
               for k in ("requests", "tokens"))
    # azure_ad_token: the key rides as Authorization: Bearer, with no api-key header.
    with_token = azure(gateway, api_key=None, azure_ad_token=MASTER)
    assert with_token.chat.completions.create(model="gpt-4o", messages=USER).choices[0].message.content
    response = post(gateway, f"/openai/deployments/gpt-4o/chat/completions?api-version={VERSION}",
                    {"messages": USER})  # Azure needs no model in the body: the path names it
    assert response.status_code == 200
    openai_spec.validate("CreateChatCompletionResponse", response.json())


def test_the_path_deployment_wins_over_the_body_model(gateway: RunningGateway) -> None:
    client = azure(gateway, azure_deployment="grok-3-mini")
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
    assert raw.headers["x-modelgate-deployment"] == "grok-3-mini"
    assert (raw.parse().choices[0].message.content or "").startswith("Simulated reply from grok-3-mini")


def test_stream(gateway: RunningGateway, openai_spec: OpenAISpec) -> None:
    client = azure(gateway)
    whole = client.chat.completions.create(model="gpt-4o", messages=USER)
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=USER, stream=True,
                                                 stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]
    with httpx.stream("POST", f"{gateway.base_url}/openai/deployments/gpt-4o/chat/completions",
                      params={"api-version": VERSION}, headers={"api-key": MASTER},
                      json={"messages": USER, "stream": True}, timeout=10) as response:
        payloads = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert payloads[-1] == "[DONE]"
    for payload in payloads[:-1]:
        openai_spec.validate("CreateChatCompletionStreamResponse", json.loads(payload))


def test_embeddings_base64_by_default(gateway: RunningGateway, openai_spec: OpenAISpec) -> None:
    raw = azure(gateway).embeddings.with_raw_response.create(model="embed", input=["one", "two"])
    sent = json.loads(raw.http_request.content)
    assert sent["encoding_format"] == "base64"  # what the SDK asks for unless told otherwise
    vectors = [item.embedding for item in raw.parse().data]
    floats = v1(gateway).embeddings.create(model="embed", input=["one", "two"], encoding_format="float")
    for vector, expected in zip(vectors, floats.data, strict=True):
        assert vector == pytest.approx(expected.embedding)
    response = post(gateway, f"/openai/deployments/embed/embeddings?api-version={VERSION}", {"input": "one"})
    openai_spec.validate("CreateEmbeddingResponse", response.json())


def test_models_list_and_retrieve(gateway: RunningGateway, openai_spec: OpenAISpec) -> None:
    client = azure(gateway)
    names = {model.id for model in client.models.list()}
    assert {"gpt-4o", "grok-3-mini", "embed"} <= names
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"
    listing = httpx.get(f"{gateway.base_url}/openai/models", params={"api-version": VERSION},
                        headers={"api-key": MASTER}, timeout=10)
    openai_spec.validate("ListModelsResponse", listing.json())
    scoped = new_key(gateway, deployments=["gpt-4o"])
    assert [model.id for model in azure(gateway, api_key=scoped).models.list()] == ["gpt-4o"]


# --- the v1 routes ------------------------------------------------------------------------------


def test_v1_routes_with_the_plain_client(gateway: RunningGateway, openai_spec: OpenAISpec) -> None:
    client = v1(gateway)
    completion = client.chat.completions.create(model="gpt-4o", messages=USER)
    assert (completion.choices[0].message.content or "").startswith("Simulated reply from gpt-4o")
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=USER, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == completion.choices[0].message.content
    assert len(client.embeddings.create(model="embed", input="one").data[0].embedding) > 0
    assert "gpt-4o" in {model.id for model in client.models.list()}
    preview = v1(gateway, default_query={"api-version": "preview"})
    assert preview.chat.completions.create(model="gpt-4o", messages=USER).choices[0].message.content
    response = post(gateway, "/openai/v1/chat/completions", {"model": "gpt-4o", "messages": USER})
    openai_spec.validate("CreateChatCompletionResponse", response.json())
    with pytest.raises(openai.NotFoundError) as caught:
        v1(gateway, default_query={"api-version": VERSION}).chat.completions.create(model="gpt-4o", messages=USER)
    assert "needs no api-version" in caught.value.message


# --- errors, in Azure's envelopes ---------------------------------------------------------------


def test_missing_or_unserved_api_version_is_404_naming_the_served_ones(gateway: RunningGateway) -> None:
    missing = post(gateway, "/openai/deployments/gpt-4o/chat/completions", {"messages": USER})
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert set(error) == {"code", "message"} and error["code"] == "404"
    assert "api-version query parameter is required" in error["message"]
    assert all(version in error["message"] for version in DATED_VERSIONS)
    with pytest.raises(openai.NotFoundError) as caught:
        azure(gateway, api_version="2020-01-01").chat.completions.create(model="gpt-4o", messages=USER)
    assert "'2020-01-01' is not served" in caught.value.message and GA_VERSIONS[-1] in caught.value.message
    with pytest.raises(openai.NotFoundError):
        azure(gateway, api_version="2020-01-01").models.list()


def test_unknown_deployment_is_deployment_not_found(gateway: RunningGateway) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        azure(gateway).chat.completions.create(model="gpt-9", messages=USER)
    body: Any = caught.value.body
    assert set(body) == {"code", "message"} and body["code"] == "DeploymentNotFound"
    assert "'gpt-9'" in body["message"] and "/openai/models" in body["message"]
    with pytest.raises(openai.NotFoundError) as on_v1:
        v1(gateway).embeddings.create(model="gpt-9", input="one")
    assert on_v1.value.body["code"] == "DeploymentNotFound"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as retrieved:
        azure(gateway).models.retrieve("gpt-9")
    assert retrieved.value.body["code"] == "DeploymentNotFound"  # type: ignore[index]
    # A deployment the key may not use looks the same as one that does not exist.
    scoped = new_key(gateway, deployments=["gpt-4o"])
    with pytest.raises(openai.NotFoundError) as hidden:
        azure(gateway, api_key=scoped, azure_deployment="grok-3-mini").chat.completions.create(
            model="gpt-4o", messages=USER)
    assert hidden.value.body["code"] == "DeploymentNotFound"  # type: ignore[index]


def test_authentication_and_rate_limit_errors(gateway: RunningGateway) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        azure(gateway, api_key="wrong").chat.completions.create(model="gpt-4o", messages=USER)
    assert caught.value.body["code"] == "401"  # type: ignore[index]
    missing = httpx.post(f"{gateway.base_url}/openai/v1/chat/completions", timeout=10,
                         json={"model": "gpt-4o", "messages": USER})
    assert missing.status_code == 401 and "api-key" in missing.json()["error"]["message"]
    limited = new_key(gateway, rpm=1)
    client = azure(gateway, api_key=limited)
    client.chat.completions.create(model="gpt-4o", messages=USER)
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    assert refused.value.body["code"] == "429"  # type: ignore[index]
    assert int(refused.value.response.headers["retry-after"]) >= 1
    assert refused.value.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_bad_requests_are_openai_error_objects(gateway: RunningGateway, openai_spec: OpenAISpec) -> None:
    response = post(gateway, f"/openai/deployments/gpt-4o/chat/completions?api-version={VERSION}",
                    {"messages": USER, "temperature": "hot"})
    assert response.status_code == 400
    openai_spec.validate("ErrorResponse", response.json())
    assert response.json()["error"]["param"] == "temperature"
    malformed = httpx.post(f"{gateway.base_url}/openai/v1/chat/completions", content=b"{not json",
                           headers={"api-key": MASTER, "content-type": "application/json"}, timeout=10)
    assert malformed.status_code == 400 and malformed.json()["error"]["type"] == "invalid_request_error"


def test_unknown_paths_answer_in_azure_shape(gateway: RunningGateway) -> None:
    for path in ("/openai/deployments/gpt-4o/completions", "/openai/v1/files", "/openai/responses"):
        response = post(gateway, f"{path}?api-version={VERSION}", {})
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "404" and response.headers["apim-request-id"]
    wrong_method = httpx.get(f"{gateway.base_url}/openai/v1/chat/completions", timeout=10)
    assert wrong_method.status_code == 405


# --- the Responses API on the Azure routes --------------------------------------------------------


def test_responses_with_azure_openai_create_stream_retrieve_delete(gateway: RunningGateway,
                                                                  openai_spec: OpenAISpec) -> None:
    client = azure(gateway, api_version="2025-04-01-preview")
    raw = client.responses.with_raw_response.create(model="gpt-4o", input="Tell me about the sea")
    response = raw.parse()
    assert response.id.startswith("resp_") and response.output_text.startswith("Simulated reply from gpt-4o")
    assert raw.headers["apim-request-id"] == raw.headers["x-request-id"]
    # Stored, so the SDK's retrieve and input_items find it under the same dated routes.
    stored = client.responses.retrieve(response.id)
    assert stored.output_text == response.output_text
    openai_spec.validate("Response", stored.model_dump(mode="json", exclude_unset=True))
    items = client.responses.input_items.list(response.id)
    assert [item.type for item in items.data] == ["message"]
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)

    with client.responses.stream(model="grok-3-mini", input="Count to three") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final.output_text.startswith("Simulated reply from grok-3-mini")


def test_responses_on_a_deployment_route_and_on_v1(gateway: RunningGateway) -> None:
    # AzureOpenAI sends responses to /openai/responses whatever its azure_deployment; a client that
    # builds the deployment's URL itself gets the path's deployment, as for chat.
    response = post(gateway, "/openai/deployments/grok-3-mini/responses?api-version=2025-04-01-preview",
                    {"model": "gpt-4o", "input": "hello"})
    assert response.status_code == 200, response.text
    assert response.headers["x-modelgate-deployment"] == "grok-3-mini"
    first = v1(gateway).responses.create(model="gpt-4o", input="My name is Ada")
    second = v1(gateway).responses.create(model="grok-3-mini", input="What is my name?",
                                          previous_response_id=first.id)
    assert second.output_text.startswith("Simulated reply from grok-3-mini")
    assert v1(gateway).responses.retrieve(second.id).previous_response_id == first.id


def test_responses_need_a_version_that_has_them(gateway: RunningGateway) -> None:
    response = post(gateway, f"/openai/responses?api-version={VERSION}", {"model": "gpt-4o", "input": "hi"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "404"
    assert "2025-04-01-preview" in response.json()["error"]["message"]
    missing = httpx.get(f"{gateway.base_url}/openai/responses/resp_nope?api-version=2025-04-01-preview",
                        headers={"api-key": MASTER}, timeout=10)
    assert missing.status_code == 404 and "resp_nope" in missing.json()["error"]["message"]

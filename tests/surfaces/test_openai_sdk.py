"""The official openai SDK, sync and async, against a running gateway backed by the simulator.

Every response body and stream chunk is also validated against the official OpenAI spec.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageParam

from modelgate.simulator import SimConfig, SimulatorThread
from tests.openai_spec import OpenAISpec
from tests.support import RunningGateway, gateway_in_thread, history_entry, refused_port

MASTER = "mk-test-master"
WEATHER_TOOL: ChatCompletionFunctionToolParam = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME_TOOL: ChatCompletionFunctionToolParam = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}}


@pytest.fixture(scope="module")
def fault_sim() -> Iterator[SimulatorThread]:
    config = SimConfig.from_dict({"api_key": "sk-sim", "models": {
        "deepseek-reasoner": {"reasoning": True, "require_reasoning_echo": True},
        "vllm-qwen": {"reasoning": True, "reasoning_field": "reasoning"},
        "rate-limited": {"fault": "status=429;retry_after=7"},
        "broken": {"fault": "status=500"},
        "overloaded": {"fault": "status=503"},
        "forbidden": {"fault": "status=403"},
        "slow": {"fault": "timeout"},
        "cut": {"fault": "cut=3"},
        "midstream": {"fault": "error_after=3"},
        "malformed": {"fault": "malformed"},
        "paced": {"ttft_ms": 50, "chunk_ms": 40},
    }})
    with SimulatorThread(config) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def gateway(fault_sim: SimulatorThread, nowhere: int) -> Iterator[RunningGateway]:
    v1 = f"{fault_sim.base_url}/v1"
    names = ["gpt-4o", "grok-3-mini", "vllm-qwen", "rate-limited", "broken", "overloaded", "forbidden",
             "cut", "midstream", "malformed", "paced"]
    deployments: list[dict[str, Any]] = [{"name": n, "provider": "openai", "model": n} for n in names]
    deployments += [
        {"name": "deepseek-reasoner", "provider": "deepseek", "model": "deepseek-reasoner"},
        {"name": "slow", "provider": "openai", "model": "slow", "timeout": 0.5},
        {"name": "unreachable", "provider": "nowhere", "model": "gpt-4o"},
        {"name": "embed", "provider": "openai", "model": "text-embedding-3-small"},
        {"name": "azure-gpt-4o", "provider": "azure", "model": "gpt-4o"},
        {"name": "azure-v1-gpt-4o", "provider": "azure-v1", "model": "gpt-4o"},
    ]
    config = {
        "master_key": MASTER,
        "providers": {
            "openai": {"type": "openai", "base_url": v1, "api_key": "sk-sim", "flavor": "openai"},
            "deepseek": {"type": "openai", "base_url": v1, "api_key": "sk-sim", "flavor": "deepseek"},
            "nowhere": {"type": "openai", "base_url": f"http://127.0.0.1:{nowhere}/v1", "api_key": "k"},
            "azure": {"type": "azure", "base_url": fault_sim.base_url, "api_key": "sk-sim",
                      "api_version": "2024-10-21"},
            "azure-v1": {"type": "azure", "base_url": fault_sim.base_url, "api_key": "sk-sim"},
        },
        "deployments": deployments,
    }
    with gateway_in_thread(config) as running:
        yield running


@pytest.fixture(scope="module")
def nowhere() -> Iterator[int]:
    with refused_port() as port:
        yield port


@pytest.fixture
def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=MASTER, max_retries=0)


@pytest.fixture
def aclient(gateway: RunningGateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.v1, api_key=MASTER, max_retries=0)


def raw_post(gateway: RunningGateway, path: str, body: Any, key: str = MASTER) -> httpx.Response:
    return httpx.post(f"{gateway.v1}{path}", json=body, headers={"authorization": f"Bearer {key}"}, timeout=10)


def sse_payloads(response: httpx.Response) -> list[str]:
    return [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]


USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Tell me about the sea"}]


def test_non_streaming_completion(client: openai.OpenAI, gateway: RunningGateway, openai_spec: OpenAISpec) -> None:
    response = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
    completion = response.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o"
    assert completion.choices[0].finish_reason == "stop"
    text = completion.choices[0].message.content or ""
    assert text.startswith("Simulated reply from gpt-4o to: Tell me about the sea")
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert response.headers["x-request-id"].startswith("req_")
    assert response.headers["x-modelgate-provider"] == "openai"
    assert response.headers["x-modelgate-deployment"] == "gpt-4o"
    openai_spec.validate("CreateChatCompletionResponse", raw_post(gateway, "/chat/completions",
                                                                   {"model": "gpt-4o", "messages": USER}).json())


def test_streaming_matches_non_streaming(client: openai.OpenAI, openai_spec: OpenAISpec,
                                         gateway: RunningGateway) -> None:
    whole = client.chat.completions.create(model="gpt-4o", messages=USER).choices[0].message.content
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=USER, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    raw = raw_post(gateway, "/chat/completions", {"model": "gpt-4o", "messages": USER, "stream": True,
                                                  "stream_options": {"include_usage": True}})
    assert raw.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(raw)
    assert payloads[-1] == "[DONE]"
    for payload in payloads[:-1]:
        openai_spec.validate("CreateChatCompletionStreamResponse", json.loads(payload))


def test_stream_without_include_usage_sends_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=USER, stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


async def test_async_client_streams_and_completes(aclient: openai.AsyncOpenAI) -> None:
    completion = await aclient.chat.completions.create(model="gpt-4o", messages=USER, max_tokens=5)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens <= 5
    stream = await aclient.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
    pieces = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
    assert len([p for p in pieces if p]) > 3


def test_tool_call_non_streaming(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert set(json.loads(call.function.arguments)) == {"city"}


def test_streamed_parallel_tool_calls_accumulate(client: openai.OpenAI, gateway: RunningGateway,
                                                 openai_spec: OpenAISpec) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Use parallel calls for weather and time"}]
    with client.chat.completions.stream(model="gpt-4o", messages=messages,
                                        tools=[WEATHER_TOOL, TIME_TOOL]) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert all(isinstance(json.loads(c.function.arguments), dict) for c in calls)
    assert len({c.id for c in calls}) == 2
    raw = raw_post(gateway, "/chat/completions", {"model": "gpt-4o", "messages": messages, "stream": True,
                                                  "tools": [WEATHER_TOOL, TIME_TOOL]})
    deltas = [json.loads(p) for p in sse_payloads(raw)[:-1]]
    tool_deltas = [d["choices"][0]["delta"]["tool_calls"][0] for d in deltas if d["choices"]
                   and d["choices"][0]["delta"].get("tool_calls")]
    assert len(tool_deltas) > 2, "arguments arrive in fragments"
    assert {d["index"] for d in tool_deltas} == {0, 1}
    for d in deltas:
        openai_spec.validate("CreateChatCompletionStreamResponse", d)


def test_tool_result_round_trip(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Weather in Oslo?"}], tools=[WEATHER_TOOL])
    calls = first.choices[0].message.tool_calls
    assert calls
    second = client.chat.completions.create(model="gpt-4o", tools=[WEATHER_TOOL], messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
        history_entry(first.choices[0].message.model_dump(exclude_none=True)),
        {"role": "tool", "tool_call_id": calls[0].id, "content": "Rain, 4 degrees"},
    ])
    assert second.choices[0].finish_reason == "stop"
    assert "Rain, 4 degrees" in (second.choices[0].message.content or "")


def test_reasoning_content_from_deepseek_and_vllm(client: openai.OpenAI) -> None:
    deepseek = client.chat.completions.create(model="deepseek-reasoner", messages=USER)
    assert deepseek.choices[0].message.reasoning_content  # type: ignore[attr-defined]
    details = deepseek.usage.completion_tokens_details if deepseek.usage else None
    assert details is not None and (details.reasoning_tokens or 0) > 0
    # vLLM and Ollama call it "reasoning"; clients always get reasoning_content.
    vllm = client.chat.completions.create(model="vllm-qwen", messages=USER)
    assert vllm.choices[0].message.reasoning_content  # type: ignore[attr-defined]
    chunks = list(client.chat.completions.create(model="vllm-qwen", messages=USER, stream=True))
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert reasoning == vllm.choices[0].message.reasoning_content  # type: ignore[attr-defined]
    first_content = next(i for i, c in enumerate(chunks) if c.choices and c.choices[0].delta.content)
    last_reasoning = max(i for i, c in enumerate(chunks)
                         if c.choices and getattr(c.choices[0].delta, "reasoning_content", None))
    assert last_reasoning < first_content, "reasoning streams before the answer"


def test_deepseek_tool_turn_gets_reasoning_content_back(client: openai.OpenAI) -> None:
    # DeepSeek answers 400 when an assistant turn with tool calls lacks its reasoning_content;
    # the simulator enforces that rule, so this passes only if the gateway sends it back.
    question: ChatCompletionMessageParam = {"role": "user", "content": "Weather in Rome?"}
    first = client.chat.completions.create(model="deepseek-reasoner", messages=[question], tools=[WEATHER_TOOL])
    message = first.choices[0].message
    assert message.tool_calls and message.reasoning_content  # type: ignore[attr-defined]
    second = client.chat.completions.create(model="deepseek-reasoner", tools=[WEATHER_TOOL], messages=[
        question, history_entry(message.model_dump(exclude_none=True)),
        {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "Sunny"}])
    assert "Sunny" in (second.choices[0].message.content or "")


def test_json_schema_response_format(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    completion = client.chat.completions.create(model="gpt-4o", messages=USER, response_format={
        "type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}})
    data = json.loads(completion.choices[0].message.content or "")
    assert set(data) == {"name", "age"} and isinstance(data["age"], int)


def test_n_choices_and_images(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o", n=2, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}]}])
    assert [c.index for c in completion.choices] == [0, 1]
    assert completion.choices[0].message.content != completion.choices[1].message.content


def test_embeddings_float_and_base64(client: openai.OpenAI, gateway: RunningGateway,
                                     openai_spec: OpenAISpec) -> None:
    # The SDK asks for base64 by default and decodes it; asking for float gets floats.
    default = client.embeddings.create(model="embed", input=["alpha", "beta"])
    floats = client.embeddings.create(model="embed", input=["alpha", "beta"], encoding_format="float")
    assert [d.index for d in default.data] == [0, 1]
    for a, b in zip(default.data, floats.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
    assert default.usage.prompt_tokens == floats.usage.prompt_tokens > 0
    short = client.embeddings.create(model="embed", input="alpha", dimensions=4, encoding_format="float")
    assert len(short.data[0].embedding) == 4
    # The spec models only float vectors; base64 is what OpenAI itself sends for encoding_format base64.
    openai_spec.validate("CreateEmbeddingResponse", raw_post(gateway, "/embeddings", {
        "model": "embed", "input": "alpha", "encoding_format": "float"}).json())
    raw = raw_post(gateway, "/embeddings", {"model": "embed", "input": "alpha", "encoding_format": "base64"}).json()
    decoded = struct.unpack("<8f", base64.b64decode(raw["data"][0]["embedding"]))
    assert list(decoded) == pytest.approx(floats.data[0].embedding, abs=1e-6)


def test_models_list_and_retrieve(client: openai.OpenAI, gateway: RunningGateway, openai_spec: OpenAISpec) -> None:
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o" in ids and "deepseek-reasoner" in ids
    model = client.models.retrieve("deepseek-reasoner")
    assert model.id == "deepseek-reasoner" and model.owned_by == "deepseek"
    listing = httpx.get(f"{gateway.v1}/models", headers={"authorization": f"Bearer {MASTER}"}).json()
    openai_spec.validate("ListModelsResponse", listing)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_azure_classic_and_v1(client: openai.OpenAI) -> None:
    for name in ("azure-gpt-4o", "azure-v1-gpt-4o"):
        completion = client.chat.completions.create(model=name, messages=USER)
        assert (completion.choices[0].message.content or "").startswith("Simulated reply from gpt-4o")
        chunks = list(client.chat.completions.create(model=name, messages=USER, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
            completion.choices[0].message.content


# --- errors -------------------------------------------------------------------------------------

def test_auth_errors(gateway: RunningGateway) -> None:
    for key in ("wrong-key",):
        with pytest.raises(openai.AuthenticationError) as caught:
            openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0).chat.completions.create(
                model="gpt-4o", messages=USER)
        assert caught.value.status_code == 401
    missing = httpx.post(f"{gateway.v1}/chat/completions", json={"model": "gpt-4o", "messages": USER})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    # Azure clients send api-key, Anthropic clients x-api-key: both are accepted.
    for header in ("api-key", "x-api-key"):
        ok = httpx.post(f"{gateway.v1}/chat/completions", json={"model": "gpt-4o", "messages": USER},
                        headers={header: MASTER})
        assert ok.status_code == 200


def test_unknown_deployment_is_404_saying_how_to_list(client: openai.OpenAI, gateway: RunningGateway,
                                                      openai_spec: OpenAISpec) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9", messages=USER)
    body: Any = caught.value.body
    assert body["code"] == "model_not_found" and "/v1/models" in body["message"]
    openai_spec.validate("ErrorResponse", raw_post(gateway, "/chat/completions",
                                                   {"model": "gpt-9", "messages": USER}).json())


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": USER}, "model"),
    ({"model": "gpt-4o"}, "messages"),
    ({"model": "gpt-4o", "messages": []}, "messages"),
    ({"model": "gpt-4o", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"model": "gpt-4o", "messages": USER, "temperature": "hot"}, "temperature"),
    ({"model": "gpt-4o", "messages": USER, "max_tokens": 0}, "max_tokens"),
    ({"model": "gpt-4o", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ({"model": "gpt-4o", "messages": USER, "tool_choice": "sometimes"}, "tool_choice"),
])
def test_bad_fields_are_400_naming_the_field(gateway: RunningGateway, openai_spec: OpenAISpec,
                                             body: dict[str, Any], param: str) -> None:
    response = raw_post(gateway, "/chat/completions", body)
    assert response.status_code == 400
    openai_spec.validate("ErrorResponse", response.json())
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert response.headers["x-request-id"]


def test_malformed_json_is_400(gateway: RunningGateway, client: openai.OpenAI) -> None:
    response = httpx.post(f"{gateway.v1}/chat/completions", content=b'{"model": "gpt-4o", "messages": [',
                          headers={"authorization": f"Bearer {MASTER}", "content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o", messages=USER, temperature=7)


def test_upstream_statuses_are_kept(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="rate-limited", messages=USER)
    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.request_id and limited.value.request_id.startswith("req_")
    with pytest.raises(openai.InternalServerError) as broken:
        client.chat.completions.create(model="broken", messages=USER)
    assert broken.value.status_code == 500
    with pytest.raises(openai.InternalServerError) as overloaded:
        client.chat.completions.create(model="overloaded", messages=USER)
    assert overloaded.value.status_code == 503
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="forbidden", messages=USER)


def test_unreachable_and_slow_upstreams_name_the_provider(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as unreachable:
        client.chat.completions.create(model="unreachable", messages=USER)
    assert unreachable.value.status_code == 502
    assert "nowhere" in unreachable.value.message
    with pytest.raises(openai.InternalServerError) as slow:
        client.chat.completions.create(model="slow", messages=USER)
    assert slow.value.status_code == 504
    assert "openai" in slow.value.message and "0.5s" in slow.value.message


def test_malformed_upstream_body_is_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="malformed", messages=USER)
    assert caught.value.status_code == 502 and "not JSON" in caught.value.message


@pytest.mark.parametrize("model", ["midstream", "cut"])
def test_stream_failing_after_start_ends_with_an_error_event(client: openai.OpenAI, gateway: RunningGateway,
                                                             model: str) -> None:
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model=model, messages=USER, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received, "some content arrived before the failure"
    assert caught.value.message
    raw = raw_post(gateway, "/chat/completions", {"model": model, "messages": USER, "stream": True})
    payloads = sse_payloads(raw)
    assert payloads[-1] != "[DONE]", "a broken stream must not look finished"
    assert "error" in json.loads(payloads[-1])


def test_unknown_fields_pass_through_to_openai_compatible_upstreams() -> None:
    from tests.support import RecordingUpstream

    with RecordingUpstream() as upstream:
        config = {"providers": {
            "openai": {"type": "openai", "base_url": f"{upstream.base_url}/v1", "api_key": "sk-up"},
            "mistral": {"type": "openai", "base_url": f"{upstream.base_url}/v1", "api_key": "sk-up",
                        "flavor": "mistral"}},
            "deployments": [{"name": "m", "provider": "openai", "model": "gpt-4o"},
                            {"name": "mistral", "provider": "mistral", "model": "mistral-small-latest"}]}
        with gateway_in_thread(config) as gw:
            client = openai.OpenAI(base_url=gw.v1, api_key="x", max_retries=0)
            client.chat.completions.create(model="m", messages=USER, max_tokens=9, seed=4, logprobs=True,
                                           extra_body={"top_k": 5, "service_tier": "flex"})
            client.chat.completions.create(model="mistral", max_tokens=9, seed=4, messages=[
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "call_abc|123", "type": "function",
                                                                       "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_abc|123", "content": "done"}])
    sent, mistral = upstream.requests[0], upstream.requests[1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["Authorization"] == "Bearer sk-up"
    body = sent["json"]
    assert body["model"] == "gpt-4o"
    assert body["max_completion_tokens"] == 9 and "max_tokens" not in body
    assert body["top_k"] == 5 and body["service_tier"] == "flex" and body["logprobs"] is True
    m = mistral["json"]
    assert m["random_seed"] == 4 and "seed" not in m and m["max_tokens"] == 9
    call_id = m["messages"][1]["tool_calls"][0]["id"]
    assert len(call_id) == 9 and call_id.isalnum()
    assert m["messages"][2]["tool_call_id"] == call_id


def test_streaming_always_asks_upstream_for_usage() -> None:
    from tests.support import RecordingUpstream

    with RecordingUpstream() as upstream:
        config = {"providers": {"p": {"type": "openai", "base_url": f"{upstream.base_url}/v1"}},
                  "deployments": [{"name": "m", "provider": "p", "model": "x"}]}
        with gateway_in_thread(config) as gw:
            httpx.post(f"{gw.v1}/chat/completions", json={"model": "m", "messages": USER, "stream": True})
    assert upstream.requests[0]["json"]["stream_options"] == {"include_usage": True}


def test_every_response_carries_a_request_id(gateway: RunningGateway) -> None:
    for response in (
        httpx.get(f"{gateway.v1}/models", headers={"authorization": f"Bearer {MASTER}"}),
        httpx.get(f"{gateway.v1}/models"),
        raw_post(gateway, "/chat/completions", {"model": "nope", "messages": USER}),
        raw_post(gateway, "/chat/completions", {"model": "gpt-4o", "messages": USER}),
    ):
        assert response.headers.get("x-request-id", "").startswith("req_"), response.status_code


def test_a_client_cannot_choose_the_request_id(gateway: RunningGateway) -> None:
    # The id keys the usage record; a repeated client id must not merge two requests into one.
    ids = {httpx.post(f"{gateway.v1}/chat/completions", json={"model": "gpt-4o", "messages": USER},
                      headers={"authorization": f"Bearer {MASTER}", "x-request-id": "req_mine"}
                      ).headers["x-request-id"] for _ in range(2)}
    assert len(ids) == 2 and "req_mine" not in ids

"""Content policies seen through the official SDKs, on real sockets, against the simulator.

The simulator's answer repeats the first words of the prompt and streams one word per chunk, so
a card number in the prompt comes back split across four chunks. Every stream is also read as
raw bytes, to show that no byte of a flagged span reaches the client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from modelgate.simulator import SimConfig, SimulatorThread
from tests.openai_spec import OpenAISpec
from tests.support import RunningGateway, anthropic_client, gateway_in_thread, wait_until

MASTER = "mk-safety"
CARD = "4111 1111 1111 1111"
CARD_PROMPT = f"Repeat after me the number {CARD} exactly"
SAFETY = {
    "blocklists": {"codenames": {"terms": ["Project Falcon"]}},
    "policies": {
        # Input: personal data replaced before the upstream sees it; a codename refused.
        "inbound": {"input": [{"check": "pii", "action": "redact"},
                              {"check": "blocklist", "action": "block", "list": "codenames"}]},
        # Output only (the simulator repeats the prompt, so the prompt carries what the answer will).
        "redacting": {"output": [{"check": "pii", "action": "redact"}], "stream_hold_back": 48},
        "blocking": {"output": [{"check": "pii", "action": "block", "entities": ["credit_card"]},
                                {"check": "blocklist", "action": "annotate", "terms": ["number"]}],
                     "stream_hold_back": 32},
    },
}


@pytest.fixture(scope="module")
def gateway() -> Iterator[RunningGateway]:
    with SimulatorThread(SimConfig.from_dict({"api_key": "sk-sim"})) as sim:
        config = {
            "master_key": MASTER,
            "providers": {"openai": {"type": "openai", "base_url": f"{sim.base_url}/v1", "api_key": "sk-sim"}},
            "safety": SAFETY,
            "deployments": [{"name": name, "provider": "openai", "model": "gpt-4o", "safety": name}
                            for name in ("inbound", "redacting", "blocking")]
            + [{"name": "plain", "provider": "openai", "model": "gpt-4o"}],
        }
        with gateway_in_thread(config) as running:
            yield running


@pytest.fixture(scope="module")
def client(gateway: RunningGateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.v1, api_key=MASTER, max_retries=0) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def claude(gateway: RunningGateway) -> Iterator[anthropic.Anthropic]:
    with anthropic_client(gateway, MASTER) as sdk:
        yield sdk


def raw_stream(gateway: RunningGateway, path: str, body: dict[str, Any]) -> bytes:
    headers = {"authorization": f"Bearer {MASTER}", "x-api-key": MASTER, "anthropic-version": "2023-06-01"}
    with httpx.stream("POST", f"{gateway.base_url}{path}", json={**body, "stream": True}, headers=headers,
                      timeout=30) as response:
        assert response.status_code == 200
        return b"".join(response.iter_raw())


def sse_payloads(data: bytes) -> list[Any]:
    return [orjson.loads(line[6:]) for line in data.split(b"\n") if line.startswith(b"data: {")]


def assert_no_card_digits(data: bytes) -> None:
    for group in (b"4111", b"1111"):
        assert group not in data


# --- input ---------------------------------------------------------------------------------------

def test_openai_input_is_redacted_and_reported_as_azure_does(client: openai.OpenAI, openai_spec: OpenAISpec) -> None:
    completion = client.chat.completions.create(
        model="inbound", messages=[{"role": "user", "content": "Mail jane@example.com or call (415) 555-0132"}])
    # The upstream saw the placeholders: the simulator repeats the prompt.
    assert "Mail [EMAIL] or call [PHONE]" in (completion.choices[0].message.content or "")
    extra = completion.model_extra or {}
    assert extra["prompt_filter_results"] == [{"prompt_index": 0, "content_filter_results": {
        "pii": {"filtered": False, "detected": True, "redacted": True, "entities": ["email", "phone"]},
        "custom_blocklists": {"filtered": False, "details": []}}}]
    assert "content_filter_results" not in (completion.choices[0].model_extra or {})  # no output checks
    openai_spec.validate("CreateChatCompletionResponse", completion.model_dump(mode="json", exclude_unset=True))


def test_openai_blocked_prompt_is_a_400_content_filter_with_azure_innererror(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="inbound", messages=[
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "What is the status of project FALCON?"}])
    error = caught.value
    assert error.status_code == 400 and error.code == "content_filter" and error.param == "prompt"
    assert isinstance(error.body, dict)
    assert error.body["innererror"] == {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
        "pii": {"filtered": False, "detected": False, "redacted": False, "entities": []},
        "custom_blocklists": {"filtered": True, "details": [{"filtered": True, "id": "codenames"}]}}}
    assert "content policy 'inbound'" in error.message


def test_tool_results_and_arguments_are_checked_too(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="inbound", messages=[
        {"role": "user", "content": "Look the customer up"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "lookup", "arguments": '{"email": "ann@example.org"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Card on file: 5500 0055 5555 5559"}])
    assert "[CREDIT_CARD]" in (completion.choices[0].message.content or "")
    results = (completion.model_extra or {})["prompt_filter_results"][0]["content_filter_results"]
    assert results["pii"]["entities"] == ["credit_card", "email"]


def test_anthropic_blocked_prompt_is_an_invalid_request_naming_the_policy(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model="inbound", max_tokens=50,
                               messages=[{"role": "user", "content": "Tell me about Project Falcon"}])
    assert caught.value.status_code == 400
    assert isinstance(caught.value.body, dict) and caught.value.body["error"]["type"] == "invalid_request_error"
    assert "content policy 'inbound'" in caught.value.body["error"]["message"]


def test_responses_blocked_prompt_carries_the_same_code(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="inbound", input="project falcon timeline?")
    assert caught.value.code == "content_filter"


# --- output, whole and streamed --------------------------------------------------------------------

def test_openai_output_redacted_whole_and_streamed(gateway: RunningGateway, client: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": CARD_PROMPT}]
    whole = client.chat.completions.create(model="redacting", messages=messages)
    text = whole.choices[0].message.content or ""
    assert "the number [CREDIT_CARD] exactly" in text
    assert (whole.choices[0].model_extra or {})["content_filter_results"] == {
        "pii": {"filtered": False, "detected": True, "redacted": True, "entities": ["credit_card"]}}
    pieces = [chunk.choices[0].delta.content or "" for chunk in
              client.chat.completions.create(model="redacting", messages=messages, stream=True) if chunk.choices]
    assert "".join(pieces) == text
    assert_no_card_digits(raw_stream(gateway, "/v1/chat/completions", {"model": "redacting", "messages": messages}))


def test_openai_output_blocked_whole_and_streamed(gateway: RunningGateway, client: openai.OpenAI,
                                                  openai_spec: OpenAISpec) -> None:
    messages: Any = [{"role": "user", "content": CARD_PROMPT}]
    whole = client.chat.completions.create(model="blocking", messages=messages)
    choice = whole.choices[0]
    assert choice.finish_reason == "content_filter" and not choice.message.content
    assert (choice.model_extra or {})["content_filter_results"] == {
        "pii": {"filtered": True, "detected": True, "redacted": False, "entities": ["credit_card"]},
        "custom_blocklists": {"filtered": False, "details": [{"filtered": False, "id": "inline"}]}}
    chunks = list(client.chat.completions.create(model="blocking", messages=messages, stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == \
        ["content_filter"]
    sent = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert sent.startswith("Simulated reply") and "4111" not in sent  # what came before the card was sent
    last = chunks[-1].choices[0].model_extra or {}
    assert last["content_filter_results"]["pii"]["filtered"] is True
    raw = raw_stream(gateway, "/v1/chat/completions", {"model": "blocking", "messages": messages})
    assert_no_card_digits(raw)
    assert raw.endswith(b"data: [DONE]\n\n")
    for payload in sse_payloads(raw):
        openai_spec.validate("CreateChatCompletionStreamResponse", payload)


def test_anthropic_output_redacted_and_refused(gateway: RunningGateway, claude: anthropic.Anthropic) -> None:
    messages: Any = [{"role": "user", "content": CARD_PROMPT}]
    redacted = claude.messages.create(model="redacting", max_tokens=200, messages=messages)
    assert redacted.content[0].type == "text" and "[CREDIT_CARD]" in redacted.content[0].text
    with claude.messages.stream(model="redacting", max_tokens=200, messages=messages) as stream:
        assert "".join(stream.text_stream) == redacted.content[0].text
    refused = claude.messages.create(model="blocking", max_tokens=200, messages=messages)
    assert refused.stop_reason == "refusal" and not any(b.type == "text" and b.text for b in refused.content)
    with claude.messages.stream(model="blocking", max_tokens=200, messages=messages) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.stop_reason == "refusal" and "4111" not in streamed
    body = {"model": "blocking", "max_tokens": 200, "messages": messages}
    assert_no_card_digits(raw_stream(gateway, "/v1/messages", body))
    assert_no_card_digits(raw_stream(gateway, "/v1/messages", {**body, "model": "redacting"}))


def test_responses_output_redacted_and_incomplete(gateway: RunningGateway, client: openai.OpenAI) -> None:
    redacted = client.responses.create(model="redacting", input=CARD_PROMPT, store=False)
    assert "[CREDIT_CARD]" in redacted.output_text and redacted.status == "completed"
    blocked = client.responses.create(model="blocking", input=CARD_PROMPT, store=False)
    assert blocked.status == "incomplete"
    assert blocked.incomplete_details is not None and blocked.incomplete_details.reason == "content_filter"
    assert "4111" not in blocked.output_text
    kinds = [event.type for event in client.responses.create(model="blocking", input=CARD_PROMPT, stream=True,
                                                             store=False)]
    assert kinds[-1] == "response.incomplete"
    body = {"model": "blocking", "input": CARD_PROMPT, "store": False}
    assert_no_card_digits(raw_stream(gateway, "/v1/responses", body))
    assert_no_card_digits(raw_stream(gateway, "/v1/responses", {**body, "model": "redacting"}))


def test_a_deployment_without_a_policy_is_untouched(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="plain", messages=[{"role": "user", "content": CARD_PROMPT}])
    assert CARD in (completion.choices[0].message.content or "")
    assert "prompt_filter_results" not in (completion.model_extra or {})
    assert "content_filter_results" not in (completion.choices[0].model_extra or {})


def test_azure_clients_get_azure_shapes(gateway: RunningGateway) -> None:
    with openai.AzureOpenAI(azure_endpoint=gateway.base_url, api_key=MASTER, api_version="2024-10-21",
                            max_retries=0) as azure:
        with pytest.raises(openai.BadRequestError) as caught:
            azure.chat.completions.create(model="inbound", messages=[{"role": "user", "content": "Project Falcon?"}])
        assert caught.value.code == "content_filter"
        assert isinstance(caught.value.body, dict)
        assert caught.value.body["innererror"]["code"] == "ResponsibleAIPolicyViolation"
        blocked = azure.chat.completions.create(model="blocking", messages=[{"role": "user", "content": CARD_PROMPT}])
        assert blocked.choices[0].finish_reason == "content_filter"
        streamed = list(azure.chat.completions.create(
            model="redacting", messages=[{"role": "user", "content": CARD_PROMPT}], stream=True))
        assert "[CREDIT_CARD]" in "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)


def test_usage_is_reported_by_verdict(gateway: RunningGateway, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="plain", messages=[{"role": "user", "content": "hello"}])

    def groups() -> set[tuple[str, str | None]]:
        report = httpx.get(f"{gateway.base_url}/admin/usage", params={"group_by": "deployment,verdict"},
                           headers={"authorization": f"Bearer {MASTER}"}).json()
        return {(row["deployment"], row["verdict"]) for row in report["data"]}

    wanted = {("inbound", "blocked:blocklist"), ("inbound", "redacted:pii"), ("redacting", "redacted:pii"),
              ("blocking", "blocked:pii"), ("plain", None)}
    wait_until(lambda: wanted <= groups(), what="the usage records of the calls above")
    assert {verdict for _, verdict in groups()} <= {"blocked:blocklist", "blocked:pii", "redacted:pii", None}

"""Reasoning through the Responses API, stateless (``store: false`` with
``include: ["reasoning.encrypted_content"]``, as Codex sends it) on Anthropic-, Gemini- and
DeepSeek-type deployments.

The simulator refuses a turn whose opaque reasoning state was lost or changed, as the real APIs
do (Anthropic thinking signatures, Gemini thought signatures on function calls, DeepSeek's
reasoning_content on tool turns), so a second turn passes only if the sealed state reached the
provider intact.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.openai_spec import OpenAISpec
from tests.support import RunningGateway
from tests.surfaces.responses.support import REASONERS, WEATHER, check_item_events, post, stream_events

QUESTION = {"role": "user", "content": "What is the weather in Lisbon?"}
STATELESS = {"store": False, "include": ["reasoning.encrypted_content"], "tools": [WEATHER]}


def first_turn(gateway: RunningGateway, model: str, spec: OpenAISpec, stream: bool) -> list[dict[str, Any]]:
    body = {"model": model, "input": [QUESTION], **STATELESS, **REASONERS[model]}
    if stream:
        events = stream_events(post(gateway, {**body, "stream": True}), spec)
        check_item_events(events)
        response = events[-1]["response"]
        assert events[-1]["type"] == "response.completed"
        # The items the stream built are the items of the response it ends with.
        assert [e["item"] for e in events if e["type"] == "response.output_item.done"] == response["output"]
    else:
        answer = post(gateway, body)
        assert answer.status_code == 200, answer.text
        response = answer.json()
        spec.validate("Response", response)
    output: list[dict[str, Any]] = response["output"]
    return output


def answer_call(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (call,) = [item for item in output if item["type"] == "function_call"]
    return [QUESTION, *output, {"type": "function_call_output", "call_id": call["call_id"], "output": "Sunny, 24 C"}]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("model", list(REASONERS))
def test_stateless_reasoning_round_trip(gateway: RunningGateway, openai_spec: OpenAISpec, model: str,
                                        stream: bool) -> None:
    output = first_turn(gateway, model, openai_spec, stream)
    reasoning = [item for item in output if item["type"] == "reasoning"]
    assert reasoning and all(item["id"].startswith("rs_") and item["encrypted_content"] for item in reasoning)
    shown = reasoning[0]
    if model == "deepseek-reasoner":  # raw reasoning of an open model: reasoning_text content
        assert shown["summary"] == [] and shown["content"][0]["type"] == "reasoning_text"
        assert shown["content"][0]["text"]
    else:
        assert shown["summary"][0]["type"] == "summary_text" and shown["summary"][0]["text"]
    second = post(gateway, {"model": model, "input": answer_call(output), **STATELESS, **REASONERS[model]})
    assert second.status_code == 200, second.text
    messages = [item for item in second.json()["output"] if item["type"] == "message"]
    assert "Sunny, 24 C" in messages[-1]["content"][0]["text"]
    if model == "claude":
        # Anthropic's adapter turns thinking off for a tool loop that lost its thinking blocks: that
        # this turn thought again shows the signed block went back (the simulator checks signatures).
        assert any(item["type"] == "reasoning" for item in second.json()["output"])


@pytest.mark.parametrize("model", list(REASONERS))
def test_lost_reasoning_state_is_refused_by_the_provider(gateway: RunningGateway, openai_spec: OpenAISpec,
                                                         model: str) -> None:
    """The control of the round trip: without the reasoning items the simulator says no (for
    Anthropic the adapter answers without thinking instead, as the Chat surface does)."""
    output = first_turn(gateway, model, openai_spec, stream=False)
    without = [item for item in output if item["type"] != "reasoning"]
    answer = post(gateway, {"model": model, "input": answer_call(without), **STATELESS, **REASONERS[model]})
    if model == "claude":
        assert answer.status_code == 200, answer.text
        assert not any(item["type"] == "reasoning" for item in answer.json()["output"])
    else:
        assert answer.status_code == 400, answer.text


def test_encrypted_content_only_when_included(gateway: RunningGateway, openai_spec: OpenAISpec) -> None:
    body = {"model": "claude", "input": [QUESTION], "tools": [WEATHER], **REASONERS["claude"]}
    response = post(gateway, body).json()
    openai_spec.validate("Response", response)
    reasoning = [item for item in response["output"] if item["type"] == "reasoning"]
    assert reasoning and all("encrypted_content" not in item for item in reasoning)
    events = stream_events(post(gateway, {**body, "stream": True}), openai_spec)
    assert all("encrypted_content" not in e.get("item", {}) for e in events)
    assert all("encrypted_content" not in item for item in events[-1]["response"]["output"])


def test_forged_or_altered_token_is_refused(gateway: RunningGateway, openai_spec: OpenAISpec) -> None:
    output = first_turn(gateway, "claude", openai_spec, stream=False)
    turn = answer_call(output)
    at = next(i for i, item in enumerate(turn) if item.get("type") == "reasoning")
    token = turn[at]["encrypted_content"]
    flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    for forged in (flipped, "c2lnbmF0dXJl", token[:-8]):
        turn[at] = {**turn[at], "encrypted_content": forged}
        refused = post(gateway, {"model": "claude", "input": turn, **STATELESS, **REASONERS["claude"]})
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["param"] == f"input[{at}].encrypted_content" and error["type"] == "invalid_request_error"


def test_reasoning_of_one_provider_is_dropped_for_another(gateway: RunningGateway, openai_spec: OpenAISpec) -> None:
    """A Claude turn's signed thinking sent on to OpenAI and to DeepSeek is left out, not refused."""
    output = first_turn(gateway, "claude", openai_spec, stream=False)
    for model in ("gpt-4o", "deepseek-reasoner"):
        answer = post(gateway, {"model": model, "input": answer_call(output), **STATELESS})
        assert answer.status_code == 200, answer.text
        assert "Sunny, 24 C" in answer.json()["output"][-1]["content"][0]["text"]


def test_raw_reasoning_goes_back_as_sent_without_a_token(gateway: RunningGateway, openai_spec: OpenAISpec) -> None:
    """DeepSeek's reasoning_content also round-trips as plain reasoning_text content (no include)."""
    output = first_turn(gateway, "deepseek-reasoner", openai_spec, stream=False)
    plain = [{k: v for k, v in item.items() if k != "encrypted_content"} for item in output]
    second = post(gateway, {"model": "deepseek-reasoner", "input": answer_call(plain), "store": False,
                            "tools": [WEATHER]})
    assert second.status_code == 200, second.text


@pytest.mark.parametrize("model", list(REASONERS))
def test_stored_reasoning_goes_back_by_its_id(gateway: RunningGateway, openai_spec: OpenAISpec, model: str) -> None:
    """Stored responses (the default), their output items sent back as they came, without
    encrypted_content, as the Agents SDK does: each reasoning item is the stored one of its id."""
    body = {"model": model, "input": [QUESTION], "tools": [WEATHER], **REASONERS[model]}
    first = post(gateway, body).json()
    openai_spec.validate("Response", first)
    reasoning = [item for item in first["output"] if item["type"] == "reasoning"]
    assert reasoning and not any("encrypted_content" in item for item in reasoning)
    second = post(gateway, {**body, "input": answer_call(first["output"])})
    assert second.status_code == 200, second.text
    assert "Sunny, 24 C" in second.json()["output"][-1]["content"][0]["text"]
    if model == "claude":  # thinking stays on only where the signed block went back
        assert any(item["type"] == "reasoning" for item in second.json()["output"])


def test_a_reasoning_item_that_was_not_stored_is_left_out(gateway: RunningGateway) -> None:
    stateless = post(gateway, {"model": "gemini", "input": [QUESTION], "tools": [WEATHER], "store": False}).json()
    bare = [{k: v for k, v in item.items() if k != "encrypted_content"} for item in stateless["output"]]
    # Not stored, the reasoning item by id alone is nothing to resolve: Gemini misses its signature.
    refused = post(gateway, {"model": "gemini", "input": answer_call(bare), "tools": [WEATHER]})
    assert refused.status_code == 400 and "thought_signature" in refused.text

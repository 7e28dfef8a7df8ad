"""The official openai SDK against Anthropic- and Gemini-type deployments, through the gateway.

The simulator verifies thinking signatures (Anthropic) and thought signatures (Gemini) the way
the real APIs do, so the multi-turn tests pass only if the gateway carries them to the client and
back unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionFunctionToolParam, ChatCompletionMessageParam

from modelgate.simulator import SimulatorThread
from tests.openai_spec import OpenAISpec
from tests.support import RunningGateway, gateway_in_thread, history_entry

WEATHER: ChatCompletionFunctionToolParam = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                          "required": ["city"]}}}
QUESTION: ChatCompletionMessageParam = {"role": "user", "content": "What is the weather in Lisbon?"}


@pytest.fixture(scope="module")
def gateway(sim: SimulatorThread) -> Iterator[RunningGateway]:
    config = {
        "providers": {
            "anthropic": {"type": "anthropic", "base_url": sim.base_url, "api_key": "sk-sim"},
            "gemini": {"type": "gemini", "base_url": sim.base_url, "api_key": "sk-sim"},
        },
        "deployments": [
            {"name": "claude", "provider": "anthropic", "model": "claude-sonnet-4-5"},
            {"name": "gemini", "provider": "gemini", "model": "gemini-2.5-flash"},
        ],
    }
    with gateway_in_thread(config) as running:
        yield running


@pytest.fixture
def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="any", max_retries=0)


@pytest.mark.parametrize("model", ["claude", "gemini"])
def test_text_streaming_and_usage(client: openai.OpenAI, model: str, openai_spec: OpenAISpec) -> None:
    whole = client.chat.completions.create(model=model, max_tokens=200, messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}])
    assert whole.choices[0].finish_reason == "stop"
    assert "Hello there" in (whole.choices[0].message.content or "")
    assert whole.usage is not None and whole.usage.prompt_tokens > 0 and whole.usage.completion_tokens > 0
    openai_spec.validate("CreateChatCompletionResponse", whole.model_dump(exclude_unset=True))
    chunks = list(client.chat.completions.create(
        model=model, max_tokens=200, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    for chunk in chunks:
        openai_spec.validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))


@pytest.mark.parametrize("model", ["claude", "gemini"])
@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_and_tool_loop_round_trip(client: openai.OpenAI, model: str, stream: bool) -> None:
    params: dict[str, Any] = {"model": model, "max_tokens": 4000, "reasoning_effort": "low", "tools": [WEATHER]}
    first: ChatCompletion
    if stream:
        with client.chat.completions.stream(messages=[QUESTION], **params) as events:
            first = events.get_final_completion()
    else:
        first = client.chat.completions.create(messages=[QUESTION], **params)
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    calls = message.tool_calls or []
    assert calls and calls[0].type == "function" and calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments)["city"]
    assert message.reasoning_content  # type: ignore[attr-defined]
    if model == "claude" and not stream:
        blocks = message.thinking_blocks  # type: ignore[attr-defined]
        assert blocks and blocks[0]["signature"]
    # The assistant turn goes back as the SDK gives it; the simulator rejects a lost signature.
    second = client.chat.completions.create(messages=[
        QUESTION, history_entry(message.model_dump(exclude_none=True)),
        {"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny, 24 degrees"}], **params)
    assert second.choices[0].finish_reason == "stop"
    assert "Sunny, 24 degrees" in (second.choices[0].message.content or "")


def test_tampered_anthropic_signature_is_refused_upstream(client: openai.OpenAI) -> None:
    params: dict[str, Any] = {"model": "claude", "max_tokens": 4000, "reasoning_effort": "low", "tools": [WEATHER]}
    first = client.chat.completions.create(messages=[QUESTION], **params)
    turn = first.choices[0].message.model_dump(exclude_none=True)
    turn["thinking_blocks"][0]["signature"] = "forged" + turn["thinking_blocks"][0]["signature"][6:]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(messages=[
            QUESTION, history_entry(turn),
            {"role": "tool", "tool_call_id": turn["tool_calls"][0]["id"], "content": "x"}], **params)
    assert "signature" in caught.value.message.lower()


def test_gemini_thought_signature_rides_on_the_tool_call(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model="gemini", messages=[QUESTION], tools=[WEATHER],
                                           reasoning_effort="low")
    call = (first.choices[0].message.tool_calls or [])[0]
    assert call.model_extra and call.model_extra["extra_content"]["google"]["thought_signature"]


def test_anthropic_upstream_errors_keep_status(client: openai.OpenAI, sim: SimulatorThread) -> None:
    import httpx

    httpx.post(f"{sim.base_url}/sim/faults", json={"model": "claude-haiku-4-5", "fault": "status=529", "count": 1})
    gateway_config = {"providers": {"a": {"type": "anthropic", "base_url": sim.base_url, "api_key": "sk-sim"}},
                      "deployments": [{"name": "haiku", "provider": "a", "model": "claude-haiku-4-5"}]}
    with gateway_in_thread(gateway_config) as gw:
        c = openai.OpenAI(base_url=gw.v1, api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            c.chat.completions.create(model="haiku", messages=[QUESTION])
        assert caught.value.status_code == 529
        assert c.chat.completions.create(model="haiku", messages=[QUESTION]).choices[0].message.content


def test_anthropic_sdk_lists_deployments_as_model_info(gateway: RunningGateway) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=gateway.base_url, api_key="any", max_retries=0)
    models = list(client.models.list())
    assert [m.id for m in models] == ["claude", "gemini"]
    assert models[0].type == "model" and models[0].display_name == "claude"
    assert client.models.retrieve("gemini").id == "gemini"

"""Deployments whose targets speak OpenAI's Responses API (``api: responses``), reached from the Chat
Completions and Messages surfaces with the official SDKs, over the simulator's ``/v1/responses``.

The simulator checks the reasoning items' ``encrypted_content`` as OpenAI does, so a tool loop passes only
if the gateway carries it to the client and back unchanged, with the item's id (Messages: in the thinking
block's signature; Chat Completions: in a ``thinking_blocks`` entry).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageParam

from modelgate.simulator import SimulatorThread, count_tokens, message_tokens
from tests.openai_spec import OpenAISpec
from tests.support import RunningGateway, gateway_in_thread

REASONER = "o4-mini"  # thinks by default in the simulator
WEATHER: ChatCompletionFunctionToolParam = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                          "required": ["city"]}}}
QUESTION: ChatCompletionMessageParam = {"role": "user", "content": "What is the weather in Lisbon?"}


@pytest.fixture(scope="module")
def gateway(sim: SimulatorThread) -> Iterator[RunningGateway]:
    config = {
        "providers": {
            "openai": {"type": "openai", "base_url": f"{sim.base_url}/v1", "api_key": "sk-sim"},
            "azure": {"type": "azure", "base_url": sim.base_url, "api_key": "sk-sim"},
        },
        "deployments": [
            {"name": "codex", "provider": "openai", "model": "gpt-codex-sim", "api": "responses"},
            {"name": "thinker", "provider": "openai", "model": REASONER, "api": "responses"},
            {"name": "foundry", "provider": "azure", "model": REASONER, "api": "responses"},
        ],
    }
    with gateway_in_thread(config) as running:
        yield running


@pytest.fixture
def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="any", max_retries=0)


def test_chat_completions_text_and_stream(client: openai.OpenAI, openai_spec: OpenAISpec) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "system", "content": "Be brief."},
                                                  {"role": "user", "content": "Hello there"}]
    whole = client.chat.completions.create(model="codex", messages=messages, max_tokens=200)
    openai_spec.validate("CreateChatCompletionResponse", whole.model_dump(exclude_unset=True))
    text = whole.choices[0].message.content or ""
    assert text.startswith("Simulated reply from gpt-codex-sim to: Hello there.")
    assert whole.choices[0].finish_reason == "stop" and whole.model == "gpt-codex-sim"
    # The simulator's estimator: instructions and the message, one message each.
    assert whole.usage is not None
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (
        message_tokens("Be brief.") + message_tokens("Hello there"), count_tokens(text))
    chunks = list(client.chat.completions.create(model="codex", messages=messages, max_tokens=200, stream=True,
                                                 stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == count_tokens(text)


@pytest.mark.parametrize("model", ["thinker", "foundry"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_chat_tool_loop_on_a_reasoning_model(client: openai.OpenAI, model: str, stream: bool) -> None:
    """The assistant message goes back as the SDK returned it, reasoning item included."""
    first = client.chat.completions.create(model=model, messages=[QUESTION], tools=[WEATHER],
                                           reasoning_effort="low")
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and message.tool_calls
    call = message.tool_calls[0]
    assert call.type == "function" and json.loads(call.function.arguments).keys() == {"city"}
    history: list[ChatCompletionMessageParam] = [
        QUESTION, message.model_dump(exclude_none=True),  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 22C"}]
    if stream:
        chunks = list(client.chat.completions.create(model=model, messages=history, tools=[WEATHER], stream=True,
                                                     reasoning_effort="low"))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        answer = client.chat.completions.create(model=model, messages=history, tools=[WEATHER],
                                                reasoning_effort="low")
        text = answer.choices[0].message.content or ""
    assert "after the tool returned: Sunny, 22C" in text


def test_stop_sequences_are_refused_with_the_reason(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="codex", messages=[QUESTION], stop=["END"])
    assert "Responses API, which has no stop sequences" in caught.value.message
    body: Any = caught.value.body
    assert body["param"] == "stop"


TOOLS: Any = [{"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}]
LISBON: Any = {"role": "user", "content": "What is the weather in Lisbon?"}
THINKING: Any = {"type": "enabled", "budget_tokens": 2048}


def thinking_turn(gateway: RunningGateway, stream: bool) -> tuple[anthropic.Anthropic, Any]:
    """A thinking turn that calls a tool, and the history that answers it."""
    claude = anthropic.Anthropic(base_url=gateway.base_url, api_key="any", max_retries=0)
    first: anthropic.types.Message
    if stream:
        with claude.messages.stream(model="thinker", max_tokens=4096, messages=[LISBON], tools=TOOLS,
                                    thinking=THINKING) as events:
            first = events.get_final_message()
    else:
        first = claude.messages.create(model="thinker", max_tokens=4096, messages=[LISBON], tools=TOOLS,
                                       thinking=THINKING)
    kinds = [block.type for block in first.content]
    assert kinds[0] == "thinking" and "tool_use" in kinds and first.stop_reason == "tool_use"
    assert first.content[0].type == "thinking" and first.content[0].signature.startswith("openai:")
    tool_use = next(block for block in first.content if block.type == "tool_use")
    result: Any = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id,
                                                "content": "Sunny, 22C"}]}
    return claude, [LISBON, {"role": "assistant", "content": [b.model_dump() for b in first.content]}, result]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_messages_tool_loop_with_thinking(gateway: RunningGateway, stream: bool) -> None:
    claude, history = thinking_turn(gateway, stream)
    answer = claude.messages.create(model="thinker", max_tokens=4096, tools=TOOLS, thinking=THINKING,
                                    messages=history)
    assert "after the tool returned: Sunny, 22C" in "".join(b.text for b in answer.content if b.type == "text")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_the_thinking_block_carries_the_reasoning_item_back(gateway: RunningGateway, stream: bool) -> None:
    """Altered, the encrypted content is refused upstream: proof that the item went back at all."""
    claude, history = thinking_turn(gateway, stream)
    thinking = history[1]["content"][0]
    assert re.fullmatch(r"openai:rs_\w+:[^:]+", thinking["signature"]), thinking
    thinking["signature"] += "x"
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(model="thinker", max_tokens=4096, tools=TOOLS, thinking=THINKING, messages=history)


def test_a_codex_request_passes_through_whole_but_its_client_metadata(client: openai.OpenAI) -> None:
    """What Codex CLI sends (a namespace tool, a built-in tool, its client_metadata, a prompt cache
    key) reaches a Responses upstream, which refuses parameters it does not know; client_metadata
    is for the gateway, and stops there."""
    response = client.responses.create(
        model="codex", input="List the files here", store=False, include=["reasoning.encrypted_content"],
        reasoning={"summary": "auto"}, prompt_cache_key="session-1",
        tools=[{"type": "web_search", "external_web_access": False}],
        extra_body={"client_metadata": {"x-codex-installation-id": "abc"}})
    assert response.status == "completed" and response.output_text.startswith("Simulated reply from")


def chat_thinking_turn(client: openai.OpenAI, stream: bool) -> dict[str, Any]:
    """A reasoning turn that calls a tool, as the assistant message a client sends back."""
    message: openai.types.chat.ChatCompletionMessage
    if stream:
        with client.chat.completions.stream(model="thinker", messages=[QUESTION], tools=[WEATHER],
                                            reasoning_effort="low") as events:
            message = events.get_final_completion().choices[0].message
    else:
        message = client.chat.completions.create(model="thinker", messages=[QUESTION], tools=[WEATHER],
                                                 reasoning_effort="low").choices[0].message
    assert message.tool_calls
    return message.model_dump(exclude_none=True)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_chat_thinking_blocks_carry_the_reasoning_item_back(client: openai.OpenAI, stream: bool) -> None:
    """The item's id rides beside its encrypted content in ``thinking_blocks``; altered, the content
    is refused upstream (so it went back), and as issued the loop goes on."""
    message = chat_thinking_turn(client, stream)
    (block,) = message["thinking_blocks"]
    assert block["provider"] == "openai" and block["id"].startswith("rs_") and block["signature"], block
    call = message["tool_calls"][0]
    answer: Any = {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 22C"}
    history: Any = [QUESTION, message, answer]
    reply = client.chat.completions.create(model="thinker", messages=history, tools=[WEATHER], reasoning_effort="low")
    assert "after the tool returned: Sunny, 22C" in (reply.choices[0].message.content or "")
    block["signature"] += "x"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="thinker", messages=history, tools=[WEATHER], reasoning_effort="low")

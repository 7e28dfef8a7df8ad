"""A Responses turn carried on in Chat Completions or Messages with the official SDKs: the reasoning
item's ``encrypted_content`` goes where that format keeps opaque state, and the gateway opens it
there. The simulator refuses the Claude tool turn unless its thinking signature came back intact. Gemini
takes Google's stand-in signature for a turn that shows another issuer's state, so its call's own
signature is checked where the request is translated (``tests/surfaces/test_reasoning_state.py``)."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest

from tests.support import RunningGateway
from tests.surfaces.responses.support import MASTER, REASONERS, WEATHER

QUESTION = "What is the weather in Lisbon?"
TOOLS: Any = [WEATHER]


def responses_turn(client: openai.OpenAI, model: str) -> tuple[list[Any], Any]:
    """The reasoning items and the function call of a stateless Responses turn."""
    response = client.responses.create(model=model, input=QUESTION, store=False, tools=TOOLS,
                                       include=["reasoning.encrypted_content"], **REASONERS[model])
    reasoning = [item for item in response.output if item.type == "reasoning"]
    (call,) = [item for item in response.output if item.type == "function_call"]
    assert reasoning and all(item.encrypted_content for item in reasoning)
    return reasoning, call


@pytest.mark.parametrize("model", ["claude", "gemini"])
def test_chat_completions_carries_a_responses_turn_on(client: openai.OpenAI, model: str) -> None:
    reasoning, call = responses_turn(client, model)
    assistant: Any = {
        "role": "assistant", "content": None,
        "thinking_blocks": [{"type": "thinking", "thinking": "", "signature": item.encrypted_content}
                            for item in reasoning],
        "tool_calls": [{"id": call.call_id, "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments}}]}
    answer = client.chat.completions.create(
        model=model, max_tokens=4000, reasoning_effort="low",
        tools=[{"type": "function", "function": {"name": WEATHER["name"], "parameters": WEATHER["parameters"]}}],
        messages=[{"role": "user", "content": QUESTION}, assistant,
                  {"role": "tool", "tool_call_id": call.call_id, "content": "Sunny, 24 C"}])
    assert "after the tool returned: Sunny, 24 C" in (answer.choices[0].message.content or "")


@pytest.mark.parametrize("model", ["claude", "gemini"])
def test_messages_carries_a_responses_turn_on(gateway: RunningGateway, client: openai.OpenAI, model: str) -> None:
    reasoning, call = responses_turn(client, model)
    claude = anthropic.Anthropic(base_url=gateway.base_url, api_key=MASTER, max_retries=0)
    content: Any = [{"type": "thinking", "thinking": "", "signature": item.encrypted_content} for item in reasoning]
    content.append({"type": "tool_use", "id": call.call_id, "name": call.name, "input": json.loads(call.arguments)})
    answer = claude.messages.create(
        model=model, max_tokens=4000, thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[{"name": WEATHER["name"], "input_schema": WEATHER["parameters"]}],
        messages=[{"role": "user", "content": QUESTION}, {"role": "assistant", "content": content},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.call_id,
                                                "content": "Sunny, 24 C"}]}])
    text = "".join(block.text for block in answer.content if block.type == "text")
    assert "after the tool returned: Sunny, 24 C" in text

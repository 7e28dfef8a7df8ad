"""Scripted models: answers by a substring of the last user message, and ``TOOL:name:{json}``
replies sent as tool calls (the shape an evaluation's tool-call items need)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from modelgate.simulator import SimConfig, SimulatorThread

CONFIG = {
    "api_key": "sk-sim",
    "models": {
        "scripted": {
            "answers": {
                "weather in Oslo": 'TOOL:get_weather:{"city": "Oslo", "unit": "celsius"}',
                "capital of Peru": "Lima",
            },
            "reply": "I do not know.",
        }
    },
}
TOOLS: list[openai.types.chat.ChatCompletionToolUnionParam] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
]


@pytest.fixture(scope="module")
def client() -> Iterator[openai.OpenAI]:
    with SimulatorThread(SimConfig.from_dict(CONFIG)) as sim:
        yield openai.OpenAI(base_url=f"{sim.base_url}/v1", api_key="sk-sim", max_retries=0)


def test_a_tool_reply_is_a_tool_call(client: openai.OpenAI) -> None:
    done = client.chat.completions.create(
        model="scripted", tools=TOOLS, messages=[{"role": "user", "content": "What is the weather in Oslo?"}]
    )
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Oslo", "unit": "celsius"}
    assert done.usage is not None and done.usage.completion_tokens > 0


def test_a_streamed_tool_reply_is_a_tool_call(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="scripted", tools=TOOLS, stream=True, messages=[{"role": "user", "content": "weather in Oslo, please"}]
    )
    names, arguments, finish = [], "", None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                if call.function and call.function.name:
                    names.append(call.function.name)
                arguments += (call.function.arguments or "") if call.function else ""
    assert names == ["get_weather"] and finish == "tool_calls"
    assert json.loads(arguments) == {"city": "Oslo", "unit": "celsius"}


def test_text_replies_stay_text(client: openai.OpenAI) -> None:
    for question, reply in (("What is the capital of Peru?", "Lima"), ("Anything else?", "I do not know.")):
        done = client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": question}])
        assert done.choices[0].message.content == reply and not done.choices[0].message.tool_calls


@pytest.mark.parametrize("reply", ["TOOL:get_weather", "TOOL::{}", "TOOL:f:[1]", "TOOL:f:{not json"])
def test_a_malformed_tool_reply_fails_at_load(reply: str) -> None:
    with pytest.raises(ValueError, match="TOOL:NAME"):
        SimConfig.from_dict({"models": {"m": {"answers": {"q": reply}}}})

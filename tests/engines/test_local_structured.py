"""Structured output, reasoning and tools on a local deployment of a real model (SmolLM2-135M-Instruct
under llama.cpp), driven over real sockets by the openai and anthropic SDKs.

``response_format`` is held to by a grammar the engine makes of the schema, and the complete answer
is checked against it: every answer here is parsed and validated with ``jsonschema``, and one cut
at ``max_tokens`` is an error, never a success. The reasoning tests make the model write a
``<think>`` block with a few-shot prompt it copies at temperature 0.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest
from pydantic import BaseModel

from tests.support import RunningGateway, anthropic_client, gateway_in_thread

QUESTION = "Give the capital of France as JSON with city, country and population."
CAPITAL: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "country", "population"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "capital", "schema": CAPITAL, "strict": True}}
MAX_TOKENS = 60
# The model copies the shape of these turns: a <think> block, then the answer.
SHOTS: list[Any] = [
    {"role": "user", "content": "What is 1+1?"},
    {"role": "assistant", "content": "<think>One plus one is two.</think>2"},
    {"role": "user", "content": "What is 3+3?"},
    {"role": "assistant", "content": "<think>Three plus three is six.</think>6"},
    {"role": "user", "content": "What is 2+2?"},
]
THOUGHT, ANSWER = "Two plus two is four.", "4"


class Capital(BaseModel):
    city: str
    country: str
    population: int


@pytest.fixture(scope="module")
def gateway(smollm2: str) -> Iterator[RunningGateway]:
    common = {"provider": "local", "model": smollm2, "context_window": 2048, "timeout": 60}
    config = {"providers": {"local": {"type": "local"}}, "deployments": [
        {"name": "smollm2", **common},
        # What a model whose chat template writes <think> is told by its catalog entry.
        {"name": "thinker", **common, "capabilities": ["chat", "streaming", "reasoning"]},
        # A model that does not say so: the deployment asks for the split.
        {"name": "split", **common, "reasoning": {"split_think_tags": True}},
    ]}
    with gateway_in_thread(config) as gateway:
        yield gateway


def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="none", max_retries=0)


def ask(**extra: Any) -> dict[str, Any]:
    return {"model": "smollm2", "messages": [{"role": "user", "content": QUESTION}], "temperature": 0,
            "max_tokens": MAX_TOKENS, **extra}


def test_json_schema_whole_is_valid_json_of_the_schema(gateway: RunningGateway) -> None:
    answer = client(gateway).chat.completions.create(**ask(response_format=FORMAT))
    assert answer.choices[0].finish_reason == "stop"
    content = answer.choices[0].message.content
    assert content is not None
    jsonschema.validate(json.loads(content), CAPITAL)


def test_json_schema_streamed_is_valid_json_of_the_schema(gateway: RunningGateway) -> None:
    chunks = list(client(gateway).chat.completions.create(**ask(response_format=FORMAT, stream=True)))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    jsonschema.validate(json.loads(text), CAPITAL)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


def test_parse_with_a_pydantic_model(gateway: RunningGateway) -> None:
    answer = client(gateway).chat.completions.parse(**ask(response_format=Capital))
    parsed = answer.choices[0].message.parsed
    assert isinstance(parsed, Capital)
    assert parsed.city


def test_responses_text_format(gateway: RunningGateway) -> None:
    sdk = client(gateway)
    response = sdk.responses.create(
        model="smollm2", input=QUESTION, temperature=0, max_output_tokens=MAX_TOKENS, store=False,
        text={"format": {"type": "json_schema", "name": "capital", "schema": CAPITAL, "strict": True}})
    jsonschema.validate(json.loads(response.output_text), CAPITAL)
    parsed = sdk.responses.parse(model="smollm2", input=QUESTION, temperature=0, max_output_tokens=MAX_TOKENS,
                                 store=False, text_format=Capital)
    assert isinstance(parsed.output_parsed, Capital)


def test_json_object_is_a_json_object(gateway: RunningGateway) -> None:
    answer = client(gateway).chat.completions.create(**ask(response_format={"type": "json_object"}))
    content = answer.choices[0].message.content
    assert content is not None
    assert isinstance(json.loads(content), dict)


def test_an_unsupported_schema_keyword_is_a_400_naming_it(gateway: RunningGateway) -> None:
    schema = {**CAPITAL, "properties": {**CAPITAL["properties"], "population": {"type": "integer", "minimum": 0}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "capital", "schema": schema}}
    with pytest.raises(openai.BadRequestError) as raised:
        client(gateway).chat.completions.create(**ask(response_format=fmt))
    assert raised.value.code == "unsupported_schema"
    assert "'minimum'" in raised.value.message and "#/properties/population" in raised.value.message


def test_an_answer_cut_at_max_tokens_is_an_error_whole(gateway: RunningGateway) -> None:
    sdk = client(gateway)
    for _ in range(3):  # as many failures in a row as open a breaker, were they the engine's
        with pytest.raises(openai.APIStatusError) as raised:
            sdk.chat.completions.create(**ask(response_format=FORMAT, max_tokens=4))
        assert raised.value.status_code == 502
        assert raised.value.code == "structured_output_invalid"
        assert "reached max_tokens (4 tokens) before its JSON answer for the schema 'capital' was complete" in (
            raised.value.message)
    # The model answered as asked, only too short: the deployment is as healthy as before.
    answer = sdk.chat.completions.create(**ask(max_tokens=2))
    assert answer.choices[0].message.content


def test_an_answer_cut_at_max_tokens_ends_a_stream_with_an_error(gateway: RunningGateway) -> None:
    chunks = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in client(gateway).chat.completions.create(**ask(response_format=FORMAT, max_tokens=4,
                                                                   stream=True)):
            chunks.append(chunk)
    assert "reached max_tokens" in raised.value.message
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)  # the text went by
    assert not any(c.choices[0].finish_reason for c in chunks if c.choices)  # no clean finish


def test_tools_on_a_model_without_tool_support_are_a_400_naming_it(gateway: RunningGateway) -> None:
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as raised:
        client(gateway).chat.completions.create(**ask(tools=[tool]))
    assert raised.value.code == "tools_not_supported"
    assert "local model 'SmolLM2-135M-Instruct.Q4_1' has no tool support" in raised.value.message


@pytest.mark.parametrize("deployment", ["thinker", "split"])
def test_think_block_is_reasoning_on_chat_completions(gateway: RunningGateway, deployment: str) -> None:
    sdk = client(gateway)
    whole = sdk.chat.completions.create(model=deployment, messages=SHOTS, temperature=0, max_tokens=30)
    message = whole.choices[0].message
    assert (message.content, message.reasoning_content) == (ANSWER, THOUGHT)  # type: ignore[attr-defined]
    chunks = list(sdk.chat.completions.create(model=deployment, messages=SHOTS, temperature=0, max_tokens=30,
                                              stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == ANSWER
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == THOUGHT


def test_think_block_is_thinking_on_messages_and_reasoning_on_responses(gateway: RunningGateway) -> None:
    with anthropic_client(gateway, "none") as sdk:
        message = sdk.messages.create(model="thinker", max_tokens=30, extra_body={"temperature": 0},
                                      messages=SHOTS)
    thinking, text = message.content
    assert thinking.type == "thinking" and thinking.thinking == THOUGHT
    assert text.type == "text" and text.text == ANSWER
    response = client(gateway).responses.create(model="thinker", input=SHOTS, temperature=0, max_output_tokens=30,
                                                store=False)
    reasoning = [item for item in response.output if item.type == "reasoning"]
    assert response.output_text == ANSWER
    assert len(reasoning) == 1
    said = [part.text for part in (reasoning[0].content or reasoning[0].summary)]
    assert said == [THOUGHT]

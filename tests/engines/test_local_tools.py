"""Tool calling on a local deployment of a real model, driven over real sockets by the openai and
anthropic SDKs.

SmolLM2-135M-Instruct's own chat template renders no tools, so the tests serve a copy of its GGUF
file whose ``tokenizer.chat_template`` does (``tests/local_models.TOOLS_CHAT_TEMPLATE``: ChatML
with calls written as ``<tool_call>{json}</tool_call>``, as Hermes and Qwen templates write
them): the gateway reads the tool support from the copy's metadata, and the engine renders the
tools, the calls and their results with it. With ``tool_choice`` required or named, a grammar
makes even this 135M model write a valid call; its arguments are validated here with
``jsonschema``. The model with its own template keeps its 400.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import jsonschema
import openai
import pytest

from tests.local_models import TOOLS_CHAT_TEMPLATE, with_metadata
from tests.support import RunningGateway, anthropic_client, gateway_in_thread

WEATHER: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME: dict[str, Any] = {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"],
                        "additionalProperties": False}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city now.",
                                      "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "description": "The time in a timezone now.",
                                      "parameters": TIME}},
]
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
QUESTION: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
MAX_TOKENS = 80
WORDS = 30  # enough for an answer in words


def _call(call_id: str, city: str) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [{
        "id": call_id, "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps({"city": city, "unit": "celsius"})}}]}


# Turns the model copies at temperature 0: with tool_choice auto, it writes a call of its own.
SHOTS: list[Any] = [
    {"role": "user", "content": "Weather in London?"}, _call("call_1", "London"),
    {"role": "user", "content": "Weather in Rome?"}, _call("call_2", "Rome"),
    {"role": "user", "content": "Weather in Paris?"},
]
# A call answered by its tool: the model is to answer in words.
ANSWERED: list[Any] = [
    *QUESTION, _call("call_1", "Paris"), {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees, sunny"},
]


@pytest.fixture(scope="module")
def tools_gguf(smollm2: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of SmolLM2's GGUF whose chat template renders tools."""
    folder = tmp_path_factory.mktemp("tools-model")
    return with_metadata(Path(smollm2), folder / "SmolLM2-tools.gguf",
                         {"tokenizer.chat_template": TOOLS_CHAT_TEMPLATE})


@pytest.fixture(scope="module")
def refusing_gguf(smollm2: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of SmolLM2's GGUF whose chat template names tools in a tag but cannot render them."""
    template = ("{% if tools %}{{ raise_exception('this model was not trained with tools') }}{% endif %}"
                "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                "<|im_start|>assistant\n")
    folder = tmp_path_factory.mktemp("refusing-model")
    return with_metadata(Path(smollm2), folder / "SmolLM2-refusing.gguf", {"tokenizer.chat_template": template})


@pytest.fixture(scope="module")
def gateway(smollm2: str, tools_gguf: Path, refusing_gguf: Path) -> Iterator[RunningGateway]:
    common = {"provider": "local", "context_window": 2048, "timeout": 60}
    config = {"providers": {"local": {"type": "local"}}, "deployments": [
        {"name": "tooled", "model": str(tools_gguf), **common},
        {"name": "plain", "model": smollm2, **common},
        {"name": "refusing", "model": str(refusing_gguf), **common},
    ]}
    with gateway_in_thread(config) as gateway:
        yield gateway


def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="none", max_retries=0)


def ask(**extra: Any) -> dict[str, Any]:
    return {"model": "tooled", "messages": QUESTION, "tools": TOOLS, "temperature": 0, "max_tokens": MAX_TOKENS,
            **extra}


def assert_valid(name: str, arguments: str | dict[str, Any], allowed: tuple[str, ...] = ("get_weather", "get_time")
                 ) -> None:
    assert name in allowed
    value = json.loads(arguments) if isinstance(arguments, str) else arguments
    jsonschema.validate(value, SCHEMAS[name])


def test_required_is_a_valid_call(gateway: RunningGateway) -> None:
    answer = client(gateway).chat.completions.create(**ask(tool_choice="required", parallel_tool_calls=False))
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    assert_valid(call.function.name, call.function.arguments)
    assert answer.usage is not None and answer.usage.completion_tokens > 0


def test_required_streamed_is_a_valid_call_in_tool_call_deltas(gateway: RunningGateway) -> None:
    chunks = list(client(gateway).chat.completions.create(**ask(tool_choice="required", stream=True,
                                                                 stream_options={"include_usage": True})))
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert deltas and all(d.index is not None for d in deltas)
    calls: dict[int, dict[str, str]] = {}
    for delta in deltas:
        call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
        call["id"] += delta.id or ""
        if delta.function is not None:
            call["name"] += delta.function.name or ""
            call["arguments"] += delta.function.arguments or ""
    assert sorted(calls) == list(range(len(calls)))
    for call in calls.values():
        assert call["id"].startswith("call_")
        assert_valid(call["name"], call["arguments"])
    assert len({call["id"] for call in calls.values()}) == len(calls)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert not any(c.choices[0].delta.content for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_a_named_function_is_the_one_called(gateway: RunningGateway) -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    answer = client(gateway).chat.completions.create(**ask(tool_choice=named))
    calls = answer.choices[0].message.tool_calls
    assert calls
    for call in calls:
        assert_valid(call.function.name, call.function.arguments, allowed=("get_time",))


def test_auto_reads_the_call_the_model_wrote(gateway: RunningGateway) -> None:
    answer = client(gateway).chat.completions.create(**ask(messages=SHOTS))
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments)["city"] == "Paris"
    assert "<tool_call>" not in (choice.message.content or "")


def test_auto_text_that_is_no_call_is_content(gateway: RunningGateway) -> None:
    for stream in (False, True):
        if stream:
            chunks = list(client(gateway).chat.completions.create(**ask(stream=True, max_tokens=WORDS)))
            content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
        else:
            answer = client(gateway).chat.completions.create(**ask(max_tokens=WORDS))
            content = answer.choices[0].message.content or ""
            assert answer.choices[0].message.tool_calls is None
            assert answer.choices[0].finish_reason in ("stop", "length")
        assert content.strip()


def test_none_answers_in_words(gateway: RunningGateway) -> None:
    answer = client(gateway).chat.completions.create(**ask(messages=SHOTS, tool_choice="none", max_tokens=WORDS))
    assert answer.choices[0].message.tool_calls is None
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.choices[0].message.content


def test_a_tool_result_goes_back_to_the_model(gateway: RunningGateway) -> None:
    answer = client(gateway).chat.completions.create(**ask(messages=ANSWERED, max_tokens=WORDS))
    assert answer.choices[0].message.content
    without = client(gateway).chat.completions.create(**ask(messages=ANSWERED[:2], max_tokens=WORDS))
    # The template writes the call and its result into the prompt: the engine counts their tokens.
    assert answer.usage is not None and without.usage is not None
    assert answer.usage.prompt_tokens > without.usage.prompt_tokens


def test_messages_tool_use_whole_and_streamed(gateway: RunningGateway) -> None:
    tools: list[Any] = [{"name": "get_weather", "description": "The weather in a city now.",
                         "input_schema": WEATHER}]
    ask_messages: dict[str, Any] = {"model": "tooled", "max_tokens": MAX_TOKENS, "tools": tools,
                                    "tool_choice": {"type": "any"}, "extra_body": {"temperature": 0},
                                    "messages": [{"role": "user", "content": "What is the weather in Paris?"}]}
    with anthropic_client(gateway, "none") as sdk:
        message = sdk.messages.create(**ask_messages)
        with sdk.messages.stream(**ask_messages) as stream:
            streamed = stream.get_final_message()
        for answer in (message, streamed):
            assert answer.stop_reason == "tool_use"
            uses = [block for block in answer.content if isinstance(block, anthropic.types.ToolUseBlock)]
            assert uses
            for use in uses:
                assert use.id
                assert_valid(use.name, use.input, allowed=("get_weather",))
        use = next(block for block in message.content if isinstance(block, anthropic.types.ToolUseBlock))
        follow = sdk.messages.create(**{**ask_messages, "tool_choice": {"type": "auto"}, "messages": [
            *ask_messages["messages"], {"role": "assistant", "content": [use.model_dump()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                          "content": "18 degrees, sunny"}]}]})
    assert follow.stop_reason in ("end_turn", "max_tokens", "tool_use")
    assert follow.content


def test_responses_function_call(gateway: RunningGateway) -> None:
    response = client(gateway).responses.create(
        model="tooled", input="What is the weather in Paris?", temperature=0, max_output_tokens=MAX_TOKENS,
        store=False, tool_choice="required", parallel_tool_calls=False,
        tools=[{"type": "function", "name": "get_weather", "description": "The weather in a city now.",
                "parameters": WEATHER, "strict": True}])
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].call_id
    assert_valid(calls[0].name, calls[0].arguments, allowed=("get_weather",))


def test_a_call_cut_at_max_tokens_is_an_error(gateway: RunningGateway) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        client(gateway).chat.completions.create(**ask(tool_choice="required", max_tokens=5))
    assert raised.value.status_code == 502
    assert raised.value.code == "tool_call_invalid"
    assert "reached max_tokens (5 tokens) before its tool call was complete; raise max_tokens" in raised.value.message


@pytest.mark.parametrize(("extra", "param", "said"), [
    ({"tool_choice": {"type": "function", "function": {"name": "get_news"}}}, "tool_choice",
     "tool_choice names the function 'get_news', which is not one of the tools (get_weather, get_time)"),
    ({"tool_choice": "required", "tools": [{"type": "function", "function": {
        "name": "count", "parameters": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}}}]},
     "tools[0]", "tools[0] ('count') parameters: the schema at #/properties/n uses 'minimum'"),
    ({"tool_choice": "required", "response_format": {"type": "json_object"}}, "tool_choice",
     "send one of them"),
])
def test_what_a_grammar_cannot_hold_to_is_a_400(gateway: RunningGateway, extra: dict[str, Any], param: str,
                                                said: str) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client(gateway).chat.completions.create(**ask(**extra))
    assert raised.value.param == param
    assert said in raised.value.message


def test_a_model_whose_template_has_no_tools_is_a_400_on_every_surface(gateway: RunningGateway) -> None:
    said = "local model 'SmolLM2-135M-Instruct.Q4_1' has no tool support"
    offered: dict[str, Any] = {"messages": QUESTION, "tools": TOOLS}
    answered: dict[str, Any] = {"messages": ANSWERED}  # no tools offered, but a call and its result
    for asked in (offered, answered):
        with pytest.raises(openai.BadRequestError) as raised:
            client(gateway).chat.completions.create(model="plain", max_tokens=5, **asked)
        assert raised.value.code == "tools_not_supported" and said in raised.value.message
    with anthropic_client(gateway, "none") as sdk, pytest.raises(anthropic.BadRequestError) as refused:
        sdk.messages.create(model="plain", max_tokens=5, messages=[{"role": "user", "content": "Weather?"}],
                            tools=[{"name": "get_weather", "input_schema": WEATHER}])
    assert said in refused.value.message


def test_a_template_that_only_names_tools_is_a_400_from_the_engine(gateway: RunningGateway) -> None:
    # Its text names tools in a tag, so the catalog says "tools"; rendering it, the engine finds none.
    with pytest.raises(openai.BadRequestError) as raised:
        client(gateway).chat.completions.create(**ask(model="refusing"))
    assert raised.value.code == "tools_not_supported"
    assert "this local model has no tool support" in raised.value.message
    answer = client(gateway).chat.completions.create(model="refusing", messages=QUESTION, max_tokens=3)
    assert answer.choices[0].message.content is not None

"""Anthropic Messages translation, both ways, on recorded upstream bytes: no network."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic.types
import orjson
import pytest
from pydantic import TypeAdapter

from modelgate.http.sse import iter_sse
from modelgate.providers.anthropic_wire import (
    STOP_REASONS,
    MessageDecoder,
    anthropic_tool_id,
    events_from_message,
    request_headers,
    request_to_anthropic,
    status_error,
)
from modelgate.schema.errors import InvalidRequest, UpstreamError
from modelgate.schema.events import (
    ChatResult,
    Event,
    Finish,
    ReasoningDelta,
    Start,
    ToolCallDelta,
    Usage,
    fold_events,
)
from modelgate.schema.request import (
    AnthropicPassthrough,
    ChatRequest,
    ImagePart,
    Message,
    OpenAIPassthrough,
    ReasoningPart,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
)
from modelgate.surfaces.openai_format.parse import parse_chat_request
from modelgate.surfaces.openai_format.render import error_type

FIXTURES = Path(__file__).parents[1] / "fixtures" / "anthropic"
PROVIDER = "claude"


async def _lines(raw: bytes) -> AsyncIterator[bytes]:
    for line in raw.splitlines(keepends=True):
        yield line


def decode_stream(name: str) -> list[Event]:
    """The events of a recorded stream, up to the first error (which propagates)."""

    async def run() -> list[Event]:
        decoder = MessageDecoder(PROVIDER)
        events: list[Event] = []
        async for sse in iter_sse(_lines((FIXTURES / name).read_bytes())):
            data = orjson.loads(sse.data)
            assert data["type"] == sse.event  # the recording is well formed
            events.extend(decoder.decode(data["type"], data))
        assert decoder.done
        return events

    return asyncio.run(run())


def body(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def chat(**fields: Any) -> ChatRequest:
    fields.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return parse_chat_request({"model": "claude", **fields})


def to_anthropic(request: ChatRequest, max_output_tokens: int | None = None,
                 params: dict[str, Any] | None = None) -> dict[str, Any]:
    return request_to_anthropic(request, "claude-sonnet-4-5", max_output_tokens, params or {})


# --- the fixtures are what the official SDK parses --------------------------------------------


def test_fixtures_follow_the_sdk_types() -> None:
    events: TypeAdapter[anthropic.types.RawMessageStreamEvent] = TypeAdapter(anthropic.types.RawMessageStreamEvent)
    checked = 0
    for path in sorted(FIXTURES.glob("*.sse")):
        for frame in path.read_text().split("\n\n"):
            data_lines = [line[6:] for line in frame.splitlines() if line.startswith("data: ")]
            if not data_lines:
                continue
            data = json.loads(data_lines[0])
            if data["type"] == "error":
                anthropic.types.ErrorResponse.model_validate(data)
            elif data["type"] != "ping":
                events.validate_python(data)
            checked += 1
    for name in ("message_thinking_tool_use.json", "message_refusal.json"):
        anthropic.types.Message.model_validate(body(name))
    for name in ("error_overloaded.json", "error_invalid_request.json"):
        anthropic.types.ErrorResponse.model_validate(body(name))
    assert checked > 40


# --- answers → events ------------------------------------------------------------------------


def test_stream_with_thinking_and_parallel_tools() -> None:
    events = decode_stream("stream_thinking_parallel_tools.sse")
    assert events[0] == Start(model="claude-sonnet-4-5-20250929", response_id="msg_01XFDUDYJgAACzvnptvVoYEL")
    reasoning = [e for e in events if isinstance(e, ReasoningDelta)]
    assert reasoning[0].block_start and all(not e.block_start for e in reasoning[1:])
    assert {e.origin for e in reasoning} == {"anthropic"}
    # The signature arrives in a delta of its own, after the text.
    assert reasoning[-1].text == "" and (reasoning[-1].signature or "").startswith("EqQBCkgIBxABGAIi")
    # Tool deltas are numbered by call (0, 1), not by content block (2, 3).
    tools = [e for e in events if isinstance(e, ToolCallDelta)]
    assert {e.index for e in tools} == {0, 1}
    assert [e.name for e in tools if e.name] == ["get_weather", "get_weather"]

    result = fold_events(events)
    choice = result.choices[0]
    assert choice.text == "I'll check both cities."
    [block] = choice.reasoning
    assert block.text == ("The user wants the weather in Paris and London."
                          " I'll call get_weather for both cities at once.")
    assert block.signature == "EqQBCkgIBxABGAIiQGR3bFRvV0m9d1l0ZWRTaWduYXR1cmVGb3JUaGlua2luZ0Jsb2NrU2ltdWxhdGVk"
    assert block.origin == "anthropic"
    assert [(c.id, json.loads(c.arguments)) for c in choice.tool_calls] == [
        ("toolu_01A09q90qw90lq917835lq9", {"city": "Paris"}),
        ("toolu_01B7cSbnQf2pU3Lk8xJd6WqZ", {"city": "London"}),
    ]
    assert (choice.finish_reason, choice.native_reason) == ("tool_calls", "tool_use")
    # OpenAI's sense: input includes cache reads and writes.
    assert result.usage == Usage(input_tokens=472 + 2048 + 1536, output_tokens=187,
                                 cached_input_tokens=2048, cache_write_tokens=1536)


def test_stream_stopped_by_a_stop_sequence() -> None:
    result = fold_events(decode_stream("stream_text_stop_sequence.sse"))
    choice = result.choices[0]
    assert choice.text == "1, 2, 3, 4"
    assert (choice.finish_reason, choice.native_reason, choice.stop_sequence) == ("stop", "stop_sequence", ", 5")
    assert result.usage == Usage(input_tokens=21, output_tokens=12)


def test_stream_with_redacted_thinking_and_an_omitted_display() -> None:
    result = fold_events(decode_stream("stream_redacted_thinking.sse"))
    redacted, omitted = result.choices[0].reasoning
    assert redacted.redacted is not None and redacted.redacted.startswith("EmwKAhgBEgy3va3p")
    assert redacted.origin == "anthropic"
    # display "omitted": no text, yet a signature that must go back (openai-agents-python#4155).
    assert (omitted.text, omitted.signature) == ("", "ErUBCkYIBxABGAIiQOmittedDisplaySignature0123456789abcdef")
    assert result.choices[0].text == "Here is my answer."
    assert result.usage is not None and result.usage.reasoning_tokens == 190
    assert result.usage.output_tokens == 211


def test_error_event_after_the_stream_began_raises_with_its_status() -> None:
    events: list[Event] = []
    decoder = MessageDecoder(PROVIDER)
    frames = [json.loads(line[6:]) for line in (FIXTURES / "stream_error_after_start.sse").read_text().splitlines()
              if line.startswith("data: ")]
    with pytest.raises(UpstreamError) as caught:
        for data in frames:
            events.extend(decoder.decode(data["type"], data))
    assert fold_events(events).choices[0].text == "Once upon"
    error = caught.value
    assert (error.status, error.code, error.retryable) == (529, "overloaded_error", True)
    assert "Overloaded" in error.message and error.provider == PROVIDER


def test_whole_message_gives_the_events_a_stream_would() -> None:
    events = events_from_message(body("message_thinking_tool_use.json"), PROVIDER)
    assert isinstance(events[0], Start) and events[0].response_id == "msg_01Aq9w938a90dw8q"
    result = fold_events(events)
    choice = result.choices[0]
    thinking, redacted = choice.reasoning
    assert thinking.text == "I need the current temperature; the get_weather tool gives it."
    assert thinking.signature == "EqQBCkgIBxABGAIiQNonStreamSignatureOfTheThinkingBlock+/="
    assert redacted.redacted == "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj"
    assert choice.text == "Let me look that up."
    weather, clock = choice.tool_calls
    assert json.loads(weather.arguments) == {"city": "Paris", "unit": "celsius"}
    assert (clock.name, clock.arguments) == ("get_time", "{}")  # a call without arguments is "{}"
    assert choice.finish_reason == "tool_calls"
    assert result.usage == Usage(input_tokens=377 + 3000 + 120, output_tokens=95,
                                 cached_input_tokens=3000, cache_write_tokens=120)


def test_refusal_is_a_content_filter_finish() -> None:
    result = fold_events(events_from_message(body("message_refusal.json"), PROVIDER))
    assert (result.choices[0].finish_reason, result.choices[0].native_reason) == ("content_filter", "refusal")


@pytest.mark.parametrize(("native", "reason"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("pause_turn", "stop"), ("model_context_window_exceeded", "length"),
    ("a_reason_from_the_future", "stop"),
])
def test_stop_reasons(native: str, reason: str) -> None:
    message = {**body("message_refusal.json"), "stop_reason": native}
    [finish] = [e for e in events_from_message(message, PROVIDER) if isinstance(e, Finish)]
    assert (finish.reason, finish.native_reason) == (reason, native)
    assert native not in STOP_REASONS or STOP_REASONS[native] == reason


def test_error_bodies_keep_status_and_type() -> None:
    overloaded = status_error(PROVIDER, 529, body("error_overloaded.json"), retry_after=None)
    assert (overloaded.status, overloaded.code, error_type(overloaded), overloaded.retryable) == (
        529, "overloaded_error", "server_error", True)
    invalid = status_error(PROVIDER, 400, body("error_invalid_request.json"), retry_after=None)
    assert (invalid.status, invalid.code, invalid.retryable) == (400, "invalid_request_error", False)
    assert "Expected `thinking`" in invalid.message
    plain = status_error(PROVIDER, 502, "<html>Bad gateway</html>", retry_after=3.0)
    assert plain.retry_after == 3.0 and "Bad gateway" in plain.message


# --- requests → Messages bodies ---------------------------------------------------------------


def test_system_and_developer_messages_are_hoisted_and_turns_merged() -> None:
    out = to_anthropic(chat(messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "One"},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": [{"type": "text", "text": "Two"}, {"type": "text", "text": ""}]},
    ]))
    assert out["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Answer in French."}]
    # Consecutive user turns become one; the empty text block is gone.
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "One"},
                                                            {"type": "text", "text": "Two"}]}]


def test_one_system_message_is_a_string_and_cache_control_keeps_blocks() -> None:
    assert to_anthropic(chat(messages=[{"role": "system", "content": "S"},
                                       {"role": "user", "content": "U"}]))["system"] == "S"
    request = ChatRequest(model="m", messages=[
        Message("system", [TextPart("Long policy", cache_control={"type": "ephemeral", "ttl": "1h"})]),
        Message("user", [TextPart("Question")]),
    ])
    assert to_anthropic(request)["system"] == [
        {"type": "text", "text": "Long policy", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]


def test_a_request_with_only_a_system_prompt_is_refused_before_sending() -> None:
    with pytest.raises(InvalidRequest, match="at least one user message"):
        to_anthropic(chat(messages=[{"role": "system", "content": "Only a prompt"}]))


def test_tool_results_become_one_user_turn_with_results_first() -> None:
    out = to_anthropic(chat(
        tools=[{"type": "function", "function": {"name": "get_weather"}}],
        messages=[
            {"role": "user", "content": "Weather in Paris and London?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_a", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_b", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"London\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "12C"}]},
            {"role": "user", "content": "Thanks; which is warmer?"},
        ]))
    user, assistant, results = out["messages"]
    assert user["role"] == "user"
    # The empty content beside the tool calls is not sent as an empty text block.
    assert assistant == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_b", "name": "get_weather", "input": {"city": "London"}},
    ]}
    assert results == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_a", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "call_b", "content": "12C"},
        {"type": "text", "text": "Thanks; which is warmer?"},
    ]}
    # No parameters: the schema Anthropic requires is filled in.
    assert out["tools"] == [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}]


def test_tool_result_errors_images_and_cache_breakpoints() -> None:
    request = ChatRequest(model="m", messages=[
        Message("user", [TextPart("Run it")]),
        Message("assistant", [ToolCallPart(id="toolu_1", name="shot", arguments="{}")]),
        Message("tool", [TextPart("failed")], tool_call_id="toolu_1", is_error=True),
    ])
    assert to_anthropic(request)["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "failed", "is_error": True}]
    request.messages[2] = Message("tool", [ImagePart("data:image/png;base64,iVBORw0KGgo="),
                                           TextPart("", cache_control={"type": "ephemeral"})],
                                  tool_call_id="toolu_1")
    assert to_anthropic(request)["messages"][2]["content"] == [{
        "type": "tool_result", "tool_use_id": "toolu_1", "cache_control": {"type": "ephemeral"},
        "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                 "data": "iVBORw0KGgo="}}]}]


def test_images_by_data_url_and_by_http_url() -> None:
    out = to_anthropic(chat(messages=[{"role": "user", "content": [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
    ]}]))
    assert out["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": "UklGRg=="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_tool_call_ids_are_sanitised_alike_and_kept_unique() -> None:
    assert anthropic_tool_id("toolu_01A-b") == "toolu_01A-b"
    assert anthropic_tool_id("toolu_1\n") != "toolu_1\n"
    kimi = anthropic_tool_id("functions.Bash:0")
    assert kimi.startswith("functions_Bash_0_") and kimi == anthropic_tool_id("functions.Bash:0")
    assert kimi != anthropic_tool_id("functions_Bash_0")
    long_id = anthropic_tool_id("fc_" + "x" * 80 + "|rs_123")
    assert len(long_id) <= 64

    def turn(call_id: str) -> list[Message]:
        return [Message("assistant", [ToolCallPart(id=call_id, name="f", arguments="{}")]),
                Message("tool", [TextPart("ok")], tool_call_id=call_id)]

    # Gemini numbers its calls per answer: call_0 comes back every turn.
    request = ChatRequest(model="m", messages=[Message("user", [TextPart("go")]), *turn("call_0"),
                                               *turn("call_0"), *turn("functions.Bash:0")])
    messages = to_anthropic(request)["messages"]
    uses = [m["content"][0]["id"] for m in messages if m["role"] == "assistant"]
    results = [m["content"][0]["tool_use_id"] for m in messages[2:] if m["role"] == "user"]
    assert uses == results == ["call_0", "call_0_2", kimi]


def test_reasoning_goes_back_only_to_its_issuer_and_leads_the_turn() -> None:
    request = ChatRequest(model="m", messages=[
        Message("user", [TextPart("Weather?")]),
        Message("assistant", [
            TextPart("Checking."),
            ReasoningPart(text="Think A", signature="sig-A", origin="anthropic"),
            ReasoningPart(redacted="opaque", origin="anthropic"),
            ReasoningPart(text="Gemini thought", signature="g-sig", origin="gemini"),
            ReasoningPart(text="DeepSeek thought"),  # no opaque state: nothing to replay
            ReasoningPart(text="Unsigned", origin="anthropic"),
            ToolCallPart(id="toolu_9", name="get_weather", arguments='{"city": "Oslo"}'),
        ]),
        Message("tool", [TextPart("3C")], tool_call_id="toolu_9"),
    ])
    assistant = to_anthropic(request)["messages"][1]["content"]
    assert assistant == [
        {"type": "thinking", "thinking": "Think A", "signature": "sig-A"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Oslo"}},
    ]


def test_stop_sequences_drop_whitespace_only_entries() -> None:
    assert to_anthropic(chat(stop=["\n", "END", "  "]))["stop_sequences"] == ["END"]
    assert "stop_sequences" not in to_anthropic(chat(stop="\n\n"))


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "b"}}, None, {"type": "tool", "name": "b"}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    (None, None, None),
])
def test_tool_choice(choice: Any, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    fields: dict[str, Any] = {"tools": [{"type": "function", "function": {"name": "a"}},
                                        {"type": "function", "function": {"name": "b"}}]}
    if choice is not None:
        fields["tool_choice"] = choice
    if parallel is not None:
        fields["parallel_tool_calls"] = parallel
    assert to_anthropic(chat(**fields)).get("tool_choice") == expected


def test_tool_choice_is_not_sent_without_tools_and_strict_only_in_anthropic_format() -> None:
    assert "tool_choice" not in to_anthropic(chat(tool_choice="none"))
    strict_tool: dict[str, Any] = {"type": "function", "function": {
        "name": "f", "strict": True,
        "parameters": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}}}
    [tool] = to_anthropic(chat(tools=[strict_tool]))["tools"]
    assert tool == {"name": "f", "input_schema": strict_tool["function"]["parameters"]}
    request = chat(tools=[strict_tool])
    request.passthrough = AnthropicPassthrough(tool_strict={"f": True})
    assert to_anthropic(request)["tools"][0]["strict"] is True


def test_max_tokens_from_the_client_the_catalog_or_the_default() -> None:
    assert to_anthropic(chat(max_completion_tokens=300))["max_tokens"] == 300
    assert to_anthropic(chat(), max_output_tokens=64000)["max_tokens"] == 64000
    assert to_anthropic(chat())["max_tokens"] == 4096
    request = chat()
    request.max_tokens = 0  # Anthropic: "populate the prompt cache without generating"
    assert to_anthropic(request, max_output_tokens=64000)["max_tokens"] == 0


def test_max_tokens_above_the_models_output_limit_is_capped_there() -> None:
    # The budget stage sets max_tokens for the dearest target of a group; a fallback target with a
    # smaller output limit would refuse it.
    assert to_anthropic(chat(max_completion_tokens=128000), max_output_tokens=8192)["max_tokens"] == 8192
    out = to_anthropic(chat(max_completion_tokens=128000, reasoning_effort="high"), max_output_tokens=8192)
    assert out["max_tokens"] == 8192 and out["thinking"]["budget_tokens"] < 8192


@pytest.mark.parametrize(("effort", "budget"), [("low", 1024), ("medium", 4096), ("high", 16384),
                                                ("ultra-from-the-future", 4096)])
def test_reasoning_effort_turns_thinking_on(effort: str, budget: int) -> None:
    out = to_anthropic(chat(reasoning_effort=effort), max_output_tokens=64000)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert out["max_tokens"] == 64000


def test_thinking_budget_stays_below_max_tokens() -> None:
    # No limit known: room is made for the answer.
    out = to_anthropic(chat(reasoning_effort="high"))
    assert out["thinking"]["budget_tokens"] == 16384 and out["max_tokens"] > 16384
    # The client's limit counts the thinking too; the budget shrinks to fit.
    out = to_anthropic(chat(reasoning_effort="high", max_completion_tokens=5000))
    assert (out["max_tokens"], out["thinking"]["budget_tokens"]) == (5000, 4999)
    # Not even the 1024-token minimum fits: no thinking rather than a 400.
    out = to_anthropic(chat(reasoning_effort="high", max_completion_tokens=800))
    assert "thinking" not in out and out["max_tokens"] == 800
    # An explicit budget below the minimum is raised to it.
    request = chat()
    request.reasoning_budget = 100
    assert to_anthropic(request)["thinking"]["budget_tokens"] == 1024


def test_no_thinking_for_effort_none() -> None:
    assert "thinking" not in to_anthropic(chat(reasoning_effort="none"))
    assert "thinking" not in to_anthropic(chat())


def test_thinking_relaxes_what_anthropic_forbids_beside_it() -> None:
    out = to_anthropic(chat(
        reasoning_effort="low", temperature=0.2, top_p=0.5,
        tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="required", parallel_tool_calls=False))
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert "temperature" not in out and "top_p" not in out
    out = to_anthropic(chat(temperature=1.7, top_p=0.5))  # without thinking both go, clamped to 0..1
    assert (out["temperature"], out["top_p"]) == (1.0, 0.5)


def test_thinking_is_left_out_when_the_tool_loop_lost_its_thinking_blocks() -> None:
    """An OpenAI Chat client cannot send thinking blocks back: Anthropic would refuse the turn."""
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "3C"},
    ]
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    assert "thinking" not in to_anthropic(chat(messages=messages, tools=tools, reasoning_effort="low"))
    # With the blocks replayed, or once the loop is over (a new user turn), thinking stays on.
    request = chat(messages=messages, tools=tools, reasoning_effort="low")
    request.messages[1].content.insert(0, ReasoningPart(text="t", signature="s", origin="anthropic"))
    assert "thinking" in to_anthropic(request)
    later = chat(messages=[*messages, {"role": "assistant", "content": "3C in Oslo."},
                           {"role": "user", "content": "And Bergen?"}], tools=tools, reasoning_effort="low")
    assert "thinking" in to_anthropic(later)


def test_json_schema_uses_native_structured_output() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
              "additionalProperties": False}
    out = to_anthropic(chat(response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}))
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "output_config" not in to_anthropic(chat(response_format={"type": "json_object"}))


def test_openai_only_fields_are_left_out() -> None:
    out = to_anthropic(chat(seed=7, presence_penalty=0.5, frequency_penalty=0.5, logprobs=True, user="u-42",
                            metadata={"team": "a"}))
    assert set(out) == {"model", "max_tokens", "messages", "metadata"}
    assert out["metadata"] == {"user_id": "u-42"}
    with pytest.raises(InvalidRequest) as caught:
        to_anthropic(chat(n=2))
    assert caught.value.param == "n"


def test_fields_of_anthropic_format_pass_through_only_from_that_format() -> None:
    extra = {"top_k": 5, "metadata": {"user_id": "u-1"}, "container": "container_01", "service_tier": "auto",
             "cache_control": {"type": "ephemeral"}, "thinking": {"type": "adaptive", "display": "omitted"},
             "output_config": {"effort": "high"}}
    request = ChatRequest(model="m", messages=[Message("user", [TextPart("Hi")])], reasoning_effort="high",
                          temperature=0.3, passthrough=AnthropicPassthrough(fields=dict(extra)))
    out = to_anthropic(request)
    for key, value in extra.items():
        assert out[key] == value
    # There, effort is output_config.effort, not a thinking budget.
    assert out["output_config"] == {"effort": "high"}
    assert out["temperature"] == 0.3
    # The same fields in another format's pass-through are not Anthropic's to read.
    request.passthrough = OpenAIPassthrough(fields=dict(extra))
    out = to_anthropic(request)
    assert not set(extra) & set(out) - {"thinking"}
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 16384}


def test_deployment_params_are_merged_last() -> None:
    out = to_anthropic(chat(), params={"top_k": 10, "max_tokens": 999})
    assert (out["top_k"], out["max_tokens"]) == (10, 999)


def test_anthropic_beta_header_joins_the_configured_one() -> None:
    request = chat()
    assert request_headers(request, {"anthropic-beta": "context-1m-2025-08-07"}) == {}
    request.passthrough = AnthropicPassthrough(headers={"Anthropic-Beta": "interleaved-thinking-2025-05-14"})
    assert request_headers(request, {}) == {"anthropic-beta": "interleaved-thinking-2025-05-14"}
    assert request_headers(request, {"anthropic-beta": "context-1m-2025-08-07"}) == {
        "anthropic-beta": "context-1m-2025-08-07,interleaved-thinking-2025-05-14"}


def test_a_decoded_answer_replays_as_the_next_request() -> None:
    """What the decoder yields is what the request builder needs back: blocks, ids, signature."""
    result: ChatResult = fold_events(decode_stream("stream_thinking_parallel_tools.sse"))
    choice = result.choices[0]
    parts: list[Any] = [ReasoningPart(text=b.text, signature=b.signature, redacted=b.redacted, origin=b.origin)
                        for b in choice.reasoning]
    parts.append(TextPart(choice.text))
    parts += [ToolCallPart(id=c.id, name=c.name, arguments=c.arguments) for c in choice.tool_calls]
    request = ChatRequest(model="m", messages=[
        Message("user", [TextPart("Weather in Paris and London?")]), Message("assistant", parts),
        *[Message("tool", [TextPart("mild")], tool_call_id=c.id) for c in choice.tool_calls]],
        tools=[Tool(name="get_weather")], tool_choice=ToolChoice(mode="auto"), reasoning_effort="low")
    out = to_anthropic(request)
    assistant = out["messages"][1]["content"]
    assert assistant[0] == {"type": "thinking", "thinking": choice.reasoning[0].text,
                            "signature": choice.reasoning[0].signature}
    assert [b["input"] for b in assistant[2:]] == [{"city": "Paris"}, {"city": "London"}]
    assert [b["tool_use_id"] for b in out["messages"][2]["content"]] == [b["id"] for b in assistant[2:]]

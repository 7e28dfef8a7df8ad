"""The Anthropic surface's pure translation: Messages requests → canonical, events → Anthropic
stream events and bodies. No network; the SDK's own accumulator checks the event sequences."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event

from modelgate.schema.errors import InvalidRequest, UpstreamError
from modelgate.schema.events import Event, Finish, ReasoningDelta, Start, TextDelta, ToolCallDelta, Usage
from modelgate.schema.request import (
    AnthropicPassthrough,
    ImagePart,
    Message,
    ReasoningPart,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
)
from modelgate.surfaces.anthropic.parse import parse_messages_request, parse_turn
from modelgate.surfaces.anthropic.render import (
    MessageRenderer,
    error_body,
    error_type,
    fold_message,
    stream_error,
)

EPHEMERAL = {"type": "ephemeral"}


def parse(**body: Any) -> Any:
    return parse_messages_request({"model": "m", "max_tokens": 64, **body}, {})


def render(events: list[Event], show_reasoning: bool = True, estimate: int = 9) -> list[dict[str, Any]]:
    renderer = MessageRenderer("msg_1", "deployment", show_reasoning, estimate)
    out = [rendered for event in events for rendered in renderer.render(event)]
    return out + renderer.finish()


def sdk_message(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The message the official SDK's stream accumulator builds from these events."""
    snapshot = None
    buffers: dict[int, bytes] = {}
    for event in events:
        if event["type"] != "ping":
            snapshot = accumulate_event(event=event, current_snapshot=snapshot,  # type: ignore[arg-type]
                                        json_bufs=buffers)
    assert snapshot is not None
    return snapshot.to_dict()


def test_a_whole_conversation_becomes_canonical_messages() -> None:
    image = {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}
    request = parse(
        system=[{"type": "text", "text": "You are terse."},
                {"type": "text", "text": "Cite sources.", "cache_control": EPHEMERAL}],
        messages=[
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image", "source": image, "cache_control": EPHEMERAL},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Look closely.", "signature": "c2lnbmVk"},
                {"type": "redacted_thinking", "data": "b3BhcXVl"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "zoom", "input": {"level": 2}},
                {"type": "tool_use", "id": "toolu_2", "name": "ocr", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "zoomed"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True, "cache_control": EPHEMERAL,
                 "content": [{"type": "text", "text": "no text found"}, {"type": "image", "source": image}]},
                {"type": "text", "text": "Go on."}]},
            {"role": "system", "content": "Answer in French from now on."},
        ])
    assert isinstance(request.passthrough, AnthropicPassthrough) and request.max_tokens == 64
    assert request.messages == [
        Message(role="system", content=[TextPart("You are terse."), TextPart("Cite sources.", EPHEMERAL)]),
        Message(role="user", content=[
            TextPart("What is in these?"), ImagePart("data:image/png;base64,iVBORw0K", cache_control=EPHEMERAL),
            ImagePart("https://example.com/a.jpg")]),
        Message(role="assistant", content=[
            ReasoningPart(text="Look closely.", signature="c2lnbmVk", origin="anthropic"),
            ReasoningPart(redacted="b3BhcXVl", origin="anthropic"),
            TextPart("Let me check."),
            ToolCallPart(id="toolu_1", name="zoom", arguments='{"level":2}'),
            ToolCallPart(id="toolu_2", name="ocr", arguments="{}")]),
        Message(role="tool", tool_call_id="toolu_1", content=[TextPart("zoomed")]),
        Message(role="tool", tool_call_id="toolu_2", is_error=True, content=[
            TextPart("no text found"), ImagePart("data:image/png;base64,iVBORw0K"),
            TextPart("", cache_control=EPHEMERAL)]),
        Message(role="user", content=[TextPart("Go on.")]),
        Message(role="system", content=[TextPart("Answer in French from now on.")]),
    ]


def test_request_fields_map_onto_the_canonical_request() -> None:
    request = parse_messages_request({
        "model": "grok", "max_tokens": 2048, "stream": True, "temperature": 0.2, "top_p": 0.9, "top_k": 40,
        "stop_sequences": ["END"], "metadata": {"user_id": "u-1"}, "service_tier": "auto",
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}},
        "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}, "strict": True,
                   "cache_control": EPHEMERAL}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "messages": [{"role": "user", "content": "hi"}],
    }, {"anthropic-version": "2023-06-01", "anthropic-beta": "interleaved-thinking-2025-05-14"})
    assert (request.model, request.stream, request.temperature, request.top_p) == ("grok", True, 0.2, 0.9)
    assert request.stop == ["END"] and request.user == "u-1"
    assert (request.reasoning_budget, request.reasoning_effort) == (1024, "high")
    assert request.response_format == ResponseFormat(type="json_schema", schema={"type": "object"})
    assert request.tools == [Tool(name="f", description="d", parameters={"type": "object"}, strict=True,
                                  cache_control=EPHEMERAL)]
    assert (request.tool_choice, request.parallel_tool_calls) == (ToolChoice(mode="required"), False)
    # What the canonical request cannot say passes on, only to Anthropic upstreams, as sent.
    assert request.passthrough == AnthropicPassthrough(
        fields={
            "top_k": 40, "service_tier": "auto", "metadata": {"user_id": "u-1"},
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}},
        },
        tool_strict={"f": True},
        headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
    assert (request.passthrough.thinking, request.passthrough.effort) == (
        {"type": "enabled", "budget_tokens": 1024}, "high")


@pytest.mark.parametrize(("choice", "mode", "name", "parallel"), [
    ({"type": "auto"}, "auto", None, None),
    ({"type": "any"}, "required", None, None),
    ({"type": "none"}, "none", None, None),
    ({"type": "tool", "name": "f"}, "named", "f", None),
    ({"type": "auto", "disable_parallel_tool_use": False}, "auto", None, True),
])
def test_tool_choice(choice: dict[str, Any], mode: str, name: str | None, parallel: bool | None) -> None:
    request = parse(tool_choice=choice, messages=[{"role": "user", "content": "x"}])
    assert request.tool_choice == ToolChoice(mode=mode, name=name)  # type: ignore[arg-type]
    assert request.parallel_tool_calls is parallel


@pytest.mark.parametrize(("thinking", "budget"), [
    ({"type": "enabled", "budget_tokens": 3000}, 3000),
    ({"type": "disabled"}, 0),
    ({"type": "adaptive"}, None),
])
def test_thinking(thinking: dict[str, Any], budget: int | None) -> None:
    request = parse(thinking=thinking, messages=[{"role": "user", "content": "x"}])
    assert request.reasoning_budget == budget
    assert isinstance(request.passthrough, AnthropicPassthrough) and request.passthrough.thinking == thinking


@pytest.mark.parametrize(("body", "fragment"), [
    ({"max_tokens": None}, "'max_tokens' is required"),
    ({"messages": []}, "'messages' is required"),
    ({"temperature": 1.5}, "'temperature' must be between 0 and 1"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "server tool 'web_search_20250305'"),
    ({"tools": [{"name": "f"}]}, "'tools[0].input_schema' is required"),
    ({"tool_choice": {"type": "required"}}, "'tool_choice' must be"),
    ({"thinking": {"type": "enabled"}}, "'thinking.budget_tokens' is required"),
    ({"output_config": {"format": {"type": "json_object"}}}, "'output_config.format' must be"),
    ({"messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}]},
     "document blocks are not supported"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]},
     "file sources"),
    ({"messages": [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]}]},
     "tool_result blocks belong in user turns"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]},
     "tool_use blocks belong in assistant turns"),
    ({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": []}]}]},
     "'messages[0].content[0].input' must be an object"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "'messages[0].role' must be 'user' or 'assistant'"),
])
def test_bad_requests_name_the_field(body: dict[str, Any], fragment: str) -> None:
    full = {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "x"}], **body}
    with pytest.raises(InvalidRequest) as caught:
        parse_messages_request({k: v for k, v in full.items() if v is not None}, {})
    assert caught.value.status == 400
    assert fragment in caught.value.message


def test_count_tokens_bodies_need_no_max_tokens() -> None:
    request = parse_messages_request({"model": "m", "messages": [{"role": "user", "content": "x"}]}, {},
                                     counting=True)
    assert request.max_tokens is None


def test_full_stream_event_sequence_and_block_indexes() -> None:
    events = render([
        Start(model="claude-x"),
        ReasoningDelta(text="Hm", origin="anthropic", block_start=True),
        ReasoningDelta(text="m.", origin="anthropic"),
        ReasoningDelta(signature="sig-a", origin="anthropic"),
        ReasoningDelta(signature="sig-b", origin="anthropic"),
        ReasoningDelta(redacted="opaque", origin="anthropic", block_start=True),
        TextDelta("Calling "), TextDelta("two."),
        ToolCallDelta(index=0, id="toolu_a", name="f"),
        ToolCallDelta(index=1, id="toolu_b", name="g", arguments='{"y":'),
        ToolCallDelta(index=0, arguments='{"x": 1}'),
        ToolCallDelta(index=1, arguments="2}"),
        Finish("tool_calls"),
        Usage(input_tokens=100, output_tokens=7, cached_input_tokens=30, cache_write_tokens=20),
    ])
    assert events == [
        {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
            "stop_reason": None, "stop_sequence": None, "stop_details": None,
            "usage": {"input_tokens": 9, "output_tokens": 0, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0}}},
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "",
                                                                      "signature": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hm"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "m."}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig-asig-b"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "opaque"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Calling "}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "two."}},
        {"type": "content_block_stop", "index": 2},
        {"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "toolu_a",
                                                                      "name": "f", "input": {}}},
        {"type": "content_block_stop", "index": 3},
        {"type": "content_block_start", "index": 4, "content_block": {"type": "tool_use", "id": "toolu_b",
                                                                      "name": "g", "input": {}}},
        {"type": "content_block_delta", "index": 4, "delta": {"type": "input_json_delta", "partial_json": '{"y":'}},
        # Arguments of an earlier call still go to its own block.
        {"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta",
                                                              "partial_json": '{"x": 1}'}},
        {"type": "content_block_delta", "index": 4, "delta": {"type": "input_json_delta", "partial_json": "2}"}},
        {"type": "content_block_stop", "index": 4},
        # Anthropic's input_tokens leave out cache reads and writes, which the canonical count includes.
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None, "stop_details": None},
         "usage": {"input_tokens": 50, "output_tokens": 7, "cache_creation_input_tokens": 20,
                   "cache_read_input_tokens": 30}},
        {"type": "message_stop"},
    ]


def test_folded_message_is_what_the_sdk_accumulates() -> None:
    events = render([
        Start(model="deepseek-v4"),
        ReasoningDelta(text="Think", block_start=True), ReasoningDelta(text="ing."),
        TextDelta("Sure."),
        ToolCallDelta(index=0, id="call_1", name="f", arguments='{"a"'), ToolCallDelta(index=0, arguments=": [1]}"),
        Finish("tool_calls", native_reason="tool_calls"),
        Usage(input_tokens=12, output_tokens=5, reasoning_tokens=2),
    ])
    folded = fold_message(events, "deepseek")
    assert folded == {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "deepseek-v4",
        "content": [{"type": "thinking", "thinking": "Thinking.", "signature": ""},
                    {"type": "text", "text": "Sure."},
                    {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": [1]}}],
        "stop_reason": "tool_use", "stop_sequence": None, "stop_details": None,
        "usage": {"input_tokens": 12, "output_tokens": 5, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0},
    }
    assert sdk_message(events) == folded


@pytest.mark.parametrize(("finish", "calls", "stop_reason", "stop_sequence"), [
    (Finish("stop"), False, "end_turn", None),
    (Finish("stop", stop_sequence="END"), False, "stop_sequence", "END"),
    (Finish("length"), False, "max_tokens", None),
    (Finish("content_filter"), False, "refusal", None),
    (Finish("tool_calls"), True, "tool_use", None),
    (Finish("stop", native_reason="pause_turn"), False, "pause_turn", None),
    (Finish("length", native_reason="model_context_window_exceeded"), False, "model_context_window_exceeded", None),
    (Finish("stop", native_reason="STOP"), False, "end_turn", None),
    # Servers that say "stop" after tool calls (Ollama): clients run tools on tool_use.
    (Finish("stop", native_reason="stop"), True, "tool_use", None),
    (None, False, "end_turn", None),
])
def test_stop_reasons(finish: Finish | None, calls: bool, stop_reason: str, stop_sequence: str | None) -> None:
    events: list[Event] = [Start(model="m"), TextDelta("x")]
    if calls:
        events.append(ToolCallDelta(index=0, id="c", name="f", arguments="{}"))
    if finish is not None:
        events.append(finish)
    delta = render(events)[-2]
    assert delta["delta"] == {"stop_reason": stop_reason, "stop_sequence": stop_sequence, "stop_details": None}


def test_hidden_reasoning_keeps_only_signatures() -> None:
    events = render([
        Start(model="m"),
        ReasoningDelta(text="secret thoughts", origin="anthropic", block_start=True),
        ReasoningDelta(signature="sig", origin="anthropic"),
        ReasoningDelta(text="unsigned thoughts", block_start=True),  # DeepSeek's: nothing to keep
        TextDelta("Answer."),
        Finish("stop"),
    ], show_reasoning=False)
    assert sdk_message(events)["content"] == [{"type": "thinking", "thinking": "", "signature": "sig"},
                                              {"type": "text", "text": "Answer."}]
    assert "secret" not in orjson.dumps(events).decode()


def test_usage_before_content_goes_into_message_start() -> None:
    events = render([Start(model="m"), Usage(input_tokens=40, cached_input_tokens=10), TextDelta("x"),
                     Finish("stop"), Usage(input_tokens=40, output_tokens=3, cached_input_tokens=10)])
    assert events[0]["message"]["usage"] == {"input_tokens": 30, "output_tokens": 0,
                                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10}
    assert sdk_message(events)["usage"]["output_tokens"] == 3


def test_without_upstream_usage_the_numbers_are_estimates() -> None:
    events = render([Start(model="m"), TextDelta("12345678"), Finish("stop")], estimate=21)
    assert events[-2]["usage"] == {"input_tokens": 21, "output_tokens": 2}


def test_an_empty_answer_is_still_a_whole_message() -> None:
    events = render([Start(model="m"), Finish("content_filter")])
    assert [e["type"] for e in events] == ["message_start", "ping", "message_delta", "message_stop"]
    assert fold_message(events, "p")["content"] == []


def test_tool_arguments_that_are_not_an_object_are_an_upstream_error() -> None:
    events = render([Start(model="m"), ToolCallDelta(index=0, id="c", name="f", arguments='{"cut": '),
                     Finish("length")])
    with pytest.raises(UpstreamError) as caught:
        fold_message(events, "vllm")
    assert caught.value.status == 502 and "vllm" in caught.value.message


@pytest.mark.parametrize(("origin", "on_call"), [("gemini", True), ("gemini", False), ("anthropic", False)])
def test_signatures_come_back_to_their_issuer(origin: str, on_call: bool) -> None:
    if on_call:
        answer: list[Event] = [ToolCallDelta(index=0, id="call_0", name="f", arguments="{}", signature="s1",
                                             origin=origin)]
    else:
        answer = [ReasoningDelta(text="t", signature="s1", origin=origin, block_start=True), TextDelta("x")]
    content = fold_message(render([Start(model="m"), *answer, Finish("stop")]), "p")["content"]
    (turn,) = parse_turn({"role": "assistant", "content": content}, 0)
    if on_call:
        assert turn.content == [ToolCallPart(id="call_0", name="f", arguments="{}", signature="s1", origin=origin)]
    else:
        assert turn.content == [ReasoningPart(text="t", signature="s1", origin=origin), TextPart("x")]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_responses_reasoning_item_comes_back_with_its_id(stream: bool) -> None:
    """As a Responses API upstream streams it: the item's id with its start, its encrypted content
    when it is done."""
    answer: list[Event] = [Start(model="m"),
                           ReasoningDelta(text="Plan.", origin="openai", block_start=True, id="rs_01"),
                           ReasoningDelta(signature="gAAAA-enc==", origin="openai"),
                           ReasoningDelta(text="Second.", signature="gBBBB", origin="openai", block_start=True),
                           ToolCallDelta(index=0, id="call_1", name="f", arguments="{}", origin="openai"),
                           Finish("tool_calls")]
    events = render(answer)
    content = sdk_message(events)["content"] if stream else fold_message(events, "p")["content"]
    assert [b.get("signature") for b in content] == ["openai:rs_01:gAAAA-enc==", "openai:gBBBB", None]
    (turn,) = parse_turn({"role": "assistant", "content": content}, 0)
    assert turn.content[:2] == [ReasoningPart(text="Plan.", signature="gAAAA-enc==", origin="openai", id="rs_01"),
                                ReasoningPart(text="Second.", signature="gBBBB", origin="openai")]


def test_unsigned_reasoning_comes_back_without_origin() -> None:
    (turn,) = parse_turn({"role": "assistant", "content": [
        {"type": "thinking", "thinking": "from deepseek", "signature": ""}, {"type": "text", "text": "x"}]}, 0)
    assert turn.content == [ReasoningPart(text="from deepseek"), TextPart("x")]


def test_a_call_signature_without_its_call_stays_reasoning() -> None:
    (turn,) = parse_turn({"role": "assistant", "content": [
        {"type": "thinking", "thinking": "", "signature": "gemini:call:s1"}, {"type": "text", "text": "x"}]}, 0)
    assert turn.content == [ReasoningPart(signature="s1", origin="gemini"), TextPart("x")]


@pytest.mark.parametrize(("status", "kind"), [
    (400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
    (404, "not_found_error"), (409, "invalid_request_error"), (413, "request_too_large"),
    (429, "rate_limit_error"), (500, "api_error"), (502, "api_error"), (503, "overloaded_error"),
    (504, "timeout_error"), (529, "overloaded_error"),
])
def test_error_types_follow_the_status(status: int, kind: str) -> None:
    assert error_type(status) == kind


def test_error_bodies() -> None:
    error = UpstreamError("upstream fell over", provider="p", status=502)
    assert orjson.loads(error_body(error, "req_9")) == {
        "type": "error", "error": {"type": "api_error", "message": "upstream fell over"}, "request_id": "req_9"}
    frame = stream_error(UpstreamError("busy", provider="p", status=529), "req_9")
    name, data = frame.decode().rstrip("\n").split("\n")
    assert name == "event: error"
    assert orjson.loads(data.removeprefix("data: "))["error"] == {"type": "overloaded_error", "message": "busy"}

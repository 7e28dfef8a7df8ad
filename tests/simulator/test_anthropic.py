"""The Anthropic surface, driven by the official anthropic SDK."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import MessageParam, ThinkingConfigParam, ToolParam

from modelgate.simulator import SimulatorThread, count_tokens, message_tokens, tool_tokens
from tests.simulator.conftest import API_KEY, post_json

WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CLOCK: ToolParam = {
    "name": "get_time",
    "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}},
}
THINK: Any = {"type": "enabled", "budget_tokens": 1024}


def client(sim: SimulatorThread, **kwargs: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim.base_url, api_key=kwargs.pop("api_key", API_KEY), max_retries=0, **kwargs)


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def test_create_text_and_usage(sim_thread: SimulatorThread) -> None:
    raw = client(sim_thread).messages.with_raw_response.create(
        model="claude-haiku", max_tokens=200, system="Be terse.", messages=user("Hello Claude, how are you?")
    )
    message = raw.parse()
    assert raw.headers["request-id"].startswith("req_011C")
    assert message.id.startswith("msg_01") and message.stop_reason == "end_turn"
    assert [b.type for b in message.content] == ["text"]
    text = message.content[0].text  # type: ignore[union-attr]
    assert text.startswith("Simulated reply from claude-haiku to: Hello Claude, how are you. ")
    assert message.usage.input_tokens == message_tokens("Be terse.") + message_tokens("Hello Claude, how are you?")
    assert message.usage.output_tokens == count_tokens(text)
    assert message.usage.cache_read_input_tokens == 0 and message.usage.cache_creation_input_tokens == 0


def test_stream_matches_create_and_event_order(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    with c.messages.stream(model="claude-haiku", max_tokens=200, messages=user("stream it")) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    whole = c.messages.create(model="claude-haiku", max_tokens=200, messages=user("stream it"))
    assert final.content[0].text == whole.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens
    raw_events = [e for e in events if not e.startswith(("text", "input_json", "thinking", "signature"))]
    assert raw_events[:3] == ["message_start", "content_block_start", "content_block_delta"]
    assert raw_events[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events.count("content_block_delta") == len(final.content[0].text.split())  # type: ignore[union-attr]


def test_stream_wire_has_event_lines_and_ping(sim_thread: SimulatorThread) -> None:
    import urllib.request

    request = urllib.request.Request(
        f"{sim_thread.base_url}/v1/messages",
        method="POST",
        data=b'{"model":"c","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"hi"}]}',
        headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        lines = response.read().decode().split("\n")
    names = [line[7:] for line in lines if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert len(names) == len([line for line in lines if line.startswith("data: ")])
    assert '"output_tokens":1' in next(line for line in lines if line.startswith("data: "))


def test_tools_create_and_stream(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    message = c.messages.create(model="c", max_tokens=300, messages=user("weather in parallel"), tools=[WEATHER, CLOCK])
    assert message.stop_reason == "tool_use"
    uses = [b for b in message.content if b.type == "tool_use"]
    assert [(u.name, u.input) for u in uses] == [("get_weather", {"city": "text"}), ("get_time", {"tz": "text"})]
    assert all(u.id.startswith("toolu_01") for u in uses)
    expected = message_tokens("weather in parallel") + tool_tokens(
        "get_weather", "Weather for a city", WEATHER["input_schema"]
    )
    assert message.usage.input_tokens == expected + tool_tokens("get_time", "", CLOCK["input_schema"])
    with c.messages.stream(
        model="c",
        max_tokens=300,
        messages=user("weather"),
        tools=[WEATHER],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    ) as stream:
        json_deltas = [e.partial_json for e in stream if e.type == "input_json"]
        final = stream.get_final_message()
    assert json_deltas[0] == "" and len(json_deltas) >= 3
    assert [(b.type, getattr(b, "input", None)) for b in final.content] == [("tool_use", {"city": "text"})]
    forced = c.messages.create(
        model="c",
        max_tokens=300,
        messages=user("weather in parallel"),
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "tool", "name": "get_time"},
    )
    assert [b.name for b in forced.content if b.type == "tool_use"] == ["get_time"]
    none = c.messages.create(
        model="c", max_tokens=300, messages=user("weather"), tools=[WEATHER], tool_choice={"type": "none"}
    )
    assert none.stop_reason == "end_turn" and [b.type for b in none.content] == ["text"]


def test_tool_result_round_trip_and_validation(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    first = c.messages.create(model="c", max_tokens=300, messages=user("weather?"), tools=[WEATHER])
    use = first.content[0]
    assert use.type == "tool_use"
    history: list[Any] = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Foggy, 12C"}]},
    ]
    answer = c.messages.create(model="c", max_tokens=300, messages=history, tools=[WEATHER])
    assert "Foggy, 12C" in answer.content[0].text  # type: ignore[union-attr]
    cases: list[tuple[list[Any], str]] = [
        ([*history[:2], {"role": "user", "content": "no result"}], "`tool_use` ids were found without `tool_result`"),
        (
            [*history[:2], {"role": "user", "content": [{"type": "text", "text": "x"}, history[2]["content"][0]]}],
            "without `tool_result` blocks",
        ),
        (
            [history[0], {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x"}]}],
            "unexpected `tool_use_id`",
        ),
        ([{"role": "assistant", "content": "hi"}, *user("x")], 'first message must use the "user" role'),
        ([{"role": "user", "content": [{"type": "text", "text": ""}]}], "text content blocks must be non-empty"),
        (
            [
                history[0],
                {"role": "assistant", "content": [{"type": "tool_use", "id": "bad|id", "name": "f", "input": {}}]},
            ],
            "String should match pattern",
        ),
    ]
    for messages, fragment in cases:
        with pytest.raises(anthropic.BadRequestError) as caught:
            c.messages.create(model="c", max_tokens=300, messages=messages, tools=[WEATHER])
        assert fragment in caught.value.message
        assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


def test_request_validation_errors(sim_thread: SimulatorThread) -> None:
    status, body = post_json(
        f"{sim_thread.base_url}/v1/messages",
        {"model": "c", "messages": user("x")},
        {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"},
    )
    assert status == 400 and body["error"]["message"] == "max_tokens: Field required"
    assert body["type"] == "error" and body["request_id"].startswith("req_")
    status, body = post_json(
        f"{sim_thread.base_url}/v1/messages",
        {"model": "c", "max_tokens": 5, "messages": user("x")},
        {"x-api-key": API_KEY},
    )
    assert status == 400 and body["error"]["message"] == "anthropic-version: header is required"
    c = client(sim_thread)
    thinking_cases: list[tuple[ThinkingConfigParam, str]] = [
        ({"type": "enabled", "budget_tokens": 500}, "greater than or equal to 1024"),
        ({"type": "enabled", "budget_tokens": 2048}, "`max_tokens` must be greater"),
    ]
    for thinking, fragment in thinking_cases:
        with pytest.raises(anthropic.BadRequestError) as caught:
            c.messages.create(model="c", max_tokens=2000, messages=user("x"), thinking=thinking)
        assert fragment in caught.value.message
    with pytest.raises(anthropic.BadRequestError, match="forces tool use"):
        c.messages.create(
            model="c", max_tokens=2000, messages=user("x"), thinking=THINK, tools=[WEATHER], tool_choice={"type": "any"}
        )


def test_thinking_signature_round_trip(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    with c.messages.stream(
        model="claude-sim-thinker", max_tokens=3000, thinking=THINK, tools=[WEATHER], messages=user("weather in Oslo?")
    ) as stream:
        kinds = [e.type for e in stream]
        first = stream.get_final_message()
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    thinking = first.content[0]
    assert thinking.type == "thinking" and thinking.thinking.startswith("The user wrote about weather in Oslo. ")
    assert kinds.count("signature") == 1 and thinking.signature
    assert first.usage.output_tokens == count_tokens(thinking.thinking) + count_tokens('get_weather {"city":"text"}')
    blocks: list[Any] = [b.model_dump(exclude_none=True) for b in first.content]
    tool_id = blocks[1]["id"]
    result: MessageParam = {
        "role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "snow"}]}
    ok = c.messages.create(
        model="claude-sim-thinker",
        max_tokens=3000,
        thinking=THINK,
        tools=[WEATHER],
        messages=[*user("weather in Oslo?"), {"role": "assistant", "content": blocks}, result],
    )
    assert ok.stop_reason == "end_turn" and "snow" in ok.content[-1].text  # type: ignore[union-attr]
    tampered = [{**blocks[0], "thinking": blocks[0]["thinking"] + " (edited)"}, blocks[1]]
    missing = [blocks[1]]
    for content, fragment in [
        (tampered, "Invalid `signature` in `thinking` block"),
        (missing, "Expected `thinking` or `redacted_thinking`, but found `tool_use`"),
    ]:
        with pytest.raises(anthropic.BadRequestError) as caught:
            c.messages.create(
                model="claude-sim-thinker",
                max_tokens=3000,
                thinking=THINK,
                tools=[WEATHER],
                messages=[*user("weather in Oslo?"), {"role": "assistant", "content": content}, result],
            )
        assert fragment in caught.value.message


def test_redacted_thinking_round_trip(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    first = c.messages.create(model="c", max_tokens=3000, thinking={"type": "adaptive"}, messages=user("redact me"))
    assert [b.type for b in first.content] == ["thinking", "redacted_thinking", "text"]
    blocks = [b.model_dump(exclude_none=True) for b in first.content]
    follow = [*user("redact me"), {"role": "assistant", "content": blocks}, *user("and again")]
    assert c.messages.create(model="c", max_tokens=3000, thinking={"type": "adaptive"}, messages=follow).content
    blocks[1]["data"] = blocks[1]["data"][:-4] + "AAA="
    with pytest.raises(anthropic.BadRequestError, match="redacted_thinking"):
        c.messages.create(model="c", max_tokens=3000, thinking={"type": "adaptive"}, messages=follow)


def test_prompt_caching_write_then_read(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    system: Any = [{"type": "text", "text": "A long shared system prompt " * 5, "cache_control": {"type": "ephemeral"}}]
    prefix = message_tokens("A long shared system prompt " * 5)
    first = c.messages.create(model="cache-model", max_tokens=100, system=system, messages=user("question one"))
    assert first.usage.cache_creation_input_tokens == prefix and first.usage.cache_read_input_tokens == 0
    assert first.usage.input_tokens == message_tokens("question one")
    assert first.usage.cache_creation is not None and first.usage.cache_creation.ephemeral_5m_input_tokens == prefix
    second = c.messages.create(model="cache-model", max_tokens=100, system=system, messages=user("question two"))
    assert second.usage.cache_read_input_tokens == prefix and second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == message_tokens("question two")


def test_limits_stop_sequences_structured_output(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    short = c.messages.create(model="c", max_tokens=3, messages=user("hello"))
    assert short.stop_reason == "max_tokens" and short.content[0].text == "Simulated reply from"  # type: ignore[union-attr]
    stopped = c.messages.create(model="c", max_tokens=100, messages=user("about mangoes"), stop_sequences=["mangoes"])
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "mangoes"
    assert stopped.content[0].text == "Simulated reply from c to: about "  # type: ignore[union-attr]
    structured = c.messages.create(
        model="c",
        max_tokens=100,
        messages=user("json"),
        extra_body={
            "output_config": {
                "format": {
                    "type": "json_schema",
                    "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"}}},
                }
            }
        },
    )
    assert structured.content[0].text == '{"ok":true,"n":1}'  # type: ignore[union-attr]


def test_count_tokens(sim_thread: SimulatorThread) -> None:
    result = client(sim_thread).messages.count_tokens(
        model="c", system="sys", messages=user("count these words"), tools=[WEATHER]
    )
    expected = message_tokens("sys") + message_tokens("count these words")
    assert result.input_tokens == expected + tool_tokens("get_weather", "Weather for a city", WEATHER["input_schema"])


def test_errors_and_faults(sim_thread: SimulatorThread) -> None:
    with pytest.raises(anthropic.AuthenticationError) as auth:
        client(sim_thread, api_key="wrong").messages.create(model="c", max_tokens=10, messages=user("x"))
    assert auth.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        "request_id": auth.value.request_id,
    }
    c = client(sim_thread)
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        c.messages.create(model="c", max_tokens=10, messages=user("x"), extra_headers={"x-sim-fault": "status=529"})
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    with pytest.raises(anthropic.RateLimitError) as limited:
        c.messages.create(
            model="c", max_tokens=10, messages=user("x"), extra_headers={"x-sim-fault": "status=429;retry_after=3"}
        )
    assert limited.value.response.headers["retry-after"] == "3"
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    with pytest.raises(anthropic.InternalServerError) as server:
        c.messages.create(model="c", max_tokens=10, messages=user("x"), extra_headers={"x-sim-fault": "status=500"})
    assert server.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError, match="prompt is too long: 13 tokens > 10 maximum"):
        c.messages.create(
            model="tiny-context", max_tokens=10, messages=user("one two three four five six seven eight nine ten")
        )


def test_mid_stream_error_event_raises(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    seen = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        c.messages.stream(
            model="c", max_tokens=100, messages=user("hi"), extra_headers={"x-sim-fault": "error_after=4"}
        ) as stream,
    ):
        for event in stream:
            seen.append(event.type)
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert seen[0] == "message_start" and len([e for e in seen if e != "text"]) == 3
    # A stream cut mid-body: the anthropic SDK raises its connection error, caused by the transport's.
    with pytest.raises(anthropic.APIConnectionError, match="incomplete chunked read") as cut:
        list(
            c.messages.create(
                model="c", max_tokens=100, messages=user("hi"), stream=True, extra_headers={"x-sim-fault": "cut=2"}
            )
        )
    assert isinstance(cut.value.__cause__, httpx2.RemoteProtocolError)
    refused = c.messages.create(model="c", max_tokens=100, messages=user("hi"), extra_headers={"x-sim-fault": "safety"})
    assert refused.stop_reason == "refusal" and refused.content == []

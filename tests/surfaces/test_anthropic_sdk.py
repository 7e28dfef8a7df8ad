"""The official ``anthropic`` SDK against a real gateway whose deployments sit on the simulator:
OpenAI-compatible ones (GPT, Grok, DeepSeek), an Anthropic one and a Gemini one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import anthropic
import httpx
import orjson
import pytest
from anthropic.types import Message, MessageParam, ToolParam

from modelgate.simulator import SimConfig, SimulatorThread, count_tokens, message_tokens
from tests.support import RunningGateway, anthropic_client, gateway_in_thread, native_sim_config

MASTER_KEY = "mg-test-master"
WEATHER: ToolParam = {"name": "get_weather", "description": "Current weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CLOCK: ToolParam = {"name": "get_time", "description": "Local time in a timezone",
         "input_schema": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}
ASK_WEATHER: list[MessageParam] = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[SimulatorThread]:
    config = SimConfig.from_dict({"api_key": "sk-sim", "models": {
        "deepseek-v4": {"reasoning": True, "require_reasoning_echo": True},
        "busy-model": {"fault": "status=429;retry_after=7"},
        "overloaded-model": {"fault": "status=529"},
        "flaky-model": {"fault": "error_after=4"},
        "claude-flaky": {"fault": "error_after=4"},
    }})
    with SimulatorThread(config) as sim:
        yield sim


@pytest.fixture(scope="module")
def gateway(upstream: SimulatorThread) -> Iterator[RunningGateway]:
    config = native_sim_config(upstream.base_url, master_key=MASTER_KEY)
    config["deployments"] += [
        {"name": "deepseek-v4", "provider": "deepseek", "model": "deepseek-v4"},
        {"name": "deepseek-hidden", "provider": "deepseek", "model": "deepseek-v4", "reasoning": {"show": False}},
        {"name": "busy", "provider": "openai", "model": "busy-model"},
        {"name": "overloaded", "provider": "openai", "model": "overloaded-model"},
        {"name": "flaky", "provider": "openai", "model": "flaky-model"},
        {"name": "claude", "provider": "anthropic", "model": "claude-sonnet-4-5"},
        {"name": "claude-flaky", "provider": "anthropic", "model": "claude-flaky"},
        {"name": "gemini", "provider": "gemini", "model": "gemini-2.5-flash"},
    ]
    with gateway_in_thread(config) as running:
        yield running


@pytest.fixture(scope="module")
def client(gateway: RunningGateway) -> Iterator[anthropic.Anthropic]:
    with anthropic_client(gateway, MASTER_KEY) as sdk:
        yield sdk


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of every event of a raw SSE body."""
    events = []
    for frame in response.text.split("\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        events.append((lines["event"], orjson.loads(lines["data"])))
    return events


def outline(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The event sequence with runs of deltas of one kind on one block folded into one entry."""
    out: list[str] = []
    for name, data in events:
        if name == "content_block_start":
            entry = f"start {data['index']} {data['content_block']['type']}"
        elif name == "content_block_delta":
            entry = f"delta {data['index']} {data['delta']['type']}"
        elif name == "content_block_stop":
            entry = f"stop {data['index']}"
        else:
            entry = name
        if not out or out[-1] != entry:
            out.append(entry)
    return out


def test_create_answers_with_an_anthropic_message(client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(
        model="gpt-4o", max_tokens=256, system="Be brief.",
        messages=[{"role": "user", "content": "Say hello to the gateway"}])
    message = raw.parse()
    request_id = raw.headers["request-id"]
    assert request_id.startswith("req_") and raw.headers["x-request-id"] == request_id
    assert message.id == "msg_" + request_id[4:]
    assert (message.type, message.role, message.model) == ("message", "assistant", "gpt-4o")
    assert [block.type for block in message.content] == ["text"]
    text = message.content[0].text  # type: ignore[union-attr]
    assert text.startswith("Simulated reply from gpt-4o to: Say hello to the gateway.")
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    # The upstream's own counts (the simulator's documented estimator), not an estimate of ours.
    assert message.usage.input_tokens == message_tokens("Be brief.") + message_tokens("Say hello to the gateway")
    assert message.usage.output_tokens == count_tokens(text)
    assert (message.usage.cache_read_input_tokens, message.usage.cache_creation_input_tokens) == (0, 0)


def test_stream_sends_anthropic_events_in_order(gateway: RunningGateway, client: anthropic.Anthropic) -> None:
    body: dict[str, Any] = {"model": "deepseek-reasoner", "max_tokens": 300,
            "messages": [{"role": "user", "content": "Think about the gateway"}]}
    response = httpx.post(f"{gateway.base_url}/v1/messages", json={**body, "stream": True},
                          headers={"x-api-key": MASTER_KEY}, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    assert all(name == data["type"] for name, data in events)
    assert outline(events) == [
        "message_start", "ping",
        "start 0 thinking", "delta 0 thinking_delta", "stop 0",
        "start 1 text", "delta 1 text_delta", "stop 1",
        "message_delta", "message_stop",
    ]
    started = events[0][1]["message"]
    assert (started["content"], started["stop_reason"]) == ([], None)
    whole = client.messages.create(**body)
    # The usage in message_start is the gateway's estimate; message_delta brings the upstream's
    # numbers, which the SDK takes as cumulative.
    assert started["usage"]["input_tokens"] != whole.usage.input_tokens
    final_usage = events[-2][1]["usage"]
    assert final_usage["input_tokens"] == whole.usage.input_tokens == message_tokens("Think about the gateway")
    assert events[-2][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None, "stop_details": None}
    with client.messages.stream(**body) as stream:
        final = stream.get_final_message()
    assert final.to_dict() == {**whole.to_dict(), "id": final.id}
    thinking = final.content[0]
    assert thinking.type == "thinking" and thinking.signature == ""
    assert thinking.thinking.startswith("The user wrote about Think about the gateway.")


def test_tool_use_and_tool_result_round_trip(client: anthropic.Anthropic) -> None:
    first = client.messages.create(model="gpt-4o", max_tokens=256, tools=[WEATHER], messages=ASK_WEATHER)
    assert first.stop_reason == "tool_use"
    (call,) = first.content
    assert call.type == "tool_use" and call.name == "get_weather"
    assert isinstance(call.input, dict) and set(call.input) == {"city"}
    second = client.messages.create(model="gpt-4o", max_tokens=256, tools=[WEATHER], messages=[
        *ASK_WEATHER, first.to_param(),
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                      "content": [{"type": "text", "text": "18 degrees and sunny"}]}]},
    ])
    assert second.stop_reason == "end_turn"
    assert "after the tool returned: 18 degrees and sunny" in second.content[0].text  # type: ignore[union-attr]


def test_parallel_tool_calls_stream_as_separate_blocks(gateway: RunningGateway, client: anthropic.Anthropic) -> None:
    body: dict[str, Any] = {"model": "grok-3-mini", "max_tokens": 400, "tools": [WEATHER, CLOCK],
            "messages": [{"role": "user", "content": "In parallel: weather in Oslo and the time there"}]}
    response = httpx.post(f"{gateway.base_url}/v1/messages", json={**body, "stream": True},
                          headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=10)
    assert outline(sse_events(response)) == [
        "message_start", "ping",
        "start 0 thinking", "delta 0 thinking_delta", "stop 0",
        "start 1 tool_use", "delta 1 input_json_delta", "stop 1",
        "start 2 tool_use", "delta 2 input_json_delta", "stop 2",
        "message_delta", "message_stop",
    ]
    with client.messages.stream(**body) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    calls = [block for block in final.content if block.type == "tool_use"]
    assert [(c.name, set(c.input)) for c in calls] == [("get_weather", {"city"}), ("get_time", {"timezone"})]
    assert len({c.id for c in calls}) == 2
    one = client.messages.create(**body, tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert [b.name for b in one.content if b.type == "tool_use"] == ["get_weather"]
    forced = client.messages.create(**body, tool_choice={"type": "tool", "name": "get_time"})
    assert [b.name for b in forced.content if b.type == "tool_use"] == ["get_time"]


def _answer_tool(message: Message, result: str) -> list[dict[str, Any]]:
    """The history after a tool call, as JSON-like dicts (tests edit them): the reply's blocks dumped as they came."""
    call = next(block for block in message.content if block.type == "tool_use")
    return [*(dict(m) for m in ASK_WEATHER), {"role": "assistant", "content": [b.to_dict() for b in message.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": result}]}]


def _params(messages: list[dict[str, Any]]) -> list[MessageParam]:
    """Such a history as the SDK's parameter type (what it sends is these dicts, unchanged)."""
    return cast("list[MessageParam]", messages)


def _without_thinking(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assistant = messages[1]
    kept = [b for b in assistant["content"] if b["type"] != "thinking"]
    return [messages[0], {"role": "assistant", "content": kept}, messages[2]]


def test_deepseek_reasoning_round_trips_as_thinking_blocks(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="deepseek-v4", max_tokens=400, tools=[WEATHER], messages=ASK_WEATHER) as stream:
        first = stream.get_final_message()
    assert [block.type for block in first.content] == ["thinking", "tool_use"]
    assert first.content[0].signature == ""  # type: ignore[union-attr]
    follow_up = _answer_tool(first, "rain")
    answer = client.messages.create(model="deepseek-v4", max_tokens=400, tools=[WEATHER], messages=_params(follow_up))
    assert "after the tool returned: rain" in answer.content[-1].text  # type: ignore[union-attr]
    # DeepSeek refuses a tool-calling turn without its reasoning: the thinking block carried it.
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(model="deepseek-v4", max_tokens=400, tools=[WEATHER],
                               messages=_params(_without_thinking(follow_up)))
    assert "reasoning_content" in refused.value.message


def test_hidden_reasoning_sends_no_thinking(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="deepseek-hidden", max_tokens=400, messages=ASK_WEATHER)
    assert [block.type for block in message.content] == ["text"]
    with client.messages.stream(model="deepseek-hidden", max_tokens=400, tools=[WEATHER],
                                messages=ASK_WEATHER) as stream:
        assert [block.type for block in stream.get_final_message().content] == ["tool_use"]


def test_anthropic_upstream_signatures_round_trip(client: anthropic.Anthropic) -> None:
    request: dict[str, Any] = {"model": "claude", "max_tokens": 4000, "tools": [WEATHER],
                               "thinking": {"type": "enabled", "budget_tokens": 1024}}
    with client.messages.stream(**request, messages=ASK_WEATHER) as stream:
        first = stream.get_final_message()
    assert first.model == "claude-sonnet-4-5"
    assert [block.type for block in first.content] == ["thinking", "tool_use"]
    signature = first.content[0].signature  # type: ignore[union-attr]
    assert signature and ":" not in signature
    follow_up = _answer_tool(first, "snow")
    answer = client.messages.create(**request, messages=_params(follow_up))
    assert [block.type for block in answer.content] == ["thinking", "text"]
    assert "after the tool returned: snow" in answer.content[1].text
    follow_up[1]["content"][0]["signature"] = ("B" if signature[0] == "A" else "A") + signature[1:]  # tampered
    with pytest.raises(anthropic.BadRequestError, match="signature"):
        client.messages.create(**request, messages=_params(follow_up))


def test_gemini_thought_signature_rides_on_a_thinking_block(client: anthropic.Anthropic) -> None:
    first = client.messages.create(model="gemini", max_tokens=2000, tools=[WEATHER], messages=ASK_WEATHER)
    carrier = next(b for b in first.content if b.type == "thinking" and b.signature.startswith("gemini:call:"))
    assert carrier.thinking == ""
    assert first.content[first.content.index(carrier) + 1].type == "tool_use"
    follow_up = _answer_tool(first, "fog")
    answer = client.messages.create(model="gemini", max_tokens=2000, tools=[WEATHER], messages=_params(follow_up))
    assert "after the tool returned: fog" in answer.content[-1].text  # type: ignore[union-attr]
    with pytest.raises(anthropic.BadRequestError, match="thought_signature"):
        client.messages.create(model="gemini", max_tokens=2000, tools=[WEATHER],
                               messages=_params(_without_thinking(follow_up)))


def test_count_tokens(client: anthropic.Anthropic) -> None:
    counted = client.messages.count_tokens(model="gpt-4o", messages=[{"role": "user", "content": "Hello there"}])
    # schema/tokens.py: 3 for the reply's priming, 4 per message, ceil(11 characters / 4).
    assert counted.input_tokens == 3 + 4 + 3
    with_tools = client.messages.count_tokens(model="gpt-4o", tools=[WEATHER],
                                              messages=[{"role": "user", "content": "Hello there"}])
    assert with_tools.input_tokens > counted.input_tokens
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="no-such-model", messages=[{"role": "user", "content": "Hi"}])


def test_unknown_model_is_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="no-such-model", max_tokens=10, messages=ASK_WEATHER)
    error = caught.value
    assert error.request_id is not None and error.request_id.startswith("req_")
    assert error.body == {"type": "error", "request_id": error.request_id, "error": {
        "type": "not_found_error", "message": error.body["error"]["message"]}}  # type: ignore[index]
    assert "no-such-model" in error.message


def test_authentication(gateway: RunningGateway) -> None:
    with (anthropic.Anthropic(base_url=gateway.base_url, api_key="wrong", max_retries=0) as wrong,
          pytest.raises(anthropic.AuthenticationError) as caught):
        wrong.messages.create(model="gpt-4o", max_tokens=10, messages=ASK_WEATHER)
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with anthropic.Anthropic(base_url=gateway.base_url, auth_token=MASTER_KEY, max_retries=0) as bearer:
        assert bearer.messages.create(model="gpt-4o", max_tokens=10, messages=ASK_WEATHER).content


def test_bad_requests(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="max_tokens") as caught:
        client.post("/v1/messages", cast_to=Message, body={"model": "gpt-4o", "messages": ASK_WEATHER})
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError, match="web_search_20250305"):
        client.messages.create(model="gpt-4o", max_tokens=10, messages=ASK_WEATHER,
                               tools=[{"type": "web_search_20250305", "name": "web_search"}])


def test_upstream_rate_limit_keeps_status_and_retry_after(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="busy", max_tokens=10, messages=ASK_WEATHER)
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    # A stream that fails before its first event still gets the status.
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="busy", max_tokens=10, messages=ASK_WEATHER, stream=True)


def test_upstream_overload_is_529(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.OverloadedError) as caught:
        client.messages.create(model="overloaded", max_tokens=10, messages=ASK_WEATHER)
    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


@pytest.mark.parametrize(("model", "kind"), [("flaky", "api_error"), ("claude-flaky", "overloaded_error")])
def test_failure_after_the_stream_started_is_an_error_event(client: anthropic.Anthropic, model: str,
                                                            kind: str) -> None:
    seen: list[str] = []
    with (pytest.raises(anthropic.APIStatusError) as caught,
          client.messages.stream(model=model, max_tokens=200, messages=ASK_WEATHER) as stream):
        for event in stream:
            seen.append(event.type)
    assert seen[0] == "message_start" and "content_block_delta" in seen
    assert caught.value.body["error"]["type"] == kind  # type: ignore[index]


def test_unknown_paths_under_messages_answer_in_anthropic_shape(gateway: RunningGateway) -> None:
    missing = httpx.post(f"{gateway.base_url}/v1/messages/batches", json={}, timeout=5)
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    assert missing.json()["type"] == "error" and missing.headers["request-id"]
    wrong_method = httpx.get(f"{gateway.base_url}/v1/messages", timeout=5)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"


async def test_async_client(gateway: RunningGateway) -> None:
    async with anthropic.AsyncAnthropic(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0) as client:
        request: dict[str, Any] = {"model": "gpt-4o", "max_tokens": 200,
                                   "messages": [{"role": "user", "content": "Stream to me"}]}
        whole = await client.messages.create(**request)
        pieces = []
        async with client.messages.stream(**request) as stream:
            async for text in stream.text_stream:
                pieces.append(text)
            final = await stream.get_final_message()
        assert "".join(pieces) == final.content[0].text == whole.content[0].text  # type: ignore[union-attr]
        assert final.usage.output_tokens == whole.usage.output_tokens
        first = await client.messages.create(model="claude", max_tokens=400, tools=[WEATHER], messages=ASK_WEATHER)
        answer = await client.messages.create(model="claude", max_tokens=400, tools=[WEATHER],
                                              messages=_params(_answer_tool(first, "hail")))
        assert "after the tool returned: hail" in answer.content[-1].text  # type: ignore[union-attr]
        counted = await client.messages.count_tokens(**{k: v for k, v in request.items() if k != "max_tokens"})
        assert counted.input_tokens == 3 + 4 + 3  # ceil(len("Stream to me") / 4) == 3
        with pytest.raises(anthropic.NotFoundError):
            await client.messages.create(model="no-such-model", max_tokens=10, messages=ASK_WEATHER)

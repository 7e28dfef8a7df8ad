"""The ``anthropic`` provider over real sockets: against the simulator (which checks requests as
Anthropic does, thinking signatures included) and against a loopback server replaying recorded
bytes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from modelgate.catalog.facts import ModelFacts
from modelgate.providers.anthropic import AnthropicProvider
from modelgate.providers.base import UpstreamCall
from modelgate.providers.registry import create_provider
from modelgate.providers.settings import ProviderSettings
from modelgate.providers.transport import HTTPClient
from modelgate.schema.errors import UpstreamError, UpstreamUnreachable
from modelgate.schema.events import ChatResult, Event, Start, TextDelta, ToolCallDelta, fold_events
from modelgate.schema.request import (
    AnthropicPassthrough,
    ChatRequest,
    Message,
    Part,
    ReasoningPart,
    TextPart,
    Tool,
    ToolCallPart,
)
from modelgate.simulator import SimulatorThread
from modelgate.surfaces.openai_format.render import error_type

FIXTURES = Path(__file__).parents[1] / "fixtures" / "anthropic"
MODEL = "claude-sonnet-4-5"
WEATHER = Tool(name="get_weather", description="Weather for a city",
               parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
CLOCK = Tool(name="get_time", parameters={"type": "object", "properties": {"tz": {"type": "string"}}})


def claude(base_url: str, http: HTTPClient, **headers: str) -> AnthropicProvider:
    settings = ProviderSettings(name="claude", type="anthropic", base_url=base_url, api_key="sk-sim",
                                headers=headers)
    provider = create_provider(settings, http)
    assert isinstance(provider, AnthropicProvider)
    return provider


def ask(text: str, **fields: Any) -> ChatRequest:
    return ChatRequest(model="claude", messages=[Message("user", [TextPart(text)])], **fields)


async def run(provider: AnthropicProvider, request: ChatRequest, model: str = MODEL) -> list[Event]:
    return [event async for event in provider.chat(request, UpstreamCall(model=model, facts=ModelFacts()))]


def replay(result: ChatResult) -> Message:
    """The assistant turn a client sends back for ``result``, opaque state included."""
    choice = result.choices[0]
    parts: list[Part] = [ReasoningPart(text=b.text, signature=b.signature, redacted=b.redacted, origin=b.origin)
                         for b in choice.reasoning]
    if choice.text:
        parts.append(TextPart(choice.text))
    parts += [ToolCallPart(id=c.id, name=c.name, arguments=c.arguments, signature=c.signature, origin=c.origin)
              for c in choice.tool_calls]
    return Message("assistant", parts)


async def test_text_streamed_and_whole_fold_alike(sim: SimulatorThread, http: HTTPClient) -> None:
    provider = claude(sim.base_url, http)
    whole = await run(provider, ask("Hello Claude, how are you?"))
    streamed = await run(provider, ask("Hello Claude, how are you?", stream=True))
    assert isinstance(streamed[0], Start) and streamed[0].model == MODEL
    assert len([e for e in streamed if isinstance(e, TextDelta)]) > 3  # word by word, not buffered
    a, b = fold_events(whole), fold_events(streamed)
    assert a.choices[0].text.startswith("Simulated reply from claude-sonnet-4-5 to: Hello Claude, how are you.")
    assert a.choices[0].text == b.choices[0].text
    assert a.usage == b.usage and a.usage is not None and a.usage.input_tokens > 0
    assert (a.choices[0].finish_reason, a.choices[0].native_reason) == ("stop", "end_turn")


@pytest.mark.parametrize("stream", [False, True])
async def test_thinking_signature_round_trip_is_accepted(
    sim: SimulatorThread, http: HTTPClient, stream: bool,
) -> None:
    provider = claude(sim.base_url, http)
    first = ask("What is the weather in Oslo?", tools=[WEATHER], reasoning_effort="low", stream=stream)
    result = fold_events(await run(provider, first))
    [block] = result.choices[0].reasoning
    assert block.text and block.signature and block.origin == "anthropic"
    [call] = result.choices[0].tool_calls
    assert call.name == "get_weather" and json.loads(call.arguments)["city"]

    follow_up = ask("What is the weather in Oslo?", tools=[WEATHER], reasoning_effort="low", stream=stream)
    follow_up.messages += [replay(result), Message("tool", [TextPart("Sunny, 21C")], tool_call_id=call.id)]
    answer = fold_events(await run(provider, follow_up))
    assert "after the tool returned: Sunny, 21C" in answer.choices[0].text

    # The simulator checks signatures as Anthropic does: a changed one is refused.
    tampered = follow_up.messages[1].content[0]
    assert isinstance(tampered, ReasoningPart)
    tampered.signature = (tampered.signature or "") + "x"
    with pytest.raises(UpstreamError) as caught:
        await run(provider, follow_up)
    assert caught.value.status == 400 and "signature" in caught.value.message


async def test_a_tool_loop_without_thinking_blocks_is_answered(
    sim: SimulatorThread, http: HTTPClient,
) -> None:
    """The turn an OpenAI Chat client sends back has no thinking blocks; Anthropic would refuse
    it with thinking on, so it goes without."""
    provider = claude(sim.base_url, http)
    first = ask("What is the weather in Oslo?", tools=[WEATHER], reasoning_effort="low")
    result = fold_events(await run(provider, first))
    [call] = result.choices[0].tool_calls
    follow_up = ask("What is the weather in Oslo?", tools=[WEATHER], reasoning_effort="low")
    follow_up.messages += [Message("assistant", [ToolCallPart(id=call.id, name=call.name, arguments=call.arguments)]),
                           Message("tool", [TextPart("Snow")], tool_call_id=call.id)]
    answer = fold_events(await run(provider, follow_up))
    assert "after the tool returned: Snow" in answer.choices[0].text
    assert answer.choices[0].reasoning == []


async def test_tool_arguments_stream_in_fragments(sim: SimulatorThread, http: HTTPClient) -> None:
    events = await run(claude(sim.base_url, http), ask("Weather in Reykjavik?", tools=[WEATHER], stream=True))
    fragments = [e for e in events if isinstance(e, ToolCallDelta)]
    assert fragments[0].id and fragments[0].name == "get_weather" and fragments[0].index == 0
    assert len([f for f in fragments if f.arguments]) > 1
    [call] = fold_events(events).choices[0].tool_calls
    assert set(json.loads(call.arguments)) == {"city"}
    assert fold_events(events).choices[0].finish_reason == "tool_calls"


async def test_parallel_tool_calls_and_their_results(sim: SimulatorThread, http: HTTPClient) -> None:
    provider = claude(sim.base_url, http)
    request = ask("Call both in parallel please", tools=[WEATHER, CLOCK], stream=True)
    result = fold_events(await run(provider, request))
    calls = result.choices[0].tool_calls
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert len({c.id for c in calls}) == 2
    request.messages += [replay(result), *[Message("tool", [TextPart(f"result {i}")], tool_call_id=c.id)
                                           for i, c in enumerate(calls)]]
    answer = fold_events(await run(provider, request))
    assert "after the tool returned: result 0 result 1" in answer.choices[0].text
    # parallel_tool_calls false reaches Anthropic as disable_parallel_tool_use: one call only.
    single = fold_events(await run(provider, ask("Call both in parallel please", tools=[WEATHER, CLOCK],
                                                 parallel_tool_calls=False)))
    assert len(single.choices[0].tool_calls) == 1


async def test_usage_counts_cache_writes_then_reads(sim: SimulatorThread, http: HTTPClient) -> None:
    provider = claude(sim.base_url, http)
    policy = "You answer questions about the adapter test's cached policy. " * 30

    def request() -> ChatRequest:
        return ChatRequest(model="claude", stream=True, messages=[
            Message("system", [TextPart(policy, cache_control={"type": "ephemeral"})]),
            Message("user", [TextPart("First question")])])

    first = fold_events(await run(provider, request())).usage
    second = fold_events(await run(provider, request())).usage
    assert first is not None and second is not None
    assert first.cache_write_tokens > 100 and first.cached_input_tokens == 0
    assert second.cached_input_tokens == first.cache_write_tokens and second.cache_write_tokens == 0
    # OpenAI's sense: input includes what was read from or written to the cache.
    assert first.input_tokens == second.input_tokens > second.cached_input_tokens


async def test_429_keeps_retry_after(sim: SimulatorThread, http: HTTPClient) -> None:
    provider = claude(sim.base_url, http, **{"x-sim-fault": "status=429;retry_after=7"})
    with pytest.raises(UpstreamError) as caught:
        await run(provider, ask("hi"))
    error = caught.value
    assert (error.status, error.retry_after, error.retryable, error.code) == (429, 7.0, True, "rate_limit_error")
    assert error.provider == "claude"


@pytest.mark.parametrize(("status", "code"), [(500, "api_error"), (529, "overloaded_error")])
async def test_server_errors_keep_their_status(
    sim: SimulatorThread, http: HTTPClient, status: int, code: str,
) -> None:
    provider = claude(sim.base_url, http, **{"x-sim-fault": f"status={status}"})
    with pytest.raises(UpstreamError) as caught:
        await run(provider, ask("hi", stream=True))
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (status, code, True)


async def test_error_event_mid_stream_is_raised_after_the_first_events(
    sim: SimulatorThread, http: HTTPClient,
) -> None:
    provider = claude(sim.base_url, http, **{"x-sim-fault": "error_after=4"})
    seen: list[Event] = []
    with pytest.raises(UpstreamError) as caught:
        async for event in provider.chat(ask("tell me a story", stream=True), UpstreamCall(model=MODEL)):
            seen.append(event)
    assert isinstance(seen[0], Start) and any(isinstance(e, TextDelta) for e in seen)
    assert (caught.value.status, caught.value.code) == (529, "overloaded_error")
    assert "mid-stream" in caught.value.message


async def test_cut_connection_is_unreachable(sim: SimulatorThread, http: HTTPClient) -> None:
    provider = claude(sim.base_url, http, **{"x-sim-fault": "cut=3"})
    with pytest.raises(UpstreamUnreachable):
        await run(provider, ask("hi", stream=True))


async def test_wrong_key_is_a_401(sim: SimulatorThread, http: HTTPClient) -> None:
    settings = ProviderSettings(name="claude", type="anthropic", base_url=sim.base_url, api_key="wrong")
    with pytest.raises(UpstreamError) as caught:
        await run(AnthropicProvider(settings, http), ask("hi"))
    error = caught.value
    assert (error.status, error_type(error), error.retryable) == (401, "authentication_error", False)


# --- a loopback upstream replaying recorded bytes ------------------------------------------------


class Recorded:
    """An upstream that answers every request with one recorded body and keeps what it got."""

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body, self.content_type = body, content_type
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.headers), json.loads(await request.read())))
        return web.Response(body=self.body, content_type=self.content_type)


@pytest.fixture
async def recorded() -> AsyncIterator[tuple[str, Recorded]]:
    upstream = Recorded((FIXTURES / "stream_thinking_parallel_tools.sse").read_bytes(), "text/event-stream")
    app = web.Application()
    app.router.add_post("/{tail:.*}", upstream.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", upstream
    finally:
        await runner.cleanup()


async def test_headers_path_and_recorded_stream(
    recorded: tuple[str, Recorded], http: HTTPClient,
) -> None:
    base_url, upstream = recorded
    provider = claude(base_url, http, **{"Anthropic-Beta": "context-1m-2025-08-07"})
    request = ask("Weather in Paris and London?", stream=True, tools=[WEATHER],
                  passthrough=AnthropicPassthrough(headers={"anthropic-beta": "interleaved-thinking-2025-05-14"}))
    result = fold_events(await run(provider, request))
    assert [json.loads(c.arguments) for c in result.choices[0].tool_calls] == [{"city": "Paris"}, {"city": "London"}]
    [(path, headers, body)] = upstream.requests
    assert path == "/v1/messages"
    assert headers["x-api-key"] == "sk-sim" and headers["anthropic-version"] == "2023-06-01"
    assert headers["anthropic-beta"] == "context-1m-2025-08-07,interleaved-thinking-2025-05-14"
    assert body["stream"] is True and body["model"] == MODEL and body["max_tokens"] == 4096


async def test_base_url_may_name_v1(recorded: tuple[str, Recorded], http: HTTPClient) -> None:
    base_url, upstream = recorded
    await run(claude(f"{base_url}/anthropic/v1", http), ask("hi", stream=True))
    assert upstream.requests[0][0] == "/anthropic/v1/messages"

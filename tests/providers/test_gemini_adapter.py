"""The ``gemini`` provider over real sockets: against the simulator (which checks thought
signatures as Gemini does) and against a loopback server replaying recorded bytes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from modelgate.providers.base import UpstreamCall
from modelgate.providers.gemini import GeminiProvider
from modelgate.providers.registry import create_provider
from modelgate.providers.settings import ProviderSettings
from modelgate.providers.transport import HTTPClient
from modelgate.schema.errors import UpstreamError
from modelgate.schema.events import ChatResult, Event, Start, TextDelta, fold_events
from modelgate.schema.request import ChatRequest, Message, Part, ReasoningPart, TextPart, Tool, ToolCallPart
from modelgate.simulator import SimulatorThread

FIXTURES = Path(__file__).parents[1] / "fixtures" / "gemini"
THINKER = "gemini-2.5-flash"  # thinks by default on the simulator, as on Google's API
PLAIN = "gemini-2.0-flash"
WEATHER = Tool(name="get_weather", description="Weather for a city",
               parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
CLOCK = Tool(name="get_time", parameters={"type": "object", "properties": {"tz": {"type": "string"}}})


def gemini(base_url: str, http: HTTPClient, **headers: str) -> GeminiProvider:
    settings = ProviderSettings(name="gemini", type="gemini", base_url=base_url, api_key="sk-sim", headers=headers)
    provider = create_provider(settings, http)
    assert isinstance(provider, GeminiProvider)
    return provider


def ask(text: str, **fields: Any) -> ChatRequest:
    return ChatRequest(model="gemini", messages=[Message("user", [TextPart(text)])], **fields)


async def run(provider: GeminiProvider, request: ChatRequest, model: str = THINKER) -> list[Event]:
    return [event async for event in provider.chat(request, UpstreamCall(model=model))]


def replay(result: ChatResult, *, keep_opaque: bool = True) -> Message:
    choice = result.choices[0]
    parts: list[Part] = []
    if keep_opaque:
        parts += [ReasoningPart(text=b.text, signature=b.signature, origin=b.origin) for b in choice.reasoning]
    if choice.text:
        parts.append(TextPart(choice.text))
    parts += [ToolCallPart(id=c.id, name=c.name, arguments=c.arguments,
                           signature=c.signature if keep_opaque else None, origin=c.origin if keep_opaque else None)
              for c in choice.tool_calls]
    return Message("assistant", parts)


async def test_text_streamed_and_whole_fold_alike(sim: SimulatorThread, http: HTTPClient) -> None:
    provider = gemini(sim.base_url, http)
    whole = await run(provider, ask("Hello Gemini, how are you?"), PLAIN)
    streamed = await run(provider, ask("Hello Gemini, how are you?", stream=True), PLAIN)
    assert isinstance(streamed[0], Start) and streamed[0].model == PLAIN
    assert len([e for e in streamed if isinstance(e, TextDelta)]) > 3
    a, b = fold_events(whole), fold_events(streamed)
    assert a.choices[0].text.startswith("Simulated reply from gemini-2.0-flash to: Hello Gemini, how are you.")
    assert a.choices[0].text == b.choices[0].text
    assert a.usage == b.usage and a.usage is not None and a.usage.input_tokens > 0 and a.usage.output_tokens > 0
    assert (a.choices[0].finish_reason, a.choices[0].native_reason) == ("stop", "STOP")


async def test_thought_summaries_and_usage_when_asked(sim: SimulatorThread, http: HTTPClient) -> None:
    result = fold_events(await run(gemini(sim.base_url, http), ask("Why is the sky blue?", stream=True,
                                                                   reasoning_effort="medium")))
    [thought] = result.choices[0].reasoning
    assert thought.text.startswith("The user wrote about") and thought.origin == "gemini"
    assert result.usage is not None and result.usage.reasoning_tokens > 0
    assert result.usage.output_tokens > result.usage.reasoning_tokens
    # effort "none" is thinkingBudget 0: no thoughts at all.
    plain = fold_events(await run(gemini(sim.base_url, http), ask("Why is the sky blue?", reasoning_effort="none")))
    assert plain.choices[0].reasoning == [] and plain.usage is not None and plain.usage.reasoning_tokens == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_thought_signature_round_trip_is_accepted(
    sim: SimulatorThread, http: HTTPClient, stream: bool,
) -> None:
    provider = gemini(sim.base_url, http)
    request = ask("What is the weather in Lima?", tools=[WEATHER], stream=stream)
    result = fold_events(await run(provider, request))
    [call] = result.choices[0].tool_calls
    assert (call.id, call.name, call.origin) == ("call_0", "get_weather", "gemini") and call.signature
    assert result.choices[0].finish_reason == "tool_calls"
    answer_to = Message("tool", [TextPart("Cloudy, 17C")], tool_call_id=call.id)

    follow_up = ask("What is the weather in Lima?", tools=[WEATHER], stream=stream)
    follow_up.messages += [replay(result), answer_to]
    answer = fold_events(await run(provider, follow_up))
    assert "after the tool returned: Cloudy, 17C" in answer.choices[0].text

    # Without its signature (a turn that lost its origin), the simulator refuses as Gemini does.
    stripped = ask("What is the weather in Lima?", tools=[WEATHER], stream=stream)
    stripped.messages += [replay(result, keep_opaque=False), answer_to]
    with pytest.raises(UpstreamError) as caught:
        await run(provider, stripped)
    assert caught.value.status == 400 and "thought_signature" in caught.value.message
    assert caught.value.code == "INVALID_ARGUMENT"


async def test_parallel_calls_are_answered_by_name(sim: SimulatorThread, http: HTTPClient) -> None:
    provider = gemini(sim.base_url, http)
    request = ask("Call both in parallel please", tools=[WEATHER, CLOCK], stream=True)
    result = fold_events(await run(provider, request))
    calls = result.choices[0].tool_calls
    assert [(c.id, c.name) for c in calls] == [("call_0", "get_weather"), ("call_1", "get_time")]
    assert calls[0].signature and calls[1].signature is None  # Gemini signs the first call only
    request.messages += [replay(result), Message("tool", [TextPart("rainy")], tool_call_id="call_0"),
                         Message("tool", [TextPart("noon")], tool_call_id="call_1")]
    answer = fold_events(await run(provider, request))
    assert "after the tool returned: rainy noon" in answer.choices[0].text


async def test_two_candidates(sim: SimulatorThread, http: HTTPClient) -> None:
    result = fold_events(await run(gemini(sim.base_url, http), ask("Name a colour", n=2), PLAIN))
    assert [c.index for c in result.choices] == [0, 1]
    assert result.choices[0].text != result.choices[1].text


async def test_429_keeps_retry_after(sim: SimulatorThread, http: HTTPClient) -> None:
    provider = gemini(sim.base_url, http, **{"x-sim-fault": "status=429;retry_after=9"})
    with pytest.raises(UpstreamError) as caught:
        await run(provider, ask("hi"))
    error = caught.value
    assert (error.status, error.retry_after, error.retryable, error.code) == (429, 9.0, True, "RESOURCE_EXHAUSTED")


async def test_500_is_retryable(sim: SimulatorThread, http: HTTPClient) -> None:
    provider = gemini(sim.base_url, http, **{"x-sim-fault": "status=500"})
    with pytest.raises(UpstreamError) as caught:
        await run(provider, ask("hi", stream=True))
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (500, "INTERNAL", True)


async def test_error_mid_stream(sim: SimulatorThread, http: HTTPClient) -> None:
    provider = gemini(sim.base_url, http, **{"x-sim-fault": "error_after=3"})
    seen: list[Event] = []
    with pytest.raises(UpstreamError) as caught:
        async for event in provider.chat(ask("tell me a story", stream=True), UpstreamCall(model=PLAIN)):
            seen.append(event)
    assert isinstance(seen[0], Start) and len([e for e in seen if isinstance(e, TextDelta)]) == 3
    assert (caught.value.status, caught.value.code) == (503, "UNAVAILABLE")


async def test_safety_block_is_content_filter(sim: SimulatorThread, http: HTTPClient) -> None:
    provider = gemini(sim.base_url, http, **{"x-sim-fault": "safety"})
    choice = fold_events(await run(provider, ask("something", stream=True), PLAIN)).choices[0]
    assert (choice.text, choice.finish_reason, choice.native_reason) == ("", "content_filter", "SAFETY")


async def test_wrong_key_is_refused(sim: SimulatorThread, http: HTTPClient) -> None:
    settings = ProviderSettings(name="gemini", type="gemini", base_url=sim.base_url, api_key="wrong")
    with pytest.raises(UpstreamError) as caught:
        await run(GeminiProvider(settings, http), ask("hi"))
    # Google answers a bad key with 400 INVALID_ARGUMENT, not 401.
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (400, "INVALID_ARGUMENT", False)


# --- a loopback upstream replaying recorded bytes ------------------------------------------------


@pytest.fixture
async def recorded() -> AsyncIterator[tuple[str, list[web.Request]]]:
    seen: list[web.Request] = []

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        seen.append(request)
        if request.query.get("alt") == "sse":
            return web.Response(body=(FIXTURES / "stream_thoughts_text.sse").read_bytes(),
                                content_type="text/event-stream")
        return web.Response(body=(FIXTURES / "response_function_call.json").read_bytes(),
                            content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


async def test_urls_auth_and_recorded_bytes(
    recorded: tuple[str, list[web.Request]], http: HTTPClient,
) -> None:
    base_url, seen = recorded
    provider = gemini(base_url, http)
    streamed = fold_events(await run(provider, ask("Capital of France?", stream=True), "models/gemini-2.5-flash"))
    assert streamed.choices[0].text == "The capital of France is Paris."
    whole = fold_events(await run(provider, ask("Weather?"), "gemini-3-pro-preview"))
    assert whole.choices[0].tool_calls[0].id == "fc_8k2m4n6p"
    assert [r.path_qs for r in seen] == ["/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                                         "/v1beta/models/gemini-3-pro-preview:generateContent"]
    assert all(r.headers["x-goog-api-key"] == "sk-sim" for r in seen)
    await run(gemini(f"{base_url}/v1", http), ask("hi"))
    assert seen[-1].path == "/v1/models/gemini-2.5-flash:generateContent"
    assert json.loads(await seen[-1].read())["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]

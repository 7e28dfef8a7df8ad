"""The provider conformance suite: the same scenarios, run against every adapter in ``adapters.ADAPTERS``.

Each scenario builds a canonical ``ChatRequest``, calls the adapter over real sockets (a shared
HTTP client, as in the gateway) and asserts on the folded canonical result. The simulator answers
in each provider's own wire format and checks what comes back as the real API would (thinking
signatures, Gemini thought signatures, DeepSeek's reasoning_content), so a round trip that loses
opaque state fails here. The recorded-bytes layer at the end feeds each adapter real upstream
captures through a loopback server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from aiohttp import web

from modelgate.providers.base import Provider
from modelgate.providers.registry import create_provider
from modelgate.providers.transport import HTTPClient
from modelgate.schema.errors import UpstreamError, UpstreamTimeout, UpstreamUnreachable
from modelgate.schema.events import (
    ChatResult,
    Event,
    Finish,
    ReasoningDelta,
    Start,
    TextDelta,
    ToolCallDelta,
    Usage,
    fold_events,
)
from modelgate.schema.request import ChatRequest, Message, Part, ReasoningPart, TextPart, Tool, ToolCallPart
from modelgate.simulator import MESSAGE_OVERHEAD_TOKENS, SimulatorThread, build_app, count_tokens
from modelgate.simulator.state import SimState
from modelgate.simulator.tokens import canonical_json
from tests.conformance.adapters import (
    ADAPTERS,
    CUT,
    ERROR_AFTER_FRAMES,
    HANGS,
    MID_STREAM_ERROR,
    PLAIN,
    RATE_LIMITED,
    RETRY_AFTER_S,
    SLOW,
    Adapter,
    Recording,
    cases,
    recording_cases,
    simulator_config,
    status_model,
)

WEATHER = Tool(name="get_weather", description="Weather for a city",
               parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
CLOCK = Tool(name="get_time", description="The time in a time zone",
             parameters={"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]})
GREETING = "Hello there, how are you today"
QUESTION = "Why is the sky blue?"
TOOL_QUESTION = "What is the weather in Oslo?"
PARALLEL_QUESTION = "Call both tools in parallel please"
TIMEOUT_S = 10.0
# The simulator's error messages (simulator/exchange.py), which each API wraps in its own error body.
SERVER_ERROR_MESSAGES = {500: "The server had an error while processing your request (simulated).", 529: "Overloaded"}


# --- helpers ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    """The suite's own simulator, with the models of ``adapters.simulator_config``."""
    with SimulatorThread(simulator_config()) as simulator:
        yield simulator


@dataclass(frozen=True)
class Connected:
    """An adapter pointed at a server, calling it as a target of that adapter would (``Adapter.call``)."""

    adapter: Adapter
    provider: Provider

    def chat(self, request: ChatRequest, model: str, timeout: float = TIMEOUT_S) -> AsyncGenerator[Event, None]:
        return self.provider.chat(request, self.adapter.call(model, timeout))


def connect(adapter: Adapter, root: str, http: HTTPClient) -> Connected:
    return Connected(adapter, create_provider(adapter.settings(root), http))


def ask(text: str, **fields: Any) -> ChatRequest:
    return ChatRequest(model="conformance", messages=[Message("user", [TextPart(text)])], **fields)


async def collect(provider: Connected, request: ChatRequest, model: str,
                  first_byte_s: float = TIMEOUT_S) -> list[Event]:
    return [event async for event in provider.chat(request, model, first_byte_s)]


async def chat(provider: Connected, request: ChatRequest, model: str) -> tuple[list[Event], ChatResult]:
    events = await collect(provider, request, model)
    assert events and isinstance(events[0], Start), f"the first event must be Start, got {events[:1]}"
    return events, fold_events(events)


def replay(result: ChatResult) -> Message:
    """The assistant turn a client sends back for ``result``, with all its opaque state."""
    choice = result.choices[0]
    parts: list[Part] = [ReasoningPart(text=b.text, signature=b.signature, redacted=b.redacted, origin=b.origin,
                                       id=b.id) for b in choice.reasoning]
    if choice.text:
        parts.append(TextPart(choice.text))
    parts += [ToolCallPart(id=c.id, name=c.name, arguments=c.arguments, signature=c.signature, origin=c.origin)
              for c in choice.tool_calls]
    return Message("assistant", parts)


def same_answer(result: ChatResult) -> tuple[Any, ...]:
    """What a streamed and a whole response must agree on: everything but the ids, which are fresh per
    response, and the model, which ``test_start_names_the_model_that_answered`` checks on its own."""
    choices = [replace(c, tool_calls=[replace(t, id="") for t in c.tool_calls],
                       reasoning=[replace(b, id=None) for b in c.reasoning]) for c in result.choices]
    return choices, result.usage


def reply_to(text: str, model: str) -> str:
    """The start of the simulator's documented reply (replies.py): the prompt's first words, unpunctuated."""
    return f"Simulated reply from {model} to: {text.rstrip('.?!')}."


async def upstream_error(call: Awaitable[Any]) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        await call
    return caught.value


# --- plain text, usage -----------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", cases("text"))
async def test_text_is_deterministic_and_streams_fold_alike(
    adapter: Adapter, sim: SimulatorThread, http: HTTPClient,
) -> None:
    provider = connect(adapter, sim.base_url, http)
    _, whole = await chat(provider, ask(GREETING), PLAIN)
    _, again = await chat(provider, ask(GREETING), PLAIN)
    streamed_events, streamed = await chat(provider, ask(GREETING, stream=True), PLAIN)

    text = whole.choices[0].text
    assert text.startswith(reply_to(GREETING, PLAIN)), text
    assert again.choices[0].text == text
    assert same_answer(streamed) == same_answer(whole)
    assert whole.choices[0].finish_reason == "stop"
    assert len(whole.choices) == 1 and not whole.choices[0].reasoning and not whole.choices[0].tool_calls
    # Not buffered: the simulator streams one word per frame, and so must the adapter.
    assert len([e for e in streamed_events if isinstance(e, TextDelta)]) > 3


@pytest.mark.parametrize("adapter", cases("start"))
async def test_start_names_the_model_that_answered(
    adapter: Adapter, sim: SimulatorThread, http: HTTPClient,
) -> None:
    provider = connect(adapter, sim.base_url, http)
    for stream in (False, True):
        start = (await collect(provider, ask(GREETING, stream=stream), PLAIN))[0]
        assert isinstance(start, Start)
        assert (start.model, bool(start.response_id)) == (PLAIN, True), f"stream={stream}: {start}"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("adapter", cases("usage"))
async def test_usage_follows_the_simulator_estimator(
    adapter: Adapter, stream: bool, sim: SimulatorThread, http: HTTPClient,
) -> None:
    _, result = await chat(connect(adapter, sim.base_url, http), ask(GREETING, stream=stream), PLAIN)
    usage = result.usage
    assert usage is not None, "every adapter reports usage (streams ask for it)"
    # simulator/tokens.py: a prompt costs 3 per message plus its text's tokens; the output its text's.
    assert usage.input_tokens == MESSAGE_OVERHEAD_TOKENS + count_tokens(GREETING)
    assert usage.output_tokens == count_tokens(result.choices[0].text) > 0
    assert (usage.cached_input_tokens, usage.cache_write_tokens, usage.reasoning_tokens) == (0, 0, 0)


# --- tools ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", cases("tool_call"))
async def test_tool_call_streamed_and_whole_fold_alike(
    adapter: Adapter, sim: SimulatorThread, http: HTTPClient,
) -> None:
    provider = connect(adapter, sim.base_url, http)
    _, whole = await chat(provider, ask(TOOL_QUESTION, tools=[WEATHER]), PLAIN)
    _, streamed = await chat(provider, ask(TOOL_QUESTION, tools=[WEATHER], stream=True), PLAIN)
    for result in (whole, streamed):
        choice = result.choices[0]
        [call] = choice.tool_calls
        assert call.id and call.name == "get_weather"
        arguments = json.loads(call.arguments)
        assert isinstance(arguments, dict) and isinstance(arguments["city"], str)
        assert choice.finish_reason == "tool_calls" and choice.text == ""
        assert call.origin == adapter.origin
    assert same_answer(streamed) == same_answer(whole)
    assert whole.usage is not None
    call = whole.choices[0].tool_calls[0]
    # The output of a tool call costs its name and JSON arguments (simulator/tokens.py).
    assert whole.usage.output_tokens == count_tokens(f"{call.name} {canonical_json(json.loads(call.arguments))}")


@pytest.mark.parametrize("adapter", cases("streamed_tool_arguments"))
async def test_streamed_tool_arguments_are_assembled_from_fragments(
    adapter: Adapter, sim: SimulatorThread, http: HTTPClient,
) -> None:
    events, result = await chat(connect(adapter, sim.base_url, http),
                                ask(TOOL_QUESTION, tools=[WEATHER], stream=True), PLAIN)
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas and {d.index for d in deltas} == {0}
    assert deltas[0].id and deltas[0].name == "get_weather"
    assert all(d.id is None or d.id == deltas[0].id for d in deltas)
    pieces = [d.arguments for d in deltas if d.arguments]
    if adapter.fragments_tool_arguments:
        assert len(pieces) > 1, f"arguments arrived in one piece: {pieces}"
    else:
        assert len(deltas) == 1  # the wire sends the call whole (see Adapter.fragments_tool_arguments)
    [call] = result.choices[0].tool_calls
    assert call.arguments == "".join(pieces)
    assert set(json.loads(call.arguments)) == {"city"}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("adapter", cases("parallel_tools"))
async def test_parallel_tool_calls_and_their_results(
    adapter: Adapter, stream: bool, sim: SimulatorThread, http: HTTPClient,
) -> None:
    provider = connect(adapter, sim.base_url, http)
    request = ask(PARALLEL_QUESTION, tools=[WEATHER, CLOCK], stream=stream)
    events, result = await chat(provider, request, PLAIN)
    calls = result.choices[0].tool_calls
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert all(c.id for c in calls) and len({c.id for c in calls}) == 2
    assert {e.index for e in events if isinstance(e, ToolCallDelta)} == {0, 1}
    assert [set(json.loads(c.arguments)) for c in calls] == [{"city"}, {"tz"}]
    assert result.choices[0].finish_reason == "tool_calls"

    # Each result goes back under its call's id; the simulator answers with both, in order.
    request.messages += [replay(result), *[Message("tool", [TextPart(f"result {i}")], tool_call_id=c.id)
                                           for i, c in enumerate(calls)]]
    _, answer = await chat(provider, request, PLAIN)
    assert "after the tool returned: result 0 result 1" in answer.choices[0].text
    assert answer.choices[0].finish_reason == "stop" and not answer.choices[0].tool_calls


# --- reasoning -----------------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", cases("reasoning"))
async def test_reasoning_with_its_origin_and_usage(
    adapter: Adapter, sim: SimulatorThread, http: HTTPClient,
) -> None:
    provider = connect(adapter, sim.base_url, http)
    _, whole = await chat(provider, ask(QUESTION, reasoning_effort="low"), adapter.reasoning_model)
    events, streamed = await chat(provider, ask(QUESTION, reasoning_effort="low", stream=True),
                                  adapter.reasoning_model)
    choice = whole.choices[0]
    # replies.py: "The user wrote about <first words>. I should answer briefly and deterministically."
    assert choice.reasoning_text == (
        "The user wrote about Why is the sky blue. I should answer briefly and deterministically.")
    assert choice.text.startswith(reply_to(QUESTION, adapter.reasoning_model))
    assert all(block.origin == adapter.origin for block in choice.reasoning)
    if adapter.opaque_state == "thinking_signature":
        assert choice.reasoning and all(block.signature for block in choice.reasoning)
    if adapter.opaque_state == "encrypted_content":  # the item's encrypted content, and its rs_ id
        assert choice.reasoning and all(block.signature and block.id for block in choice.reasoning)
    assert same_answer(streamed) == same_answer(whole)
    assert len([e for e in events if isinstance(e, ReasoningDelta) and e.text]) > 3  # streamed as it comes

    usage = whole.usage
    assert usage is not None
    thought = count_tokens(choice.reasoning_text)
    assert usage.output_tokens == count_tokens(choice.text) + thought
    assert usage.reasoning_tokens == (thought if adapter.reports_reasoning_tokens else 0)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("adapter", cases("multi_turn"))
async def test_multi_turn_round_trip_with_reasoning_and_tools(
    adapter: Adapter, stream: bool, sim: SimulatorThread, http: HTTPClient,
) -> None:
    provider = connect(adapter, sim.base_url, http)
    request = ask(TOOL_QUESTION, tools=[WEATHER], reasoning_effort="low", stream=stream)
    _, first = await chat(provider, request, adapter.reasoning_model)
    choice = first.choices[0]
    assert choice.reasoning_text.startswith("The user wrote about What is the weather in Oslo")
    [call] = choice.tool_calls
    assert call.name == "get_weather" and call.origin == adapter.origin
    if adapter.opaque_state in ("thinking_signature", "encrypted_content"):
        assert all(block.signature for block in choice.reasoning)
    if adapter.opaque_state == "thought_signature":
        assert call.signature

    request.messages += [replay(first), Message("tool", [TextPart("Sunny, 21C")], tool_call_id=call.id)]
    _, answer = await chat(provider, request, adapter.reasoning_model)
    assert "after the tool returned: Sunny, 21C" in answer.choices[0].text
    assert answer.choices[0].reasoning_text.startswith("The tool returned Sunny, 21C")


def lose_opaque_state(message: Message, adapter: Adapter) -> Message:
    """``message`` as a client that mangled its opaque state would send it back."""
    parts: list[Part] = []
    for part in message.content:
        if isinstance(part, ReasoningPart) and adapter.opaque_state == "reasoning_echo":
            continue
        if isinstance(part, ReasoningPart) and adapter.opaque_state in ("thinking_signature", "encrypted_content"):
            # A thinking block without its signature is dropped by the adapter (and thinking turned off
            # for the loop), so the check that bites is a signature that does not match.
            part = replace(part, signature=(part.signature or "") + "x")
        if isinstance(part, ToolCallPart) and adapter.opaque_state == "thought_signature":
            part = replace(part, signature=None)
        parts.append(part)
    return replace(message, content=parts)


@pytest.mark.parametrize("adapter", cases("lost_opaque_state", tuple(a for a in ADAPTERS if a.opaque_state != "none")))
async def test_a_round_trip_that_loses_opaque_state_is_refused(
    adapter: Adapter, sim: SimulatorThread, http: HTTPClient,
) -> None:
    """The control for the multi-turn scenario: the simulator really checks what comes back."""
    provider = connect(adapter, sim.base_url, http)
    request = ask(TOOL_QUESTION, tools=[WEATHER], reasoning_effort="low")
    _, first = await chat(provider, request, adapter.reasoning_model)
    [call] = first.choices[0].tool_calls
    request.messages += [lose_opaque_state(replay(first), adapter),
                         Message("tool", [TextPart("Sunny, 21C")], tool_call_id=call.id)]
    error = await upstream_error(collect(provider, request, adapter.reasoning_model))
    assert error.status == 400 and not error.retryable
    assert error.provider == adapter.id


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("adapter", cases("rate_limited"))
async def test_429_keeps_retry_after(
    adapter: Adapter, stream: bool, sim: SimulatorThread, http: HTTPClient,
) -> None:
    provider = connect(adapter, sim.base_url, http)
    error = await upstream_error(collect(provider, ask(GREETING, stream=stream), RATE_LIMITED))
    assert (error.status, error.retry_after, error.retryable) == (429, float(RETRY_AFTER_S), True)
    assert error.provider == adapter.id
    assert "Rate limit reached (simulated)." in error.message  # the upstream's own words, from its error body


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("status", [500, 529])
@pytest.mark.parametrize("adapter", cases("server_error"))
async def test_server_errors_keep_their_status_and_are_retryable(
    adapter: Adapter, status: int, stream: bool, sim: SimulatorThread, http: HTTPClient,
) -> None:
    provider = connect(adapter, sim.base_url, http)
    error = await upstream_error(collect(provider, ask(GREETING, stream=stream), status_model(status)))
    assert (error.status, error.retryable, error.provider) == (status, True, adapter.id)
    assert error.retry_after is None
    assert SERVER_ERROR_MESSAGES[status] in error.message  # read from the upstream's error body


@pytest.mark.parametrize("adapter", cases("overloaded"))
async def test_overloaded_is_retryable(adapter: Adapter, sim: SimulatorThread, http: HTTPClient) -> None:
    provider = connect(adapter, sim.base_url, http)
    error = await upstream_error(collect(provider, ask(GREETING, stream=True), status_model(adapter.overloaded_status)))
    assert (error.status, error.retryable) == (adapter.overloaded_status, True)


@pytest.mark.parametrize("adapter", cases("mid_stream_error"))
async def test_error_in_the_middle_of_a_stream_is_raised_never_a_clean_finish(
    adapter: Adapter, sim: SimulatorThread, http: HTTPClient,
) -> None:
    provider = connect(adapter, sim.base_url, http)
    seen: list[Event] = []
    with pytest.raises(UpstreamError) as caught:
        async for event in provider.chat(ask(GREETING, stream=True), MID_STREAM_ERROR):
            seen.append(event)
    assert isinstance(seen[0], Start)
    assert any(isinstance(e, TextDelta) for e in seen), f"{ERROR_AFTER_FRAMES} frames carry some text: {seen}"
    assert not any(isinstance(e, (Finish, Usage)) for e in seen)
    error = caught.value
    assert (error.status, error.retryable, error.provider) == (adapter.mid_stream_status, True, adapter.id)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("adapter", cases("connection_cut"))
async def test_a_cut_connection_is_unreachable_never_a_clean_finish(
    adapter: Adapter, stream: bool, sim: SimulatorThread, http: HTTPClient,
) -> None:
    provider = connect(adapter, sim.base_url, http)
    seen: list[Event] = []
    with pytest.raises(UpstreamUnreachable) as caught:
        async for event in provider.chat(ask(GREETING, stream=stream), CUT):
            seen.append(event)
    assert not any(isinstance(e, (Finish, Usage)) for e in seen)
    if stream:
        assert isinstance(seen[0], Start)
    assert (caught.value.status, caught.value.retryable, caught.value.provider) == (502, True, adapter.id)


@pytest.mark.parametrize("adapter", cases("first_byte_timeout"))
async def test_no_first_byte_in_time_is_a_timeout(
    adapter: Adapter, sim: SimulatorThread, http: HTTPClient,
) -> None:
    provider = connect(adapter, sim.base_url, http)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as caught:
        await collect(provider, ask(GREETING, stream=True), HANGS, first_byte_s=0.2)
    # The 0.2 s wait for a first byte ended it, long before the upstream's 30 s of silence would.
    assert time.monotonic() - started < 15
    assert (caught.value.status, caught.value.retryable, caught.value.provider) == (504, True, adapter.id)


# --- early client disconnect ---------------------------------------------------------------------


@dataclass
class HandlerEnd:
    path: str
    disconnected: bool  # ended because its client went away, not by finishing its reply


class WatchedSimulator:
    """The simulator's own app (``build_app``) with a middleware noting how each handler ended.

    The simulator keeps no count of abandoned streams, so this watches from the server's side: its
    runner cancels a handler whose client closed the connection (``handler_cancellation``, as
    ``Simulator`` runs it), or the next write fails. Either is the simulator seeing the connection go.
    """

    def __init__(self) -> None:
        self.ends: list[HandlerEnd] = []
        self.ended = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    @web.middleware
    async def _watch(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            response = await handler(request)
        except (asyncio.CancelledError, ConnectionResetError):
            self.ends.append(HandlerEnd(request.path, disconnected=True))
            self.ended.set()
            raise
        self.ends.append(HandlerEnd(request.path, disconnected=False))
        self.ended.set()
        return response

    async def start(self) -> None:
        app = build_app(SimState(simulator_config()))
        app.middlewares.append(self._watch)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def watched() -> AsyncIterator[WatchedSimulator]:
    simulator = WatchedSimulator()
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.mark.parametrize("adapter", cases("early_disconnect"))
async def test_early_client_disconnect_closes_the_upstream_stream(
    adapter: Adapter, watched: WatchedSimulator, http: HTTPClient,
) -> None:
    provider = connect(adapter, watched.base_url, http)
    # SLOW streams a word every 500 ms: its ~20-word reply takes about 10 s. The handler's end says
    # why it ended (its client went away, or the reply was done), so no clock is read.
    stream = provider.chat(ask(f"{GREETING} and tell me a long story please", stream=True), SLOW)
    assert isinstance(stream, AsyncGenerator)  # the gateway closes it with aclose() (routing, surfaces)
    first = await anext(stream)
    second = await anext(stream)
    assert isinstance(first, Start) and not isinstance(second, Finish)
    await stream.aclose()
    await asyncio.wait_for(watched.ended.wait(), 30)  # a finished reply ends it too, in ~10 s
    [end] = watched.ends
    assert end.disconnected, "the simulator finished the whole reply: the adapter kept the stream open"


# --- recorded upstream bytes ---------------------------------------------------------------------


class Replay:
    """A loopback upstream answering every request with one recording's bytes, as recorded."""

    def __init__(self) -> None:
        self.recording: Recording | None = None
        self.paths: list[str] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def _answer(self, request: web.Request) -> web.Response:
        await request.read()
        self.paths.append(request.path_qs)
        recording = self.recording
        assert recording is not None
        return web.Response(status=recording.status, body=recording.body, content_type=recording.content_type,
                            headers=dict(recording.headers))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def replay_server() -> AsyncIterator[Replay]:
    server = Replay()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def replayed(adapter: Adapter, recording: Recording, server: Replay,
                   http: HTTPClient) -> list[Event]:
    server.recording = recording
    provider = connect(adapter, server.base_url, http)
    return await collect(provider, ask(TOOL_QUESTION, tools=[WEATHER, CLOCK], stream=recording.stream), "recorded")


def check_recorded_result(adapter: Adapter, recording: Recording, events: list[Event]) -> ChatResult:
    """The shape every successful recording folds to, and the values the recording states."""
    assert isinstance(events[0], Start)
    result = fold_events(events)
    [choice] = result.choices
    if recording.text is not None:
        assert choice.text == recording.text
    if recording.reasoning is not None:
        assert choice.reasoning_text == recording.reasoning
    if recording.finish is not None:
        assert choice.finish_reason == recording.finish
    if recording.usage is not None:
        assert result.usage is not None
        assert (result.usage.input_tokens, result.usage.output_tokens) == recording.usage
    assert all(block.origin == adapter.origin for block in choice.reasoning)
    if recording.signed:
        signatures = [b.signature or b.redacted for b in choice.reasoning] + [c.signature for c in choice.tool_calls]
        assert any(signatures), "the recording's opaque reasoning state was lost"
    return result


@pytest.mark.parametrize(("adapter", "recording"), recording_cases("recorded_text", "text"))
async def test_recorded_text(adapter: Adapter, recording: Recording, replay_server: Replay,
                             http: HTTPClient) -> None:
    result = check_recorded_result(adapter, recording, await replayed(adapter, recording, replay_server, http))
    assert result.choices[0].text and not result.choices[0].tool_calls


@pytest.mark.parametrize(("adapter", "recording"), recording_cases("recorded_reasoning", "reasoning"))
async def test_recorded_reasoning(adapter: Adapter, recording: Recording, replay_server: Replay,
                                  http: HTTPClient) -> None:
    result = check_recorded_result(adapter, recording, await replayed(adapter, recording, replay_server, http))
    assert result.choices[0].reasoning and result.choices[0].text


@pytest.mark.parametrize(("adapter", "recording"), recording_cases("recorded_tool_calls", "tool_calls"))
async def test_recorded_tool_calls(adapter: Adapter, recording: Recording, replay_server: Replay,
                                   http: HTTPClient) -> None:
    events = await replayed(adapter, recording, replay_server, http)
    result = check_recorded_result(adapter, recording, events)
    calls = result.choices[0].tool_calls
    assert [(c.name, json.loads(c.arguments)) for c in calls] == list(recording.calls)
    assert all(c.id for c in calls) and len({c.id for c in calls}) == len(calls)
    assert all(c.origin == adapter.origin for c in calls)
    assert {e.index for e in events if isinstance(e, ToolCallDelta)} == set(range(len(calls)))


@pytest.mark.parametrize(("adapter", "recording"), recording_cases("recorded_mid_stream_error", "mid_stream_error"))
async def test_recorded_mid_stream_error(adapter: Adapter, recording: Recording, replay_server: Replay,
                                         http: HTTPClient) -> None:
    replay_server.recording = recording
    provider = connect(adapter, replay_server.base_url, http)
    seen: list[Event] = []
    with pytest.raises(UpstreamError) as caught:
        async for event in provider.chat(ask(GREETING, stream=True), "recorded"):
            seen.append(event)
    assert isinstance(seen[0], Start) and not any(isinstance(e, Finish) for e in seen)
    assert fold_events(seen).choices[0].text == recording.text
    assert (caught.value.status, caught.value.retryable) == (recording.error_status, True)


@pytest.mark.parametrize(("adapter", "recording"), recording_cases("recorded_status_error", "status_error"))
async def test_recorded_status_error(adapter: Adapter, recording: Recording, replay_server: Replay,
                                     http: HTTPClient) -> None:
    error = await upstream_error(replayed(adapter, recording, replay_server, http))
    assert (error.status, error.retry_after, error.provider) == (recording.error_status, recording.retry_after,
                                                                 adapter.id)
    assert error.retryable  # every status recorded here (429, 529) invites a retry


@pytest.mark.parametrize(("adapter", "recording"),
                         recording_cases("recorded_start", "text", "reasoning", "tool_calls"))
async def test_recorded_start_names_the_model(adapter: Adapter, recording: Recording, replay_server: Replay,
                                             http: HTTPClient) -> None:
    start = (await replayed(adapter, recording, replay_server, http))[0]
    assert isinstance(start, Start)
    assert start.model == recording.model and start.response_id


def test_every_adapter_type_in_the_registry_is_covered() -> None:
    """A provider type added to the registry without a conformance entry fails here."""
    from modelgate.providers.registry import PROVIDER_TYPES

    # Types whose upstream is a process the gateway runs itself, not an API that recordings replay:
    # their conformance runs against the real engine, in the module named.
    own_engines = {"local": "tests/engines/test_local_gateway.py"}
    assert set(PROVIDER_TYPES) - set(own_engines) <= {adapter.type for adapter in ADAPTERS}
    assert len({adapter.id for adapter in ADAPTERS}) == len(ADAPTERS)

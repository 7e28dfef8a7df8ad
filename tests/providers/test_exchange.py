"""The adapters' exchange with their upstream, in process: a ``MockTransport`` answers as the
upstream would (or fails as the connection would), and the canonical errors and events come out."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelgate.providers.base import MAX_BODY_BYTES, Provider, UpstreamCall
from modelgate.providers.mock_transport import MockHandler, MockResponse, MockTransport
from modelgate.providers.registry import create_provider
from modelgate.providers.settings import ProviderSettings
from modelgate.providers.transport import (
    ConnectError,
    DeadlineExceeded,
    ProtocolError,
    ReadTimeout,
    Timeout,
    UpstreamRequest,
)
from modelgate.schema.errors import (
    InvalidRequest,
    UpstreamError,
    UpstreamMalformed,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from modelgate.schema.events import Embeddings, Event, Start, TextDelta, Usage, fold_events
from modelgate.schema.request import (
    AnthropicPassthrough,
    ChatRequest,
    EmbeddingRequest,
    Message,
    OpenAIPassthrough,
    TextPart,
)

FIXTURES = Path(__file__).parents[1] / "fixtures"
BASE_URLS = {"openai": "https://api.example.com/v1", "anthropic": "https://api.anthropic.example",
             "gemini": "https://gemini.example"}
KINDS = list(BASE_URLS)
Handler = MockHandler


def provider(kind: str, handler: Handler) -> tuple[Provider, MockTransport]:
    transport = MockTransport(handler)
    settings = ProviderSettings(name=kind, type=kind, base_url=BASE_URLS[kind], api_key="sk-test",
                                connect_timeout=3.0)
    return create_provider(settings, transport), transport


def ask(stream: bool = False) -> ChatRequest:
    return ChatRequest(model="m", messages=[Message("user", [TextPart("hi")])], stream=stream)


async def run(adapter: Provider, request: ChatRequest, first_byte_s: float = 30.0) -> list[Event]:
    return [event async for event in adapter.chat(request, UpstreamCall(model="up-model", timeout=first_byte_s))]


def answer(response: MockResponse) -> Handler:
    return lambda request: response


def sse(*payloads: Any) -> list[bytes]:
    return [b"data: " + orjson.dumps(payload) + b"\n\n" for payload in payloads]


# What each upstream answers to "hi", whole and streamed in parts.
WHOLE: dict[str, Any] = {
    "openai": {"id": "c1", "object": "chat.completion", "model": "up-model", "created": 1,
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                            "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 3, "completion_tokens": 1}},
    "anthropic": {"id": "msg_1", "type": "message", "role": "assistant", "model": "up-model",
                  "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn",
                  "usage": {"input_tokens": 3, "output_tokens": 1}},
    "gemini": {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hello"}]}, "finishReason": "STOP",
                               "index": 0}],
               "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1}, "modelVersion": "up-model",
               "responseId": "r1"},
}


def stream_parts(kind: str) -> list[bytes]:
    """The upstream's stream for "Hello", complete, in the parts it arrives in."""
    if kind == "openai":
        chunk = {"id": "c1", "object": "chat.completion.chunk", "model": "up-model", "created": 1}
        return [*sse({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]},
                     {**chunk, "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]}),
                b"data: [DONE]\n\n"]
    if kind == "anthropic":
        return sse({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                         "model": "up-model", "content": [],
                                                         "usage": {"input_tokens": 3, "output_tokens": 1}}},
                   {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                   {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
                   {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
                   {"type": "content_block_stop", "index": 0},
                   {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}},
                   {"type": "message_stop"})
    part = {"modelVersion": "up-model", "responseId": "r1"}
    return sse({**part, "candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}]},
               {**part, "candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]},
                                        "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}})


# --- the request each adapter sends ------------------------------------------------------------


@pytest.mark.parametrize(("kind", "stream", "url", "auth"), [
    ("openai", False, "https://api.example.com/v1/chat/completions", ("authorization", "Bearer sk-test")),
    ("openai", True, "https://api.example.com/v1/chat/completions", ("authorization", "Bearer sk-test")),
    ("anthropic", False, "https://api.anthropic.example/v1/messages", ("x-api-key", "sk-test")),
    ("anthropic", True, "https://api.anthropic.example/v1/messages", ("x-api-key", "sk-test")),
    ("gemini", False, "https://gemini.example/v1beta/models/up-model:generateContent",
     ("x-goog-api-key", "sk-test")),
    ("gemini", True, "https://gemini.example/v1beta/models/up-model:streamGenerateContent?alt=sse",
     ("x-goog-api-key", "sk-test")),
])
async def test_the_request_and_its_answer(kind: str, stream: bool, url: str, auth: tuple[str, str]) -> None:
    body: Any = stream_parts(kind) if stream else orjson.dumps(WHOLE[kind])
    adapter, transport = provider(kind, answer(MockResponse(200, body=body)))
    result = fold_events(await run(adapter, ask(stream), first_byte_s=12.0))
    assert result.choices[0].text == "Hello" and result.choices[0].finish_reason == "stop"
    [sent] = transport.requests
    assert (sent.method, sent.url, sent.headers[auth[0]]) == ("POST", url, auth[1])
    assert sent.timeout == Timeout(connect=3.0, read=12.0, total=600.0)
    assert sent.headers["content-type"] == "application/json" and isinstance(orjson.loads(sent.body), dict)


@pytest.mark.parametrize("kind", KINDS)
async def test_the_configured_proxy_goes_with_every_request(kind: str) -> None:
    transport = MockTransport(answer(MockResponse(json=WHOLE[kind])))
    settings = ProviderSettings(name=kind, type=kind, base_url=BASE_URLS[kind], proxy="http://proxy.internal:3128")
    await run(create_provider(settings, transport), ask())
    assert [request.proxy for request in transport.requests] == ["http://proxy.internal:3128"]


@pytest.mark.parametrize("kind", KINDS)
async def test_per_request_headers_go_only_to_an_upstream_of_their_format(kind: str) -> None:
    beta = AnthropicPassthrough(headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
    tagged = OpenAIPassthrough(headers={"x-tag": "t1"})
    sent: dict[str, dict[str, str]] = {}
    for name, passthrough in (("anthropic", beta), ("openai", tagged)):
        adapter, transport = provider(kind, answer(MockResponse(json=WHOLE[kind])))
        request = ask()
        request.passthrough = passthrough
        await run(adapter, request)
        sent[name] = dict(transport.requests[0].headers)
    assert ("anthropic-beta" in sent["anthropic"]) is (kind == "anthropic")
    assert ("x-tag" in sent["openai"]) is (kind == "openai")


async def test_embeddings_are_decoded_from_the_whole_body() -> None:
    payload = {"model": "up-model", "data": [{"index": 1, "embedding": [0.5]}, {"index": 0, "embedding": [0.25]}],
               "usage": {"prompt_tokens": 4}}
    adapter, transport = provider("openai", answer(MockResponse(json=payload)))
    request = EmbeddingRequest(model="e", input=["a", "b"], passthrough=OpenAIPassthrough(fields={"extra": 1}))
    events = [event async for event in adapter.embed(request, UpstreamCall(model="up-model"))]
    assert isinstance(events[0], Start) and events[0].model == "up-model"
    assert isinstance(events[1], Embeddings) and events[1].vectors == [[0.25], [0.5]]
    assert transport.requests[0].url == "https://api.example.com/v1/embeddings"
    assert orjson.loads(transport.requests[0].body) == {"model": "up-model", "input": ["a", "b"],
                                                        "encoding_format": "float", "extra": 1}


async def test_embeddings_of_an_adapter_without_them_are_refused() -> None:
    adapter, transport = provider("anthropic", answer(MockResponse()))
    with pytest.raises(InvalidRequest, match="does not serve embeddings"):
        adapter.embed(EmbeddingRequest(model="e", input=["a"]), UpstreamCall(model="up-model"))
    assert transport.requests == []


# --- error answers ---------------------------------------------------------------------------------


ERROR_BODIES: dict[str, tuple[dict[str, Any], str, str]] = {
    # kind: (body, the message in it, the code the error keeps)
    "openai": ({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
               "Rate limit reached", "rate_limit_exceeded"),
    "anthropic": (orjson.loads((FIXTURES / "anthropic" / "error_overloaded.json").read_bytes()), "Overloaded",
                  "overloaded_error"),
    "gemini": (orjson.loads((FIXTURES / "gemini" / "error_quota.json").read_bytes()),
               "You exceeded your current quota", "RESOURCE_EXHAUSTED"),
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("kind", KINDS)
async def test_an_error_status_keeps_its_message_code_and_retry_after(kind: str, stream: bool) -> None:
    body, message, code = ERROR_BODIES[kind]
    response = MockResponse(429, {"Retry-After": "7"}, json=body)
    adapter, _ = provider(kind, answer(response))
    with pytest.raises(UpstreamError) as caught:
        await run(adapter, ask(stream))
    error = caught.value
    assert (type(error), error.status, error.code, error.retry_after, error.provider) == (
        UpstreamError, 429, code, 7.0, kind)
    assert error.message.startswith(f"provider '{kind}' answered 429: {message}")
    assert error.retryable and response.finished and response.closed


@pytest.mark.parametrize("kind", KINDS)
async def test_retry_after_as_a_date_and_in_milliseconds(kind: str) -> None:
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    adapter, _ = provider(kind, answer(MockResponse(503, {"retry-after": later}, b"busy")))
    with pytest.raises(UpstreamError) as caught:
        await run(adapter, ask())
    assert caught.value.retry_after is not None and 25 < caught.value.retry_after <= 30
    adapter, _ = provider(kind, answer(MockResponse(503, {"retry-after-ms": "1500", "retry-after": "9"}, b"")))
    with pytest.raises(UpstreamError) as caught:
        await run(adapter, ask())
    assert caught.value.retry_after == 1.5


@pytest.mark.parametrize("kind", KINDS)
async def test_an_error_body_that_is_not_json_is_quoted_as_text(kind: str) -> None:
    adapter, _ = provider(kind, answer(MockResponse(502, {"content-type": "text/html"}, b"<h1>Bad gateway</h1>")))
    with pytest.raises(UpstreamError) as caught:
        await run(adapter, ask())
    assert (caught.value.status, caught.value.retry_after) == (502, None)
    assert "<h1>Bad gateway</h1>" in caught.value.message


async def test_openai_error_keeps_its_type_and_param() -> None:
    body = {"error": {"message": "Unknown parameter", "type": "invalid_request_error", "param": "foo",
                      "code": "unknown_parameter"}}
    adapter, _ = provider("openai", answer(MockResponse(400, json=body)))
    with pytest.raises(UpstreamError) as caught:
        await run(adapter, ask())
    error = caught.value
    assert (error.status, error.upstream_type, error.param, error.code, error.retryable) == (
        400, "invalid_request_error", "foo", "unknown_parameter", False)


@pytest.mark.parametrize("kind", KINDS)
async def test_an_endless_error_body_is_read_to_its_bound_and_the_connection_dropped(kind: str) -> None:
    def endless() -> Iterator[bytes]:
        yield b"upstream says no: "
        while True:
            yield b"x" * 65536

    response = MockResponse(500, {"content-type": "text/plain"}, endless())
    adapter, _ = provider(kind, answer(response))
    with pytest.raises(UpstreamError) as caught:
        await run(adapter, ask())
    assert caught.value.status == 500 and "upstream says no" in caught.value.message
    assert not response.finished and response.closed


@pytest.mark.parametrize("kind", KINDS)
async def test_a_whole_answer_past_the_size_bound_is_malformed(kind: str) -> None:
    chunk = b" " * (1 << 20)  # the same megabyte again and again: the bound, not memory, ends it
    parts = [b'{"id": "c1", "pad": "', *[chunk] * (MAX_BODY_BYTES >> 20), b'"}']
    response = MockResponse(200, {"content-type": "application/json"}, parts)
    adapter, _ = provider(kind, answer(response))
    with pytest.raises(UpstreamMalformed) as caught:
        await run(adapter, ask())
    assert f"more than {MAX_BODY_BYTES} bytes" in caught.value.message
    assert not response.finished and response.closed


# --- malformed answers -----------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "body"), [
    ("openai", b"<html>not json</html>"),
    ("anthropic", b"<html>not json</html>"),
    ("anthropic", b"[1, 2]"),
    ("gemini", b"<html>not json</html>"),
    ("gemini", b'"a string"'),
])
async def test_a_whole_body_that_cannot_be_read_is_malformed(kind: str, body: bytes) -> None:
    adapter, _ = provider(kind, answer(MockResponse(200, body=body)))
    with pytest.raises(UpstreamMalformed) as caught:
        await run(adapter, ask())
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (502, "upstream_malformed", True)
    assert body.decode()[:20] in caught.value.message


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_event_that_is_not_json_is_malformed(kind: str) -> None:
    parts = stream_parts(kind)
    adapter, _ = provider(kind, answer(MockResponse(200, body=[*parts[:2], b"data: {oops\n\n", *parts[2:]])))
    seen: list[Event] = []
    with pytest.raises(UpstreamMalformed) as caught:
        async for event in adapter.chat(ask(stream=True), UpstreamCall(model="up-model")):
            seen.append(event)
    assert caught.value.code == "upstream_malformed" and "{oops" in caught.value.message
    assert isinstance(seen[0], Start)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_that_ends_before_its_end_event_is_cut(kind: str) -> None:
    adapter, _ = provider(kind, answer(MockResponse(200, body=stream_parts(kind)[:-1])))
    with pytest.raises(UpstreamMalformed) as caught:
        await run(adapter, ask(stream=True))
    assert (caught.value.code, caught.value.retryable) == ("upstream_stream_cut", True)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_connection_cut_mid_stream_is_unreachable_after_the_first_events(kind: str) -> None:
    cut = ProtocolError("the upstream closed the connection in the middle of its answer")
    response = MockResponse(200, body=[*stream_parts(kind)[:-1], cut])
    adapter, _ = provider(kind, answer(response))
    seen: list[Event] = []
    with pytest.raises(UpstreamUnreachable) as caught:
        async for event in adapter.chat(ask(stream=True), UpstreamCall(model="up-model")):
            seen.append(event)
    assert isinstance(seen[0], Start) and any(isinstance(e, TextDelta) for e in seen)
    assert caught.value.status == 502 and "broke off the response" in caught.value.message
    assert caught.value.__cause__ is cut
    assert response.closed and not response.finished


async def test_an_error_chunk_mid_stream_is_raised() -> None:
    parts = stream_parts("openai")
    failure = sse({"error": {"message": "overloaded", "type": "server_error", "code": "overloaded"}})
    adapter, _ = provider("openai", answer(MockResponse(200, body=[parts[0], *failure])))
    with pytest.raises(UpstreamError) as caught:
        await run(adapter, ask(stream=True))
    assert (caught.value.status, caught.value.code, caught.value.upstream_type) == (502, "overloaded", "server_error")
    assert "failed mid-stream: overloaded" in caught.value.message


# --- transport failures ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_transport_failures_become_unreachable_and_timeout(kind: str) -> None:
    def refuse(request: UpstreamRequest) -> MockResponse:
        raise ConnectError("cannot connect to api:443: Connection refused", "Connection refused")

    adapter, _ = provider(kind, refuse)
    with pytest.raises(UpstreamUnreachable) as unreachable:
        await run(adapter, ask())
    assert unreachable.value.message == f"provider '{kind}' is unreachable at {BASE_URLS[kind]}: Connection refused"

    async def silent(request: UpstreamRequest) -> MockResponse:
        raise ReadTimeout("no data from the upstream for 2s")

    adapter, _ = provider(kind, silent)
    with pytest.raises(UpstreamTimeout) as timeout:
        await run(adapter, ask(stream=True), first_byte_s=2.0)
    assert timeout.value.message == f"provider '{kind}' did not answer within 2s ({BASE_URLS[kind]})"
    assert (timeout.value.status, timeout.value.retryable) == (504, True)


@pytest.mark.parametrize("kind", KINDS)
async def test_leaving_a_stream_early_ends_the_exchange(kind: str) -> None:
    async def endless() -> AsyncIterator[bytes]:
        parts = stream_parts(kind)
        for part in parts[:2]:
            yield part
        while True:
            yield parts[2 if kind != "openai" else 1]

    response = MockResponse(200, body=endless())
    adapter, _ = provider(kind, answer(response))
    stream = adapter.chat(ask(stream=True), UpstreamCall(model="up-model"))
    assert isinstance(await anext(stream), Start)
    await anext(stream)
    assert not response.closed
    await stream.aclose()
    assert response.closed and not response.finished


# --- hostile upstreams -----------------------------------------------------------------------------

ECHOED = "provider key sk-test, header x-api-key: sk-live-0123456789abcdefXYZ"


def echoing_error(kind: str) -> Any:
    """An error body in ``kind``'s format whose every text field quotes the provider's key."""
    if kind == "openai":
        return {"error": {"message": ECHOED, "type": "sk-live-0123456789abcdefXYZ", "param": "sk-test-param",
                          "code": "auth sk-live-0123456789abcdefXYZ"}}
    if kind == "anthropic":
        return {"type": "error", "error": {"type": "sk-live-0123456789abcdefXYZ", "message": ECHOED}}
    return {"error": {"code": 401, "message": ECHOED, "status": "sk-live-0123456789abcdefXYZ"}}


def assert_masked(error: UpstreamError) -> None:
    for text in (error.message, error.code, error.upstream_type, error.param, str(error)):
        assert text is None or ("sk-test" not in text and "0123456789abcdef" not in text), text
    assert "provider key ***, header x-api-key: ***" in error.message


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("kind", KINDS)
async def test_an_error_status_that_echoes_the_key_is_masked(kind: str, stream: bool) -> None:
    adapter, _ = provider(kind, answer(MockResponse(401, json=echoing_error(kind))))
    with pytest.raises(UpstreamError) as caught:
        await run(adapter, ask(stream))
    assert_masked(caught.value)
    assert caught.value.status == 401


@pytest.mark.parametrize("kind", KINDS)
async def test_an_error_mid_stream_that_echoes_the_key_is_masked(kind: str) -> None:
    body = echoing_error(kind)
    failure = [b"event: error\n" + sse(body)[0]] if kind == "anthropic" else sse(body)
    parts = stream_parts(kind)
    adapter, _ = provider(kind, answer(MockResponse(200, body=[*parts[:2], *failure])))
    seen: list[Event] = []
    with pytest.raises(UpstreamError) as caught:
        async for event in adapter.chat(ask(stream=True), UpstreamCall(model="up-model")):
            seen.append(event)
    assert isinstance(seen[0], Start)
    assert "failed mid-stream" in caught.value.message
    assert_masked(caught.value)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_malformed_answer_that_quotes_the_key_is_masked_and_a_long_one_cut(kind: str) -> None:
    adapter, _ = provider(kind, answer(MockResponse(200, body=b"<html>key sk-test " + b"x" * 100 + b"</html>")))
    with pytest.raises(UpstreamMalformed) as caught:
        await run(adapter, ask())
    assert "sk-test" not in caught.value.message and "key ***" in caught.value.message
    adapter, _ = provider(kind, answer(MockResponse(500, json={"error": {"message": "y" * 100_000}})))
    with pytest.raises(UpstreamError) as error:
        await run(adapter, ask())
    assert len(error.value.message) <= 1000 and error.value.message.endswith("…")


@pytest.mark.parametrize("value", ["nan", "1e400", "not-a-date", "-3"])
@pytest.mark.parametrize("kind", KINDS)
async def test_a_retry_after_that_is_no_number_of_seconds_is_dropped(kind: str, value: str) -> None:
    adapter, _ = provider(kind, answer(MockResponse(429, {"retry-after": value}, json=ERROR_BODIES[kind][0])))
    with pytest.raises(UpstreamError) as caught:
        await run(adapter, ask())
    assert (caught.value.status, caught.value.retry_after) == (429, None)


HOSTILE_VALUES: list[Any] = [None, "text", -1, 10**30, 1e308, [], {}, [1, "x", None], {"a": [1]}, True]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value where another value could stand."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            found += _paths(item, (*path, position))
    return found


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = orjson.loads(orjson.dumps(value))
    at = copy
    for step in path[:-1]:
        at = at[step]
    at[path[-1]] = new
    return copy


@pytest.mark.parametrize("kind", KINDS)
async def test_any_value_of_an_answer_replaced_by_a_hostile_one_is_read_or_refused_never_a_crash(kind: str) -> None:
    tried = 0
    for path in _paths(WHOLE[kind]):
        for hostile in HOSTILE_VALUES:
            body = json.dumps(_replaced(WHOLE[kind], path, hostile)).encode()
            adapter, _ = provider(kind, answer(MockResponse(200, body=body)))
            try:
                events = await run(adapter, ask())
            except UpstreamError as error:  # refused as malformed (or an error the body says it is)
                assert error.status >= 400
                continue
            result = fold_events(events)
            tried += 1
            assert isinstance(result.model, str) and len(result.model) <= 256
            usage = next((e for e in events if isinstance(e, Usage)), None)
            if usage is not None:
                counts = (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens,
                          usage.cache_write_tokens, usage.reasoning_tokens)
                assert all(isinstance(n, int) and 0 <= n <= 2 * 100_000_000 for n in counts)
            for choice in result.choices:
                assert isinstance(choice.text, str) and 0 <= choice.index < 1024
                assert len(choice.tool_calls) <= 1024
    assert tried > 50


@pytest.mark.parametrize("kind", KINDS)
async def test_hostile_stream_chunks_are_read_or_refused_never_a_crash(kind: str) -> None:
    parts = stream_parts(kind)
    for hostile in [b"data: [1, 2]\n\n", b'data: "text"\n\n', b"data: 42\n\n", b"data: null\n\n",
                    b'data: {"choices": 5, "candidates": "x", "type": "content_block_delta", "delta": 7}\n\n',
                    b'data: {"choices": [{"index": 99999999, "delta": {"tool_calls": [{"index": 10000000000}]}}]}\n\n',
                    b'data: {"type": "message_start", "message": {"model": 42, "usage": [1]}}\n\n']:
        adapter, _ = provider(kind, answer(MockResponse(200, body=[parts[0], hostile, *parts[1:]])))
        try:
            result = fold_events(await run(adapter, ask(stream=True)))
        except UpstreamError as error:
            assert error.status >= 400
            continue
        assert all(len(choice.tool_calls) <= 1024 and choice.index < 1024 for choice in result.choices)


@pytest.mark.parametrize("kind", KINDS)
async def test_an_answer_not_ended_within_max_duration_is_a_timeout(kind: str) -> None:
    async def endless() -> AsyncIterator[bytes]:
        parts = stream_parts(kind)
        yield parts[0]
        while True:
            await asyncio.sleep(0.01)
            yield parts[1] if kind != "anthropic" else parts[2]

    for stream in (False, True):
        adapter, _ = provider(kind, answer(MockResponse(200, body=endless())))
        seen: list[Event] = []
        with pytest.raises(UpstreamTimeout) as caught:
            async for event in adapter.chat(ask(stream), UpstreamCall(model="up-model", max_duration=0.3)):
                seen.append(event)
        assert caught.value.message == (f"provider '{kind}' did not finish its answer within 0.3s, the deployment's "
                                        f"max_duration ({BASE_URLS[kind]})")
        assert (caught.value.status, caught.value.code) == (504, "upstream_timeout")
        assert isinstance(caught.value.__cause__, DeadlineExceeded)
        if stream:
            assert sum(isinstance(e, TextDelta) for e in seen) > 1  # it streamed until the deadline

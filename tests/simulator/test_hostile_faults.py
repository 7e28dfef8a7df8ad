"""The faults of a hostile upstream, seen by plain clients: hostile Retry-After values, answers that
dribble or never end, errors that echo the key, and model names that are no names."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Callable

import orjson
import pytest

from modelgate.simulator import FaultSpecError, Simulator, parse_fault
from tests.simulator.conftest import API_KEY, make_config

CHAT = {"model": "m", "max_tokens": 30, "messages": [{"role": "user", "content": "Hello there"}]}
PATHS = {"openai": "/v1/chat/completions", "responses": "/v1/responses", "anthropic": "/v1/messages",
         "gemini": "/v1beta/models/m:generateContent"}
AUTH = {"openai": {"authorization": f"Bearer {API_KEY}"}, "responses": {"authorization": f"Bearer {API_KEY}"},
        "anthropic": {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"},
        "gemini": {"x-goog-api-key": API_KEY}}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "Hello there"}]}]}
RESPONSES = {"model": "m", "max_output_tokens": 30, "input": "Hello there"}


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(make_config())
    await simulator.start()
    yield simulator
    await simulator.stop()


async def exchange(sim: Simulator, api: str, fault: str, stream: bool = False,
                   until: Callable[[bytes], bool] | None = None) -> tuple[bytes, bytes]:
    """A request on a raw connection: (the status line and headers, the rest), read to the
    connection's end or until ``until`` says it has seen enough."""
    path = PATHS[api]
    request: dict[str, object] = (dict(GEMINI) if api == "gemini" else
                                  {**(RESPONSES if api == "responses" else CHAT), "stream": stream})
    if api == "gemini" and stream:
        path = path.replace(":generateContent", ":streamGenerateContent?alt=sse")
    payload = orjson.dumps(request)
    headers = {**AUTH[api], "x-sim-fault": fault, "content-type": "application/json",
               "content-length": str(len(payload)), "host": "sim", "connection": "close"}
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    lines = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(lines.encode() + payload)
    whole = b""
    try:
        while data := await reader.read(65536):
            whole += data
            if until is not None and until(whole):
                break
    finally:
        writer.close()
    end = whole.find(b"\r\n\r\n")
    head, body = whole[:end], whole[end + 4:]
    return head, dechunked(body) if b"transfer-encoding: chunked" in head.lower() else body


def dechunked(body: bytes) -> bytes:
    """A chunked body's data (as far as it came)."""
    out = b""
    while (line_end := body.find(b"\r\n")) > 0:
        size = int(body[:line_end], 16)
        out += body[line_end + 2:line_end + 2 + size]
        body = body[line_end + 4 + size:]
    return out


def test_hostile_fault_specs() -> None:
    assert (parse_fault("dribble").kind, parse_fault("dribble").gap_ms) == ("dribble", 100)
    assert parse_fault("dribble_body=5").gap_ms == 5 and parse_fault("endless").gap_ms == 20
    assert (parse_fault("echo_key").after, parse_fault("echo_key=3").after) == (-1, 3)
    assert not parse_fault("echo_key").mid_stream and parse_fault("echo_key=3").mid_stream
    assert parse_fault("model=42").model == 42
    assert parse_fault('model="a\\r\\nb"').model == "a\r\nb"
    assert parse_fault("model=plain-text").model == "plain-text"
    assert parse_fault("status=429;retry_after=nan").retry_after == "nan"
    for bad, fragment in [("dribble_body", "needs the milliseconds"), ("dribble=-1", "0 to 60000"),
                          ("endless=x", "0 to 60000"), ("echo_key=-2", "0 or more"), ("model", "needs a value")]:
        with pytest.raises(FaultSpecError, match=fragment):
            parse_fault(bad)


@pytest.mark.parametrize("value", ["nan", "1e400", "not-a-date"])
async def test_retry_after_is_sent_as_written(sim: Simulator, value: str) -> None:
    head, _ = await exchange(sim, "openai", f"status=429;retry_after={value}")
    assert head.startswith(b"HTTP/1.1 429") and f"\r\nRetry-After: {value}".lower().encode() in head.lower()


async def test_retry_after_as_a_date(sim: Simulator) -> None:
    head, _ = await exchange(sim, "anthropic", "status=429;retry_after=date+30")
    line = next(line for line in head.decode().split("\r\n") if line.lower().startswith("retry-after:"))
    when = email.utils.parsedate_to_datetime(line.split(":", 1)[1].strip())
    assert 20 < when.timestamp() - time.time() <= 31


@pytest.mark.parametrize("api", list(PATHS))
async def test_dribble_sends_the_whole_answer_a_byte_at_a_time(sim: Simulator, api: str) -> None:
    head, text = await exchange(sim, api, "dribble=1")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nconnection: close" in head.lower()
    body = orjson.loads(text)
    assert body.get("model") == "m" or body.get("modelVersion") == "m"


@pytest.mark.parametrize("api", list(PATHS))
async def test_dribble_body_streams_a_whole_stream_then_closes(sim: Simulator, api: str) -> None:
    head, text = await exchange(sim, api, "dribble_body=1", stream=True)
    assert b"text/event-stream" in head
    assert text.count(b"data: ") >= 3
    if api == "openai":
        assert text.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("api", list(PATHS))
async def test_endless_streams_never_end(sim: Simulator, api: str) -> None:
    marker = {"openai": b'"content":"', "responses": b"response.output_text.delta", "anthropic": b"text_delta",
              "gemini": b'"text":'}[api]
    # Far more content than a reply of 30 tokens has: the stream goes on until the client leaves.
    head, text = await exchange(sim, api, "endless=1", stream=True, until=lambda seen: seen.count(marker) > 300)
    assert head.startswith(b"HTTP/1.1 200") and text.count(marker) > 300
    assert b"[DONE]" not in text and b"message_stop" not in text and b"finishReason" not in text
    assert b"response.completed" not in text


@pytest.mark.parametrize("api", list(PATHS))
async def test_echo_key_quotes_the_key_and_its_header(sim: Simulator, api: str) -> None:
    head, body = await exchange(sim, api, "echo_key")
    assert head.startswith(b"HTTP/1.1 401")
    text = body.decode()
    header = {"openai": f"authorization: Bearer {API_KEY}", "responses": f"authorization: Bearer {API_KEY}",
              "anthropic": f"x-api-key: {API_KEY}",
              "gemini": f"x-goog-api-key: {API_KEY}"}[api]
    assert f"Incorrect API key provided: {API_KEY}." in text and header in text


@pytest.mark.parametrize("api", list(PATHS))
async def test_echo_key_mid_stream(sim: Simulator, api: str) -> None:
    head, body = await exchange(sim, api, "echo_key=2", stream=True)
    assert head.startswith(b"HTTP/1.1 200")
    frames = body.decode().replace("\r\n", "\n").split("\n\n")
    error = next(frame for frame in frames if "Incorrect API key provided" in frame)
    assert API_KEY in error and frames.index(error) == 2


@pytest.mark.parametrize("api", list(PATHS))
@pytest.mark.parametrize("spec", ["model=42", 'model="gpt\\r\\nx-evil: 1"', 'model="\\u6a21\\u578b"'])
async def test_model_names_what_the_fault_says(sim: Simulator, api: str, spec: str) -> None:
    named = parse_fault(spec).model
    _, text = await exchange(sim, api, spec)
    body = orjson.loads(text)
    assert body.get("modelVersion" if api == "gemini" else "model") == named
    _, text = await exchange(sim, api, spec, stream=True)
    first = next(frame for frame in text.replace(b"\r\n", b"\n").split(b"\n\n") if b"data: " in frame)
    data = orjson.loads(first[first.index(b"data: ") + 6:])
    container = {"anthropic": "message", "responses": "response"}.get(api)
    shown = data[container]["model"] if container else data["modelVersion" if api == "gemini" else "model"]
    assert shown == named

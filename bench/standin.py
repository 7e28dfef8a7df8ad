"""Upstream stand-in: the cheapest OpenAI-compatible server we can write in Python.

It is the "model provider" every benchmark talks to, so its own cost must be close to nothing and
constant across systems. That is why it has no framework, parses HTTP/1.1 by hand in an
``asyncio.Protocol`` (no streams layer), answers from pre-serialized bytes and sets TCP_NODELAY:
without it Nagle + delayed ACK add ~40 ms per request and hide every gateway's overhead.

Routes: ``POST /v1/chat/completions`` (also ``/chat/completions``), ``GET /health``,
``GET /v1/models``, ``GET /stats`` (request counters, used by the fallback gate).

Modes (``--mode``):
  instant   ~1.4 KB ``chat.completion`` with ``usage``, at once.
  latency   the same body after ``--latency-ms``.
  big       ~10 KB response body.
  stream    like instant for non-streaming requests; streaming is chosen by the request anyway.
  faults    the fault named by the request header ``x-bench-fault`` or, when absent, ``--fault``:
            ``429`` (with ``retry-after``), ``500``, ``cut:K`` (stream cut after K content chunks),
            ``close`` (connection closed with no response), ``none``.

Any request whose JSON has ``"stream": true`` is answered as SSE (chunked transfer): a role chunk,
``--ttft-ms`` to the first content delta, ``--chunks`` deltas every ``--chunk-ms``, a finish
chunk, a usage chunk and ``data: [DONE]``.

Body fidelity: the load generator puts ``bench-nonce-<n>`` in each prompt; the stand-in echoes it at
the start of the reply's content so the client can check that it got *its* answer, unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import socket
import time
from dataclasses import dataclass

import orjson

# A regex on the raw bytes instead of a JSON parse: the stand-in must stay far cheaper than any
# gateway, and it only needs two facts from the body.
_STREAM_RE = re.compile(rb'"stream"\s*:\s*true')
_NONCE_RE = re.compile(rb"bench-nonce-(\d+)")
_MAX_HEADER = 64 * 1024


@dataclass(frozen=True)
class Settings:
    mode: str
    latency_ms: float
    ttft_ms: float
    chunk_ms: float
    chunks: int
    fault: str
    big_kb: int


def _completion_parts(content_len: int) -> tuple[bytes, bytes]:
    """Pre-serialize a chat.completion around the spot where the nonce goes."""
    filler = ("The quick brown fox jumps over the lazy dog. " * (content_len // 45 + 1))[:content_len]
    body = {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion",
        "created": 1732400000,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "@@NONCE@@" + filler, "refusal": None,
                            "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 57,
            "completion_tokens": content_len // 4,
            "total_tokens": 57 + content_len // 4,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_bench",
    }
    raw = orjson.dumps(body)
    head, tail = raw.split(b"@@NONCE@@")
    return head, tail


def _sse(obj: object) -> bytes:
    """One SSE event framed as one HTTP chunk, so each event leaves in its own write."""
    event = b"data: " + orjson.dumps(obj) + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def _chunk_obj(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
    return {
        "id": "chatcmpl-benchstream",
        "object": "chat.completion.chunk",
        "created": 1732400000,
        "model": "bench-model",
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


class Bodies:
    """Every byte the stand-in sends, built once at start-up."""

    def __init__(self, s: Settings) -> None:
        # ~1.4 KB in all for the instant body; ~10 KB for big.
        self.small = _completion_parts(820)
        self.big = _completion_parts(s.big_kb * 1024 - 700)
        self.json_head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Connection: keep-alive\r\nContent-Length: ")
        self.sse_head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                         b"Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.role = _sse(_chunk_obj({"role": "assistant", "content": "", "refusal": None}))
        self.deltas = [_sse(_chunk_obj({"content": f" tok{i}"})) for i in range(s.chunks)]
        self.finish = _sse(_chunk_obj({}, "stop"))
        usage = _chunk_obj({})
        usage["choices"] = []
        usage["usage"] = {"prompt_tokens": 57, "completion_tokens": s.chunks, "total_tokens": 57 + s.chunks}
        self.usage = _sse(usage)
        self.done = _sse_raw(b"data: [DONE]\n\n") + b"0\r\n\r\n"
        self.health = _json_response(200, b'{"status":"ok"}')
        self.models = _json_response(
            200, b'{"object":"list","data":[{"id":"bench-model","object":"model","created":0,"owned_by":"bench"}]}'
        )
        self.not_found = _json_response(404, b'{"error":{"message":"not found","type":"invalid_request_error"}}')
        self.e429 = _json_response(
            429,
            b'{"error":{"message":"Rate limit reached (bench fault)","type":"rate_limit_exceeded",'
            b'"param":null,"code":"rate_limit_exceeded"}}',
            extra=b"Retry-After: 1\r\nx-ratelimit-remaining-requests: 0\r\n",
        )
        self.e500 = _json_response(
            500, b'{"error":{"message":"Internal server error (bench fault)","type":"server_error",'
                 b'"param":null,"code":null}}'
        )


def _sse_raw(event: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(event), event)


_REASONS = {200: b"OK", 404: b"Not Found", 429: b"Too Many Requests", 500: b"Internal Server Error"}


def _json_response(status: int, body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n%s"
            b"Content-Length: %d\r\n\r\n%s" % (status, _REASONS[status], extra, len(body), body))


class Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.streams = 0
        self.faults: dict[str, int] = {}


class Connection(asyncio.Protocol):
    """One keep-alive connection. Requests are answered strictly in order: while a response is in
    flight (latency or stream) further pipelined requests wait in the buffer."""

    def __init__(self, s: Settings, b: Bodies, stats: Stats) -> None:
        self.s, self.b, self.stats = s, b, stats
        self.buf = bytearray()
        self.busy = False
        self.closed = False
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, so no isinstance check here.
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._process()

    def _process(self) -> None:
        while not self.busy and not self.closed:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > _MAX_HEADER:
                    self._close()
                return
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if headers.get("transfer-encoding", "").lower() == "chunked":
                body_end, body = self._dechunk(end + 4)
                if body_end < 0:
                    return
            else:
                length = int(headers.get("content-length", "0"))
                body_end = end + 4 + length
                if len(self.buf) < body_end:
                    return
                body = bytes(self.buf[end + 4:body_end])
            del self.buf[:body_end]
            self._handle(method, path.split("?", 1)[0], headers, body)
            if headers.get("connection", "").lower() == "close" and not self.busy:
                self._close()

    def _dechunk(self, pos: int) -> tuple[int, bytes]:
        """Decode a chunked request body (some clients send one); (-1, b"") until it is complete."""
        out = bytearray()
        while True:
            eol = self.buf.find(b"\r\n", pos)
            if eol < 0:
                return -1, b""
            size = int(bytes(self.buf[pos:eol]).split(b";")[0], 16)
            start = eol + 2
            if size == 0:
                trailer_end = self.buf.find(b"\r\n\r\n", eol)
                if trailer_end >= 0 and trailer_end == eol:
                    return eol + 4, bytes(out)
                fin = self.buf.find(b"\r\n", start)
                if fin < 0:
                    return -1, b""
                return fin + 2, bytes(out)
            if len(self.buf) < start + size + 2:
                return -1, b""
            out += self.buf[start:start + size]
            pos = start + size + 2

    def _write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def _close(self) -> None:
        if not self.closed and self.transport is not None:
            self.transport.close()
        self.closed = True

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        if method == "GET":
            if path == "/health":
                self._write(self.b.health)
            elif path in ("/v1/models", "/models"):
                self._write(self.b.models)
            elif path == "/stats":
                st = self.stats
                self._write(_json_response(200, orjson.dumps(
                    {"requests": st.requests, "streams": st.streams, "faults": st.faults})))
            else:
                self._write(self.b.not_found)
            return
        if method != "POST" or path not in ("/v1/chat/completions", "/chat/completions"):
            self._write(self.b.not_found)
            return
        self.stats.requests += 1
        m = _NONCE_RE.search(body)
        nonce = b"bench-nonce-" + m.group(1) + b" " if m else b"bench-nonce-none "
        stream = _STREAM_RE.search(body) is not None

        fault = headers.get("x-bench-fault") or (self.s.fault if self.s.mode == "faults" else "none")
        if fault != "none":
            self.stats.faults[fault] = self.stats.faults.get(fault, 0) + 1
        if fault == "429":
            self._write(self.b.e429)
            return
        if fault == "500":
            self._write(self.b.e500)
            return
        if fault == "close":
            self._close()
            return
        cut = int(fault.split(":", 1)[1]) if fault.startswith("cut") and ":" in fault else (
            8 if fault == "cut" else -1)

        if stream:
            self.stats.streams += 1
            self._start_stream(nonce, cut)
            return
        head, tail = self.b.big if self.s.mode == "big" else self.b.small
        payload = head + nonce + tail
        response = self.b.json_head + str(len(payload)).encode() + b"\r\n\r\n" + payload
        if self.s.mode == "latency" and self.s.latency_ms > 0:
            self.busy = True
            self.loop.call_later(self.s.latency_ms / 1000, self._finish_delayed, response)
        else:
            self._write(response)

    def _finish_delayed(self, response: bytes) -> None:
        self._write(response)
        self._done()

    def _done(self) -> None:
        self.busy = False
        if self.buf:
            self._process()

    def _start_stream(self, nonce: bytes, cut: int) -> None:
        """Schedule every event at an absolute time so timer slop never accumulates."""
        self.busy = True
        self._write(self.b.sse_head + self.b.role)
        start = self.loop.time() + self.s.ttft_ms / 1000
        # The first delta carries the nonce; the rest are pre-built.
        first = _sse(_chunk_obj({"content": nonce.decode() + "tok0"}))
        events = [first, *self.b.deltas[1:]]
        self.loop.call_at(start, self._stream_step, events, 0, start, cut)

    def _stream_step(self, events: list[bytes], i: int, start: float, cut: int) -> None:
        if self.closed:
            return
        if i == cut:
            # Mid-stream failure: FIN with no terminating chunk, the way a crashed upstream looks.
            self._close()
            return
        self._write(events[i])
        if i + 1 < len(events):
            self.loop.call_at(start + (i + 1) * self.s.chunk_ms / 1000, self._stream_step, events, i + 1,
                              start, cut)
            return
        self._write(self.b.finish + self.b.usage + self.b.done)
        self._done()


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Settings]:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--mode", choices=["instant", "latency", "stream", "big", "faults"], default="instant")
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--ttft-ms", type=float, default=100.0)
    p.add_argument("--chunk-ms", type=float, default=20.0)
    p.add_argument("--chunks", type=int, default=64, help="content deltas per stream (>= 1)")
    p.add_argument("--fault", default="500", help="fault in faults mode when no x-bench-fault header")
    p.add_argument("--big-kb", type=int, default=10)
    a = p.parse_args(argv)
    return a, Settings(a.mode, a.latency_ms, a.ttft_ms, a.chunk_ms, a.chunks, a.fault, a.big_kb)


async def serve(host: str, port: int, s: Settings) -> None:
    bodies, stats = Bodies(s), Stats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(s, bodies, stats), host, port, backlog=4096,
                                      reuse_address=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    args, s = parse_args(argv)
    try:
        import uvloop
    except ImportError:  # the rig still works, only a little slower
        uvloop = None
    started = time.perf_counter()
    print(f"standin mode={s.mode} on {args.host}:{args.port} ({time.perf_counter() - started:.3f}s)",
          flush=True)
    if uvloop is not None:
        uvloop.run(serve(args.host, args.port, s))
    else:
        asyncio.run(serve(args.host, args.port, s))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()

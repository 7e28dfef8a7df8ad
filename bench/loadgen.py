"""Load generator: open-loop (fixed rate), closed-loop (concurrency C) and paired sequential runs.

Latency in open-loop runs is measured from the *intended* send time, so a slow server cannot slow the
client down and hide its own queueing (coordinated omission). The client is a hand-written HTTP/1.1
keep-alive client on ``asyncio.Protocol``: aiohttp would cost the shared core several times more
per request and make the rig, not the gateway, the limit.

Every request carries a unique ``bench-nonce-<n>`` so no cache can answer it and so the response can
be checked to be the answer to *this* request (body fidelity). Each response passes correctness
gates; a failed gate is counted as an error, never as a fast success.

Run ``python bench/loadgen.py --help``; it prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import math
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

REQUEST_TIMEOUT_S = 60.0
_nonce = itertools.count(1)


# ---------------------------------------------------------------------------------------------
# Request bodies


@dataclass(frozen=True)
class Target:
    """Where requests go and what they look like."""

    host: str
    port: int
    path: str = "/v1/chat/completions"
    model: str = "bench-model"
    headers: tuple[tuple[str, str], ...] = (("Authorization", "Bearer bench"),)
    # The wire format: "chat" (Chat Completions), "responses" (the Responses API, stored as its
    # default says) or "responses-stateless" (store false, as Codex sends it).
    api: str = "chat"

    @classmethod
    def from_url(cls, url: str, model: str = "bench-model", api_key: str = "bench") -> Target:
        u = urlsplit(url)
        return cls(u.hostname or "127.0.0.1", u.port or 80, u.path or "/v1/chat/completions", model,
                   (("Authorization", f"Bearer {api_key}"),))


@dataclass(frozen=True)
class Shape:
    """What kind of request: streaming or not, and how big the prompt is."""

    stream: bool = False
    prompt_bytes: int = 0  # extra prompt padding; ~10_000 for the "big" figure
    expect_chunks: int = 64  # content deltas a stream must deliver
    fault: str | None = None  # x-bench-fault header, for the fault figures

    def body(self, model: str, nonce: int, api: str = "chat") -> bytes:
        pad = ("lorem ipsum " * (self.prompt_bytes // 12 + 1))[: self.prompt_bytes]
        if api != "chat":
            return self._responses_body(model, f"{pad}Say hello. bench-nonce-{nonce}", api == "responses")
        msg: dict[str, Any] = {
            "model": model,
            "messages": [
                {"role": "system", "content": "You are the modelgate benchmark."},
                {"role": "user", "content": f"{pad}Say hello. bench-nonce-{nonce}"},
            ],
            "max_tokens": 256,
            "temperature": 0.0,
        }
        if self.stream:
            msg["stream"] = True
            msg["stream_options"] = {"include_usage": True}
        return orjson.dumps(msg)

    def _responses_body(self, model: str, text: str, store: bool) -> bytes:
        msg: dict[str, Any] = {"model": model, "instructions": "You are the modelgate benchmark.", "input": text,
                               "max_output_tokens": 256, "temperature": 0.0}
        if not store:
            msg["store"] = False
        if self.stream:
            msg["stream"] = True
        return orjson.dumps(msg)


def build_request(t: Target, shape: Shape, nonce: int) -> bytes:
    body = shape.body(t.model, nonce, t.api)
    extra = "".join(f"{k}: {v}\r\n" for k, v in t.headers)
    if shape.fault:
        extra += f"x-bench-fault: {shape.fault}\r\n"
    head = (f"POST {t.path} HTTP/1.1\r\nHost: {t.host}:{t.port}\r\nContent-Type: application/json\r\n"
            f"Accept: */*\r\n{extra}Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


# ---------------------------------------------------------------------------------------------
# The HTTP/1.1 client


@dataclass
class Response:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    complete: bool = False
    sent_at: float = 0.0
    done_at: float = 0.0
    # For SSE: (arrival time, raw event bytes), one per event in arrival order.
    events: list[tuple[float, bytes]] = field(default_factory=list)


class ClientConnection(asyncio.Protocol):
    """One keep-alive connection that carries one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.open = False
        self._fut: asyncio.Future[Response] | None = None
        self._resp = Response()
        self._buf = bytearray()
        self._state = "idle"
        self._remaining = 0
        self._sse = bytearray()
        self._is_sse = False
        self._keep_alive = True

    @classmethod
    async def connect(cls, host: str, port: int) -> ClientConnection:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(cls, host, port)
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.open = True
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self._fut is not None and not self._fut.done():
            # Mid-response close: hand back what arrived, marked incomplete, so a cut stream is visible.
            self._resp.done_at = time.perf_counter()
            self._fut.set_result(self._resp)
        self._fut = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.open = False

    def send(self, raw: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None and self._fut is None
        self._fut = asyncio.get_running_loop().create_future()
        self._resp = Response(sent_at=time.perf_counter())
        self._state = "head"
        self._buf.clear()
        self._sse.clear()
        self.transport.write(raw)
        return self._fut

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self._buf += data
        try:
            self._parse(now)
        except (ValueError, IndexError):
            self.close()

    def _parse(self, now: float) -> None:
        r = self._resp
        while True:
            if self._state == "head":
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
                del self._buf[: end + 4]
                r.status = int(lines[0].split(" ", 2)[1])
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    r.headers[k.strip().lower()] = v.strip()
                self._is_sse = r.headers.get("content-type", "").startswith("text/event-stream")
                self._keep_alive = r.headers.get("connection", "").lower() != "close"
                if r.headers.get("transfer-encoding", "").lower() == "chunked":
                    self._state = "chunk-size"
                elif "content-length" in r.headers:
                    self._remaining = int(r.headers["content-length"])
                    self._state = "fixed"
                else:
                    self._state = "until-close"
                    self._keep_alive = False
            elif self._state == "fixed":
                if len(self._buf) < self._remaining:
                    return
                self._body(bytes(self._buf[: self._remaining]), now)
                del self._buf[: self._remaining]
                self._finish(now)
                return
            elif self._state == "until-close":
                self._body(bytes(self._buf), now)
                self._buf.clear()
                return
            elif self._state == "chunk-size":
                eol = self._buf.find(b"\r\n")
                if eol < 0:
                    return
                size = int(bytes(self._buf[:eol]).split(b";")[0], 16)
                del self._buf[: eol + 2]
                if size == 0:
                    self._state = "trailer"
                else:
                    self._remaining = size
                    self._state = "chunk-data"
            elif self._state == "chunk-data":
                if len(self._buf) < self._remaining + 2:
                    return
                self._body(bytes(self._buf[: self._remaining]), now)
                del self._buf[: self._remaining + 2]
                self._state = "chunk-size"
            elif self._state == "trailer":
                eol = self._buf.find(b"\r\n")
                if eol < 0:
                    return
                del self._buf[: eol + 2]
                if eol == 0:
                    self._finish(now)
                    return
            else:
                return

    def _body(self, data: bytes, now: float) -> None:
        if not self._is_sse:
            self._resp.body += data
            return
        # Split into SSE events as they arrive, so each event gets its own arrival time.
        self._sse += data
        while True:
            idx = self._sse.find(b"\n\n")
            if idx < 0:
                break
            event = bytes(self._sse[:idx])
            del self._sse[: idx + 2]
            self._resp.events.append((now, event.replace(b"\r", b"")))

    def _finish(self, now: float) -> None:
        r = self._resp
        r.complete = True
        r.done_at = now
        fut, self._fut = self._fut, None
        self._state = "idle"
        if not self._keep_alive:
            self.close()
        if fut is not None and not fut.done():
            fut.set_result(r)


class Pool:
    """Keep-alive connections to one target; new ones are opened on demand up to ``limit``."""

    def __init__(self, target: Target, limit: int = 256) -> None:
        self.target = target
        self.limit = limit
        self.idle: deque[ClientConnection] = deque()
        self.count = 0
        self.waiters: deque[asyncio.Future[ClientConnection]] = deque()

    async def acquire(self) -> ClientConnection:
        while self.idle:
            c = self.idle.pop()
            if c.open:
                return c
            self.count -= 1
        if self.count < self.limit:
            self.count += 1
            try:
                return await ClientConnection.connect(self.target.host, self.target.port)
            except BaseException:
                self.count -= 1
                raise
        fut: asyncio.Future[ClientConnection] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        return await fut

    def release(self, c: ClientConnection) -> None:
        if not c.open:
            self.count -= 1
            # A waiter needs a connection; let it open a new one.
            if self.waiters:
                w = self.waiters.popleft()
                self.count += 1
                task = asyncio.ensure_future(ClientConnection.connect(self.target.host, self.target.port))
                task.add_done_callback(lambda t, w=w: _forward(t, w, self))
            return
        if self.waiters:
            self.waiters.popleft().set_result(c)
        else:
            self.idle.append(c)

    def close(self) -> None:
        for c in self.idle:
            c.close()
        self.idle.clear()


def _forward(task: asyncio.Future[ClientConnection], waiter: asyncio.Future[ClientConnection],
             pool: Pool) -> None:
    if task.exception() is not None:
        pool.count -= 1
        waiter.set_exception(task.exception())  # type: ignore[arg-type]
    else:
        waiter.set_result(task.result())


# ---------------------------------------------------------------------------------------------
# Correctness gates


@dataclass
class Outcome:
    ok: bool
    error: str | None
    latency: float  # seconds, from intended (open loop) or actual (closed loop) send time
    ttft: float | None = None  # to the first content delta
    gaps: list[float] = field(default_factory=list)  # between content deltas
    chunks: int = 0
    status: int = 0


def check(resp: Response, shape: Shape, nonce: int, start: float, api: str = "chat") -> Outcome:
    """Apply the correctness gates; ``start`` is the time latency is measured from."""
    lat = resp.done_at - start
    want = f"bench-nonce-{nonce} "
    if resp.status == 0:
        return Outcome(False, "no-response", lat)
    if resp.status != 200:
        return Outcome(False, f"http-{resp.status}", lat, status=resp.status)
    if not shape.stream:
        if not resp.complete:
            return Outcome(False, "truncated", lat, status=200)
        try:
            doc = orjson.loads(resp.body)
            if api == "chat":
                content = doc["choices"][0]["message"]["content"]
            else:
                message = next(item for item in doc["output"] if item["type"] == "message")
                content = message["content"][0]["text"]
            usage = doc.get("usage") or {}
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            return Outcome(False, "bad-json", lat, status=200)
        if not isinstance(content, str) or not content.startswith(want):
            return Outcome(False, "body-fidelity", lat, status=200)
        if not usage.get("total_tokens"):
            return Outcome(False, "no-usage", lat, status=200)
        return Outcome(True, None, lat, status=200)
    return _check_stream(resp, shape, want, start, lat, api)


def _check_stream(resp: Response, shape: Shape, want: str, start: float, lat: float, api: str) -> Outcome:
    if not resp.headers.get("content-type", "").startswith("text/event-stream"):
        return Outcome(False, "not-sse", lat, status=200)
    times: list[float] = []
    text: list[str] = []
    usage = done = False
    for at, raw in resp.events:
        lines = [ln for ln in raw.split(b"\n") if ln and not ln.startswith(b":")]
        data = b"\n".join(ln[5:].lstrip() for ln in lines if ln.startswith(b"data:"))
        if not data:
            continue
        if done:
            return Outcome(False, "data-after-done", lat, status=200)
        if data == b"[DONE]":
            done = True
            continue
        try:
            ev = orjson.loads(data)
        except orjson.JSONDecodeError:
            return Outcome(False, "sse-framing", lat, status=200)
        if api != "chat":
            # The Responses API ends a stream with response.completed (which carries the usage), not [DONE].
            kind = ev.get("type")
            if kind == "response.output_text.delta" and ev.get("delta"):
                times.append(at)
                text.append(ev["delta"])
            elif kind == "response.completed":
                done = usage = bool((ev.get("response") or {}).get("usage"))
            continue
        if ev.get("usage"):
            usage = True
        for choice in ev.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                times.append(at)
                text.append(piece)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    out = Outcome(True, None, lat, times[0] - start if times else None, gaps, len(times), 200)
    if not resp.complete or not done:
        # A cut stream must be visible to the client as a failure, never as a short success.
        out.ok, out.error = False, "stream-truncated"
    elif len(times) != shape.expect_chunks:
        out.ok, out.error = False, f"chunk-count-{len(times)}"
    elif not "".join(text).startswith(want):
        out.ok, out.error = False, "body-fidelity"
    elif not usage:
        out.ok, out.error = False, "no-usage"
    return out


# ---------------------------------------------------------------------------------------------
# Statistics


def pct(sorted_vals: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_vals:
        return math.nan
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100 * len(sorted_vals)) - 1))
    return sorted_vals[k]


def summary_ms(vals: Sequence[float]) -> dict[str, float]:
    s = sorted(vals)
    if not s:
        return {"n": 0}
    return {"n": len(s), "p50": pct(s, 50) * 1e3, "p90": pct(s, 90) * 1e3, "p99": pct(s, 99) * 1e3,
            "max": s[-1] * 1e3, "mean": sum(s) / len(s) * 1e3}


def report(outcomes: list[Outcome], elapsed: float, **extra: Any) -> dict[str, Any]:
    good = [o for o in outcomes if o.ok]
    errors: dict[str, int] = {}
    for o in outcomes:
        if not o.ok:
            errors[o.error or "?"] = errors.get(o.error or "?", 0) + 1
    out: dict[str, Any] = {
        **extra,
        "requests": len(outcomes),
        "ok": len(good),
        "errors": errors,
        "error_rate": (len(outcomes) - len(good)) / len(outcomes) if outcomes else 0.0,
        "elapsed_s": elapsed,
        "achieved_rps": len(good) / elapsed if elapsed > 0 else 0.0,
        "latency_ms": summary_ms([o.latency for o in good]),
    }
    streams = [o for o in good if o.ttft is not None]
    if streams:
        out["ttft_ms"] = summary_ms([o.ttft for o in streams if o.ttft is not None])
        gaps = [g for o in streams for g in o.gaps]
        out["gap_ms"] = summary_ms(gaps)
        # Chunks that arrive together were buffered somewhere: upstream sends one every --chunk-ms.
        out["bunched_gaps_pct"] = 100 * sum(g < 0.002 for g in gaps) / len(gaps) if gaps else 0.0
        out["chunks_min"] = min(o.chunks for o in streams)
    return out


# ---------------------------------------------------------------------------------------------
# Load shapes


async def one(pool: Pool, shape: Shape, start: float | None = None) -> Outcome:
    """One request; latency counts from ``start`` (the intended time) when given."""
    nonce = next(_nonce)
    raw = build_request(pool.target, shape, nonce)
    t_start = start if start is not None else time.perf_counter()
    try:
        conn = await pool.acquire()
    except OSError as e:
        return Outcome(False, f"connect-{type(e).__name__}", time.perf_counter() - t_start)
    try:
        resp = await asyncio.wait_for(conn.send(raw), REQUEST_TIMEOUT_S)
    except TimeoutError:
        conn.close()
        pool.release(conn)
        return Outcome(False, "timeout", time.perf_counter() - t_start)
    pool.release(conn)
    return check(resp, shape, nonce, start if start is not None else resp.sent_at, pool.target.api)


async def open_loop(target: Target, shape: Shape, rate: float, duration: float,
                    max_conns: int = 512) -> dict[str, Any]:
    """Send at a fixed rate regardless of how fast answers come back."""
    pool = Pool(target, max_conns)
    n = max(1, int(rate * duration))
    tasks: list[asyncio.Task[Outcome]] = []
    t0 = time.perf_counter() + 0.02
    i = 0
    while i < n:
        now = time.perf_counter()
        # Launch everything that is due; at high rates several are due per wake-up.
        while i < n and t0 + i / rate <= now:
            tasks.append(asyncio.ensure_future(one(pool, shape, t0 + i / rate)))
            i += 1
        if i < n:
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
    outcomes = await asyncio.gather(*tasks)
    elapsed = max(o.latency + t0 + k / rate for k, o in enumerate(outcomes)) - t0
    pool.close()
    return report(list(outcomes), elapsed, kind="open", target_rps=rate, duration_s=duration,
                  connections=pool.count)


async def closed_loop(target: Target, shape: Shape, concurrency: int, duration: float | None = None,
                      count: int | None = None) -> dict[str, Any]:
    """``concurrency`` workers, each sending its next request as soon as the last one returns."""
    pool = Pool(target, concurrency)
    outcomes: list[Outcome] = []
    deadline = time.perf_counter() + (duration or 1e9)
    left = [count if count is not None else 1 << 62]

    async def worker() -> None:
        while time.perf_counter() < deadline and left[0] > 0:
            left[0] -= 1
            outcomes.append(await one(pool, shape))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    pool.close()
    return report(outcomes, elapsed, kind="closed", concurrency=concurrency)


async def paired(targets: Sequence[Target], shape: Shape, count: int,
                 warmup: int = 50) -> dict[str, Any]:
    """Concurrency 1, interleaved request by request across targets, so drift hits all alike.

    Reports each target's latency and, for every target after the first, the per-pair difference
    to the first (the "added latency").
    """
    pools = [Pool(t, 1) for t in targets]
    for _ in range(warmup):
        for p in pools:
            await one(p, shape)
    results: list[list[Outcome]] = [[] for _ in targets]
    for i in range(count):
        order = range(len(pools)) if i % 2 == 0 else reversed(range(len(pools)))
        for k in order:
            results[k].append(await one(pools[k], shape))
    for p in pools:
        p.close()
    base = results[0]
    out: dict[str, Any] = {"kind": "paired", "count": count, "targets": []}
    for k, res in enumerate(results):
        entry = report(res, 0.0)
        if k > 0:
            pairs = [(a, b) for a, b in zip(base, res, strict=True) if a.ok and b.ok]
            entry["added_ms"] = summary_ms([b.latency - a.latency for a, b in pairs])
            entry["added_ms_of_p50"] = entry["latency_ms"].get("p50", math.nan) - out["targets"][0][
                "latency_ms"].get("p50", math.nan)
            entry["added_ms_of_p99"] = entry["latency_ms"].get("p99", math.nan) - out["targets"][0][
                "latency_ms"].get("p99", math.nan)
            if shape.stream:
                ttft = [(b.ttft or 0) - (a.ttft or 0) for a, b in pairs]
                entry["added_ttft_ms"] = summary_ms(ttft)
        entry.pop("elapsed_s")
        entry.pop("achieved_rps")
        out["targets"].append(entry)
    return out


# ---------------------------------------------------------------------------------------------
# CLI


def run(coro_factory: Callable[[], Any]) -> Any:
    try:
        import uvloop

        return uvloop.run(coro_factory())
    except ImportError:
        return asyncio.run(coro_factory())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="modelgate load generator; prints JSON")
    p.add_argument("--url", action="append", required=True,
                   help="http://127.0.0.1:PORT/v1/chat/completions; repeat for --mode paired")
    p.add_argument("--mode", choices=["open", "closed", "paired"], default="open")
    p.add_argument("--rate", type=float, default=100.0, help="requests/s (open)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds (open, closed)")
    p.add_argument("--concurrency", type=int, default=1, help="workers (closed)")
    p.add_argument("--count", type=int, default=1000, help="pairs (paired)")
    p.add_argument("--stream", action="store_true")
    p.add_argument("--chunks", type=int, default=64, help="content deltas each stream must carry")
    p.add_argument("--prompt-bytes", type=int, default=0)
    p.add_argument("--fault", default=None, help="x-bench-fault header to send")
    p.add_argument("--model", default="bench-model")
    p.add_argument("--api-key", default="bench")
    p.add_argument("--api", choices=["chat", "responses", "responses-stateless"], default="chat",
                   help="the wire format of the requests (Target.api)")
    a = p.parse_args(argv)
    shape = Shape(a.stream, a.prompt_bytes, a.chunks, a.fault)
    targets = [dataclasses.replace(Target.from_url(u, a.model, a.api_key), api=a.api) for u in a.url]
    if a.mode == "open":
        res = run(lambda: open_loop(targets[0], shape, a.rate, a.duration))
    elif a.mode == "closed":
        res = run(lambda: closed_loop(targets[0], shape, a.concurrency, a.duration))
    else:
        res = run(lambda: paired(targets, shape, a.count))
    print(orjson.dumps(res, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()

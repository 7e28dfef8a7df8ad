"""A client that goes away cancels the upstream request: no tokens are paid for after it left."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from aiohttp import web

from tests.support import RecordingUpstream, gateway_in_thread

USER = [{"role": "user", "content": "Count slowly"}]


class SlowUpstream(RecordingUpstream):
    """Streams a chunk every 50 ms for 5 s (or answers after 5 s), noting when its client leaves."""

    def __init__(self) -> None:
        super().__init__(self.slow)
        self.cancelled_at: float | None = None
        self.chunks_sent = 0

    async def slow(self, request: web.Request) -> Any:
        body = await request.json()
        try:
            if not body.get("stream"):
                await asyncio.sleep(5)
                return await self._default(request)
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            for i in range(100):
                chunk = (b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
                         b'"choices":[{"index":0,"delta":{"content":"tick ' + str(i).encode() + b'"}}]}\n\n')
                await response.write(chunk)
                self.chunks_sent += 1
                await asyncio.sleep(0.05)
            return response
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled_at = time.monotonic()
            raise


def _config(upstream: RecordingUpstream) -> dict[str, Any]:
    return {"providers": {"p": {"type": "openai", "base_url": f"{upstream.base_url}/v1"}},
            "deployments": [{"name": "m", "provider": "p", "model": "m"}]}


def _wait_for(condition: Any, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_stream_client_disconnect_cancels_upstream() -> None:
    with SlowUpstream() as upstream, gateway_in_thread(_config(upstream)) as gw:
        with httpx.stream("POST", f"{gw.v1}/chat/completions", timeout=10,
                          json={"model": "m", "messages": USER, "stream": True}) as response:
            received: list[str] = []
            for line in response.iter_lines():
                if line.startswith("data:"):
                    received.append(line)
                if len(received) >= 3:
                    break
        left_at = time.monotonic()
        assert _wait_for(lambda: upstream.cancelled_at is not None), "upstream never saw the client leave"
        assert upstream.cancelled_at is not None and upstream.cancelled_at - left_at < 1.0
        assert upstream.chunks_sent < 40


def test_non_streaming_client_disconnect_cancels_upstream() -> None:
    with SlowUpstream() as upstream, gateway_in_thread(_config(upstream)) as gw:
        started = time.monotonic()
        try:
            httpx.post(f"{gw.v1}/chat/completions", json={"model": "m", "messages": USER}, timeout=0.3)
        except httpx.ReadTimeout:
            pass
        else:
            raise AssertionError("the upstream answers after 5 s; the client should have timed out")
        assert _wait_for(lambda: upstream.cancelled_at is not None), "upstream never saw the client leave"
        assert upstream.cancelled_at is not None and upstream.cancelled_at - started < 2.0

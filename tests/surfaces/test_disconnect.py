"""A client that goes away cancels the upstream request: no tokens are paid for after it left."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiohttp import web

from tests.support import DEADLINE_S, RecordingUpstream, gateway_in_thread, wait_until

USER = [{"role": "user", "content": "Count slowly"}]
# A chunk every 50 ms for a minute (or an answer after a minute): the upstream request ends before
# that only if the gateway cancels it, so no clock decides the outcome.
CHUNKS = 1200
ANSWER_AFTER_S = 60


class SlowUpstream(RecordingUpstream):
    """Streams a chunk every 50 ms (or answers after a minute), noting when its client leaves."""

    def __init__(self) -> None:
        super().__init__(self.slow)
        self.cancelled = threading.Event()
        self.chunks_sent = 0

    async def slow(self, request: web.Request) -> Any:
        body = await request.json()
        try:
            if not body.get("stream"):
                await asyncio.sleep(ANSWER_AFTER_S)
                return await self._default(request)
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            for i in range(CHUNKS):
                chunk = (b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
                         b'"choices":[{"index":0,"delta":{"content":"tick ' + str(i).encode() + b'"}}]}\n\n')
                await response.write(chunk)
                self.chunks_sent += 1
                await asyncio.sleep(0.05)
            return response
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled.set()
            raise


def _config(upstream: RecordingUpstream) -> dict[str, Any]:
    return {"providers": {"p": {"type": "openai", "base_url": f"{upstream.base_url}/v1"}},
            "deployments": [{"name": "m", "provider": "p", "model": "m"}]}


def test_stream_client_disconnect_cancels_upstream() -> None:
    with SlowUpstream() as upstream, gateway_in_thread(_config(upstream)) as gw:
        with httpx.stream("POST", f"{gw.v1}/chat/completions", timeout=30,
                          json={"model": "m", "messages": USER, "stream": True}) as response:
            received: list[str] = []
            for line in response.iter_lines():
                if line.startswith("data:"):
                    received.append(line)
                if len(received) >= 3:
                    break
        assert upstream.cancelled.wait(DEADLINE_S), "upstream never saw the client leave"
        assert upstream.chunks_sent < CHUNKS


def test_non_streaming_client_disconnect_cancels_upstream() -> None:
    with SlowUpstream() as upstream, gateway_in_thread(_config(upstream)) as gw:
        body = json.dumps({"model": "m", "messages": USER}).encode()
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        address = urlsplit(gw.base_url)
        with socket.create_connection((address.hostname, address.port), timeout=30) as client:
            client.sendall(head + body)
            # The client gives up once its request is upstream (the answer would take a minute).
            wait_until(lambda: upstream.requests, what="the request reaching the upstream")
        assert upstream.cancelled.wait(DEADLINE_S), "upstream never saw the client leave"

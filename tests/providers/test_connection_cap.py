"""A provider's connection cap (``max_connections``): at most that many exchanges at once, the
others queued in order, each for at most its request's timeout."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import uvicorn

from modelgate.config import parse_settings
from modelgate.providers.transport import ConnectError, ConnectionCap, HTTPClient, PoolTimeout, Timeout, UpstreamRequest
from modelgate.server.app import create_app
from tests.support import RecordingUpstream, bound_socket, eventually, refused_port, wait_until


class HeldUpstream:
    """A server on a real socket that answers each request only when the test lets it."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.order: list[bytes] = []
        self.go = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                body = await reader.readexactly(length)
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                self.order.append(body)
                await self.go.wait()
                self.in_flight -= 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def held() -> AsyncIterator[tuple[HeldUpstream, str]]:
    upstream = HeldUpstream()
    server = await asyncio.start_server(upstream.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield upstream, f"http://127.0.0.1:{port}/v1/chat/completions"
    upstream.go.set()
    server.close()


def request(url: str, body: bytes, wait: float | None = 30) -> UpstreamRequest:
    return UpstreamRequest("POST", url, {}, body, Timeout(connect=5, read=wait))


async def post(cap: ConnectionCap, url: str, body: bytes, wait: float | None = 30) -> bytes:
    async with cap.send(request(url, body, wait)) as response:
        return await response.read()


async def test_requests_past_the_cap_wait_in_order_and_then_all_go(held: tuple[HeldUpstream, str]) -> None:
    upstream, url = held
    client = HTTPClient()
    cap = ConnectionCap(client, 2)
    try:
        calls = [asyncio.create_task(post(cap, url, b"%d" % i)) for i in range(6)]
        await eventually(lambda: upstream.in_flight == 2 and cap.waiting == 4, what="two sent, four queued")
        assert upstream.order == [b"0", b"1"]
        upstream.go.set()
        assert await asyncio.gather(*calls) == [b"ok"] * 6
        assert upstream.order == [b"%d" % i for i in range(6)]  # in the order they came
        assert upstream.most_in_flight == 2
        assert (cap.active, cap.waiting) == (0, 0)
    finally:
        await client.close()


async def test_a_request_waits_at_most_its_timeout_and_leaves_the_queue(held: tuple[HeldUpstream, str]) -> None:
    upstream, url = held
    client = HTTPClient()
    cap = ConnectionCap(client, 1)
    try:
        holder = asyncio.create_task(post(cap, url, b"holder"))
        await eventually(lambda: upstream.in_flight == 1, what="the holder sent")
        with pytest.raises(PoolTimeout, match="max_connections"):
            await post(cap, url, b"impatient", wait=0.05)
        # Cancelled while waiting (a client that went away): out of the queue too.
        cancelled = asyncio.create_task(post(cap, url, b"cancelled"))
        await eventually(lambda: cap.waiting == 1, what="one waiting")
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert cap.waiting == 0 and cap.active == 1
        later = asyncio.create_task(post(cap, url, b"later"))
        await eventually(lambda: cap.waiting == 1, what="one waiting")
        upstream.go.set()
        assert await holder == b"ok" and await later == b"ok"
        assert upstream.order == [b"holder", b"later"]
        assert (cap.active, cap.waiting) == (0, 0)
    finally:
        await client.close()


async def test_a_failed_exchange_gives_its_slot_back() -> None:
    client = HTTPClient()
    cap = ConnectionCap(client, 1)
    try:
        with refused_port() as port:
            for _ in range(3):
                with pytest.raises(ConnectError):
                    await post(cap, f"http://127.0.0.1:{port}/v1/chat/completions", b"x")
        assert cap.active == 0
    finally:
        await client.close()


def test_the_gateway_holds_max_connections_per_provider_and_queues_the_rest() -> None:
    lock = threading.Lock()
    release = threading.Event()
    state = {"in_flight": 0, "most": 0, "seen": 0}

    async def handler(request: Any) -> Any:
        from aiohttp import web

        with lock:
            state["in_flight"] += 1
            state["seen"] += 1
            state["most"] = max(state["most"], state["in_flight"])
        await asyncio.get_running_loop().run_in_executor(None, release.wait)
        with lock:
            state["in_flight"] -= 1
        return web.json_response({
            "id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    with RecordingUpstream(handler) as upstream, tempfile.TemporaryDirectory() as tmp:
        settings = parse_settings({
            "database_url": f"sqlite:///{tmp}/modelgate.db", "journal_dir": f"{tmp}/journal",
            "providers": {"up": {"type": "openai", "base_url": f"{upstream.base_url}/v1", "max_connections": 2}},
            "deployments": [{"name": "chat", "provider": "up", "model": "m", "timeout": 30}]}, {})
        app = create_app(settings)
        sock = bound_socket()
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            wait_until(lambda: server.started, 30, "the gateway's start")
            assert app.services is not None
            cap = app.services.providers["up"].transport
            assert isinstance(cap, ConnectionCap) and cap.limit == 2
            url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1/chat/completions"
            with ThreadPoolExecutor(5) as pool:
                answers = pool.map(lambda _: httpx.post(url, timeout=60, json={
                    "model": "chat", "messages": [{"role": "user", "content": "hi"}]}).status_code, range(5))
                wait_until(lambda: cap.waiting == 3 and state["seen"] == 2, what="two upstream, three queued")
                release.set()
                assert list(answers) == [200] * 5
        finally:
            server.should_exit = True
            thread.join(timeout=30)
            sock.close()
    assert state["most"] == 2 and state["seen"] == 5

"""Breaker sync between two processes' Health, in one test process, on the real Redis: one of
them reaches Redis through a proxy that the test cuts and restores."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from modelgate.redis_client import RedisClient
from modelgate.routing.health import CLOSED, OPEN, Health, TargetHealth
from modelgate.routing.redis_sync import RedisHealthSync
from modelgate.schema.errors import UpstreamError
from tests.tcp_proxy import TcpProxy


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def fail(target: TargetHealth) -> None:
    target.failed(UpstreamError("down", provider=target.provider, status=503), time.monotonic(), probe=False)


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    prefix = f"mgtest:{secrets.token_hex(6)}:"
    yield prefix
    checker = Redis.from_url(redis_url)
    keys = [key async for key in checker.scan_iter(match=prefix + "*")]
    if keys:
        await checker.delete(*keys)
    await checker.aclose()


async def test_a_process_that_lost_redis_reconnects_and_reads_what_it_missed(redis_url: str, prefix: str) -> None:
    with TcpProxy("127.0.0.1", 6379) as proxy:
        clients = [RedisClient.from_url(redis_url), RedisClient.from_url(f"redis://127.0.0.1:{proxy.port}/0")]
        syncs = [RedisHealthSync(client, Health(failures=1, cooldown=60), prefix) for client in clients]
        here, there = syncs
        try:
            for sync in syncs:
                await sync.start()
            assert here.connected and there.connected
            first, second = (there.health.target("openai", name) for name in ("m1", "m2"))

            fail(here.health.target("openai", "m1"))
            await until(lambda: first.state == OPEN)

            proxy.cut()
            await until(lambda: not there.connected)
            # Opened while the other process is cut off: it reads it from Redis when back.
            fail(here.health.target("openai", "m2"))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not await clients[0].hgetall(f"{prefix}breaker:openai/m2"):
                assert loop.time() < deadline, "the open breaker was not stored"
                await asyncio.sleep(0.01)
            assert second.state == CLOSED
            proxy.restore()
            await until(lambda: there.connected)
            assert second.state == OPEN and second.reason == "1 failures in a row"

            # And it hears of the transitions after that through its new subscription.
            here.health.target("openai", "m2").succeeded(time.monotonic(), probe=True)
            await until(lambda: second.state == CLOSED)
        finally:
            for sync in syncs:
                await sync.stop()
            for client in clients:
                await client.close()

"""Breaker sync between two processes' Health, in one test process, on the real Redis: one of
them reaches Redis through a proxy that the test cuts and restores."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable

import orjson
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


async def test_what_another_process_wrote_cannot_wedge_a_target_or_stop_the_sync(redis_url: str, prefix: str) -> None:
    checker = Redis.from_url(redis_url)
    client = RedisClient.from_url(redis_url)
    sync = RedisHealthSync(client, Health(failures=1, cooldown=60), prefix)
    names = ["nan", "inf", "word", "string", "capped", "fine", "local"]
    targets = {name: sync.health.target("openai", name) for name in names}
    try:
        # Stored by a process that had no such checks: no finite time, no number, not a hash.
        for name, stored_until in [("nan", "nan"), ("inf", "1e400"), ("word", "soon")]:
            await checker.hset(f"{prefix}breaker:openai/{name}", mapping={"state": OPEN, "until": stored_until})
        await checker.set(f"{prefix}breaker:openai/string", "not a hash")
        await sync.start()
        assert sync.connected
        assert all(target.state == CLOSED for target in targets.values())

        channel = f"{prefix}breaker"
        for data in [b'{"target": "openai/nan", "state": "open", "until": "nan", "origin": "o"}',
                     b'{"target": "openai/inf", "state": "open", "until": "-Infinity", "origin": "o"}',
                     b'{"target": "openai/capped", "state": "open", "until": 1e308, "reason": [1], "origin": "o"}',
                     b"\xff\xfe", b"[1, 2]", b'{"origin": "o"}', b"null"]:
            await checker.publish(channel, data)
        later = orjson.dumps({"target": "openai/fine", "state": OPEN, "until": time.time() + 30, "reason": "theirs",
                              "origin": "o"})
        await checker.publish(channel, later)
        await until(lambda: targets["fine"].state == OPEN)  # the listener lived through all of it
        assert targets["nan"].state == CLOSED and targets["inf"].state == CLOSED
        capped = targets["capped"]
        assert capped.state == OPEN and capped.reason is None and capped.open_until - time.monotonic() <= 300

        # A local failure with a Retry-After that is no number: shared with a finite until.
        targets["local"].failed(UpstreamError("x", provider="openai", status=429, retry_after=float("nan")),
                                time.monotonic(), probe=False)
        assert targets["local"].state == OPEN
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not (stored := await checker.hgetall(f"{prefix}breaker:openai/local")):
            assert loop.time() < deadline, "the open breaker was not stored"
            await asyncio.sleep(0.01)
        assert 50 < float(stored[b"until"]) - time.time() <= 60
        assert 0 < await checker.pttl(f"{prefix}breaker:openai/local") <= (60 + 60) * 1000
    finally:
        await sync.stop()
        await client.close()
        await checker.aclose()

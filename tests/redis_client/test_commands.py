"""Plain, pipelined and blocking commands of the process's Redis client, on the real server."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from modelgate.redis_client import RedisClient, RespError


@pytest.fixture
async def scratch(redis_url: str) -> AsyncIterator[tuple[RedisClient, Redis, str]]:
    """The client under test, redis-py to check what it did, and a key prefix of this test's own."""
    client = RedisClient.from_url(redis_url)
    checker = Redis.from_url(redis_url)
    prefix = f"mgtest:{secrets.token_hex(6)}:"
    try:
        yield client, checker, prefix
    finally:
        await client.close()
        keys = [key async for key in checker.scan_iter(match=prefix + "*")]
        if keys:
            await checker.delete(*keys)
        await checker.aclose()


async def test_a_pipeline_answers_in_order_and_raises_an_error_reply_after_reading_all(
        scratch: tuple[RedisClient, Redis, str]) -> None:
    client, checker, prefix = scratch
    key, other = prefix + "s", prefix + "t"
    assert await client.pipeline(["SET", key, "v"], ["GET", key], ["RPUSH", other, "a", "b"],
                                 ["EXPIRE", other, 60]) == ["OK", b"v", 2, 1]
    with pytest.raises(RespError, match="WRONGTYPE"):
        await client.pipeline(["HSET", key, "f", "x"], ["SET", key, "after"])
    # Each command ran on its own (not a transaction), and the connection is still in step.
    assert await checker.get(key) == b"after"
    assert await client.command("GET", key) == b"after"
    assert 0 < await checker.ttl(other) <= 60


async def test_hashes_are_read_whole_and_keys_found_by_pattern(scratch: tuple[RedisClient, Redis, str]) -> None:
    client, checker, prefix = scratch
    names = {f"{prefix}h:{n}".encode() for n in range(1200)}  # more than one SCAN batch
    await client.pipeline(*(("HSET", name, "n", name[-4:], "empty", "") for name in names))
    await checker.set(prefix + "other", "x")
    found = [key async for key in client.scan_iter(match=prefix + "h:*", count=500)]
    assert set(found) == names
    one = sorted(names)[0]
    assert await client.hgetall(one) == {b"n": one[-4:], b"empty": b""}
    assert await client.hgetall(prefix + "missing") == {}


async def test_blpop_waits_on_a_connection_of_its_own(scratch: tuple[RedisClient, Redis, str]) -> None:
    client, checker, prefix = scratch
    key = prefix + "list"
    assert await client.blpop([key], 0.05) is None  # nothing came
    waiting = asyncio.create_task(client.blpop([key], 30))
    # While BLPOP blocks in Redis, commands on the shared connection go on.
    for n in range(20):
        assert await client.command("ECHO", n) == str(n).encode()
    assert not waiting.done()
    await checker.rpush(key, "first")
    assert await waiting == (key.encode(), b"first")
    # The blocking connection is kept for the next BLPOP, which also sees a value already there.
    await checker.rpush(key, "second")
    assert await client.blpop([prefix + "empty", key], 1) == (key.encode(), b"second")


@pytest.mark.parametrize("when", ["connecting", "blocked in Redis"])
async def test_a_cancelled_blpop_leaves_the_client_working(scratch: tuple[RedisClient, Redis, str], when: str) -> None:
    client, checker, prefix = scratch
    blocked_before = await blocked_blpops(checker)
    waiting = asyncio.create_task(client.blpop([prefix + "never"], 30))
    if when == "connecting":
        await asyncio.sleep(0)
    else:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while await blocked_blpops(checker) <= blocked_before:
            assert loop.time() < deadline, "the BLPOP did not reach Redis"
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # Its connection is not kept: a BLPOP after it would wait behind the one still blocked there.
    await checker.rpush(prefix + "later", "x")
    assert await client.blpop([prefix + "later"], 1) == ((prefix + "later").encode(), b"x")
    assert await client.command("PING") == "PONG"


async def blocked_blpops(checker: Redis) -> int:
    return sum(1 for c in await checker.client_list() if c["cmd"] == "blpop" and "b" in c["flags"])


async def test_publish_counts_the_subscribers_it_reached(scratch: tuple[RedisClient, Redis, str]) -> None:
    client, _, prefix = scratch
    channel = prefix + "channel"
    assert await client.publish(channel, "nobody") == 0
    async with client.subscribe(channel), client.subscribe(channel):
        assert await client.publish(channel, b"both") == 2


async def test_an_unreachable_redis_fails_every_kind_of_command_with_an_os_error() -> None:
    client = RedisClient.from_url("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        with pytest.raises(ConnectionError):
            await client.publish("c", "m")
        with pytest.raises(ConnectionError):
            await client.pipeline(["PING"], ["PING"])
        with pytest.raises(ConnectionError):
            await client.blpop(["k"], 1)
        with pytest.raises(ConnectionError):
            await client.subscribe("c").start()
    finally:
        await client.close()

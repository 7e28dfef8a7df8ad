"""Subscriptions of the process's Redis client, on the real server: delivery, loss, health, close."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

import pytest

from modelgate.redis_client import Message, RedisClient, RespError, Subscription
from tests.tcp_proxy import TcpProxy


def channel() -> str:
    return f"mgtest:{secrets.token_hex(6)}"


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def take(subscription: Subscription, count: int, within: float = 5.0) -> list[Message]:
    async def collect() -> list[Message]:
        messages = []
        async for message in subscription:
            messages.append(message)
            if len(messages) == count:
                break
        return messages

    return await asyncio.wait_for(collect(), within)


async def test_messages_on_every_channel_arrive_in_order_once_subscribed(redis_url: str) -> None:
    client = RedisClient.from_url(redis_url)
    publisher = RedisClient.from_url(redis_url)
    first, second = channel(), channel()
    try:
        async with client.subscribe(first, second) as subscription:
            # start() returned: Redis confirmed both channels, nothing published now is missed.
            for n in range(50):
                assert await publisher.publish(first if n % 2 else second, b"\x00\xff%d" % n) == 1
            messages = await take(subscription, 50)
        assert messages == [Message(first if n % 2 else second, b"\x00\xff%d" % n) for n in range(50)]
        # Closing the connection unsubscribed (once Redis has seen it close).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while await publisher.publish(first, "gone") != 0:
            assert loop.time() < deadline, "still subscribed after close()"
    finally:
        await client.close()
        await publisher.close()


async def test_a_burst_larger_than_the_queue_arrives_whole_and_in_order(redis_url: str) -> None:
    """More messages than the subscription queues before it stops reading (HIGH_WATER): the rest
    wait in Redis and TCP until the consumer catches up."""
    client = RedisClient.from_url(redis_url)
    name = channel()
    try:
        async with client.subscribe(name) as subscription:
            for start in range(0, 25_000, 1000):
                await client.pipeline(*(("PUBLISH", name, n) for n in range(start, start + 1000)))
            messages = await take(subscription, 25_000, within=30)
        assert [int(m.data) for m in messages] == list(range(25_000))
    finally:
        await client.close()


def test_subscriptions_work_on_uvloop_as_the_gateway_runs_them(redis_url: str) -> None:
    import uvloop

    async def scenario() -> list[bytes]:
        client = RedisClient.from_url(redis_url)
        name = channel()
        try:
            async with client.subscribe(name) as subscription:
                await client.pipeline(*(("PUBLISH", name, n) for n in range(20)))
                return [m.data for m in await take(subscription, 20)]
        finally:
            await client.close()

    assert uvloop.run(scenario()) == [str(n).encode() for n in range(20)]


async def test_a_lost_connection_ends_the_iteration_and_a_new_subscription_resumes(redis_url: str) -> None:
    name = channel()
    publisher = RedisClient.from_url(redis_url)
    with TcpProxy("127.0.0.1", 6379) as proxy:
        client = RedisClient.from_url(f"redis://127.0.0.1:{proxy.port}/0")
        try:
            subscription = client.subscribe(name)
            await subscription.start()
            await publisher.publish(name, "before")
            assert [m.data for m in await take(subscription, 1)] == [b"before"]
            proxy.cut()
            with pytest.raises(ConnectionError):
                await take(subscription, 1)
            assert not subscription.connected
            with pytest.raises(ConnectionError):  # stays lost: reconnecting is the caller's
                await take(subscription, 1)
            proxy.restore()
            async with client.subscribe(name) as again:
                await publisher.publish(name, "after")
                assert [m.data for m in await take(again, 1)] == [b"after"]
        finally:
            await client.close()
            await publisher.close()


async def test_closing_ends_an_iteration_in_progress_and_the_client_closes_its_subscriptions(
        redis_url: str) -> None:
    client = RedisClient.from_url(redis_url)
    try:
        subscription = client.subscribe(channel())
        await subscription.start()
        listening = asyncio.create_task(take(subscription, 1))
        await asyncio.sleep(0)
        await subscription.close()
        assert await listening == []
        assert not subscription.connected

        kept = client.subscribe(channel())
        await kept.start()
        assert kept.connected
    finally:
        await client.close()
    assert not kept.connected
    assert await take(kept, 1) == []


async def test_an_idle_subscription_is_pinged_and_stays_up(redis_url: str) -> None:
    client = RedisClient.from_url(redis_url)
    publisher = RedisClient.from_url(redis_url)
    name = channel()
    try:
        async with client.subscribe(name, health_interval=0.05) as subscription:
            await until(lambda: subscription.pings >= 3)
            assert subscription.connected
            await publisher.publish(name, "still here")
            assert [m.data for m in await take(subscription, 1)] == [b"still here"]
    finally:
        await client.close()
        await publisher.close()


async def test_a_server_that_stops_answering_is_given_up_by_the_health_check() -> None:
    """Confirms the subscription, then reads everything and answers nothing (not even PING)."""
    async def silent_after_subscribe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"SUBSCRIBE\r\n")
        await reader.readuntil(b"\r\n")  # the length of the channel
        name = (await reader.readuntil(b"\r\n"))[:-2]
        writer.write(b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (len(name), name))
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent_after_subscribe, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = RedisClient.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        async with client.subscribe("c", health_interval=0.05) as subscription:
            with pytest.raises(TimeoutError, match="PING"):
                await take(subscription, 1)
            assert subscription.pings == 1
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


async def test_a_refused_subscription_raises_the_error_of_redis(redis_url: str) -> None:
    base = redis_url.rsplit("/", 1)[0]
    client = RedisClient.from_url(base.replace("redis://", "redis://:not-the-password@") + "/0")
    try:
        with pytest.raises(RespError, match="AUTH"):
            await client.subscribe(channel()).start()
    finally:
        await client.close()

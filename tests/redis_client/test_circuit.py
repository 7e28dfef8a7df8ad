"""The circuit around Redis: an outage is waited out once, then commands fail at once until a
background probe reaches Redis again. Outages through a TCP proxy in front of the real server."""

from __future__ import annotations

import asyncio

import pytest

from modelgate.redis_client import Circuit, RedisClient, RedisUnavailable
from tests.support import eventually
from tests.tcp_proxy import TcpProxy


def through(proxy: TcpProxy) -> RedisClient:
    return RedisClient(f"redis://127.0.0.1:{proxy.port}/0", timeout=0.3, probe_interval=0.05, max_probe_interval=0.2)


async def test_a_blackholed_redis_is_waited_on_once_then_commands_fail_at_once(redis_url: str) -> None:
    with TcpProxy("127.0.0.1", 6379) as proxy:
        client = through(proxy)
        try:
            assert await client.command("PING") == "PONG"
            proxy.blackhole()
            # Two commands in flight when the answers stop: one wait, shared by both.
            first = await asyncio.gather(client.command("PING"), client.command("PING"), return_exceptions=True)
            assert [type(e) for e in first] == [TimeoutError, TimeoutError]
            assert (client.circuit.state, client.timeouts) == ("open", 1)
            # The probe waits on the black hole, again and again; requests never do.
            for _ in range(3):
                probes = client.circuit.probes
                await eventually(lambda: client.circuit.probes > probes + 1, what="two more probes")  # noqa: B023
                for _ in range(20):
                    with pytest.raises(RedisUnavailable):
                        await client.command("PING")
            assert client.timeouts == 1
            assert client.circuit.failed_fast == 60
            assert proxy.swallowed >= 3  # the probes' connections
            proxy.restore()
            await eventually(lambda: client.circuit.state == "closed", what="the probe reaching Redis again")
            assert await client.command("PING") == "PONG"
            assert (client.timeouts, client.circuit.opened) == (1, 1)
        finally:
            await client.close()


async def test_a_refusing_redis_opens_the_circuit_until_it_is_back(redis_url: str) -> None:
    with TcpProxy("127.0.0.1", 6379) as proxy:
        client = through(proxy)
        try:
            assert await client.command("PING") == "PONG"
            proxy.cut()
            with pytest.raises(ConnectionError) as lost:
                await client.command("PING")
            assert not isinstance(lost.value, RedisUnavailable)  # this one went to Redis
            status = client.status()
            assert status["state"] == "open" and "lost" in status["error"]
            with pytest.raises(RedisUnavailable):
                await client.command("GET", "x")
            proxy.restore()
            await eventually(lambda: client.circuit.state == "closed", what="the probe reaching Redis again")
            assert await client.command("PING") == "PONG"
            assert client.timeouts == 0  # refused and lost connections are never waited on
        finally:
            await client.close()


async def test_subscriptions_and_blocking_commands_fail_at_once_while_it_is_open(redis_url: str) -> None:
    with TcpProxy("127.0.0.1", 6379) as proxy:
        client = through(proxy)
        try:
            proxy.blackhole()
            subscription = client.subscribe("mgtest:circuit")
            with pytest.raises(TimeoutError):  # the subscription found the outage: it opens the circuit
                await subscription.start()
            assert client.circuit.state == "open"
            connections = proxy.swallowed
            with pytest.raises(RedisUnavailable):
                await client.subscribe("mgtest:circuit").start()
            with pytest.raises(RedisUnavailable):
                await client.blpop(["mgtest:circuit:list"], 5)
            with pytest.raises(RedisUnavailable):
                await client.pipeline(["PING"], ["PING"])
            # None of them opened a connection to the black hole (the probe may have, once).
            assert proxy.swallowed <= connections + 1
            proxy.restore()
            await eventually(lambda: client.circuit.state == "closed", what="the probe reaching Redis again")
            async with client.subscribe("mgtest:circuit") as subscribed:
                assert subscribed.connected
        finally:
            await client.close()


async def test_the_probe_backs_off_and_only_it_closes_the_circuit() -> None:
    pauses: list[float] = []
    answers = asyncio.Event()

    async def probe() -> None:
        pauses.append(circuit.interval)
        if len(pauses) < 6:
            raise ConnectionError("refused")
        await answers.wait()

    circuit = Circuit(probe, first_interval=0.01, max_interval=0.04)
    circuit.failed(TimeoutError("no answer"))
    await eventually(lambda: len(pauses) == 6, what="six probes")
    assert pauses == [0.0, 0.01, 0.02, 0.04, 0.04, 0.04]
    circuit.failed(ConnectionError("another failure"))  # while open: no second probe, no reset
    assert (circuit.state, circuit.opened) == ("open", 1)
    assert 0.0 < circuit.retry_after() <= circuit.probe_timeout
    answers.set()
    await eventually(lambda: circuit.state == "closed", what="the answered probe closing the circuit")
    assert circuit.retry_after() == 0.0
    circuit.check()  # closed: nothing raised
    await circuit.close()

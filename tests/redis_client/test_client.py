"""The process's Redis client on the real server: scripts, pipelining, failures."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from redis.asyncio import Redis

from modelgate.redis_client import RedisClient, RespError, Script
from modelgate.redis_client.resp import encode, parse
from tests.support import eventually
from tests.tcp_proxy import TcpProxy

ECHO = "return {ARGV[1], #KEYS}"


@pytest.mark.parametrize(("raw", "reply"), [
    (b"+OK\r\n", "OK"), (b":42\r\n", 42), (b":-7\r\n", -7), (b"$5\r\nhello\r\n", b"hello"), (b"$-1\r\n", None),
    (b"$0\r\n\r\n", b""), (b"*2\r\n:1\r\n$2\r\nab\r\n", [1, b"ab"]), (b"*-1\r\n", None),
    (b"*2\r\n*1\r\n:1\r\n+x\r\n", [[1], "x"]),
])
def test_replies_are_parsed(raw: bytes, reply: object) -> None:
    assert parse(bytearray(raw), 0) == (reply, len(raw))
    for cut in range(len(raw)):  # any prefix is incomplete, not a wrong reply
        assert parse(bytearray(raw[:cut]), 0)[1] == 0


def test_an_error_reply_is_an_exception_value() -> None:
    error, end = parse(bytearray(b"-NOSCRIPT No matching script\r\n"), 0)
    assert isinstance(error, RespError) and str(error) == "NOSCRIPT No matching script" and end == 30


def test_commands_are_encoded_as_bulk_strings() -> None:
    assert encode(["EVALSHA", "ab", 1, "k", 2.5]) == (
        b"*5\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$1\r\nk\r\n$3\r\n2.5\r\n")


async def test_scripts_run_and_are_loaded_when_redis_does_not_know_them(redis_url: str) -> None:
    client = RedisClient(redis_url)
    try:
        fresh = Script(f"return {{ARGV[1], #KEYS, '{secrets.token_hex(8)}'}}")  # unknown to this Redis
        reply = await client.run(fresh, ["a", "b"], ["x"])
        assert reply[:2] == [b"x", 2]
        assert await client.command("PING") == "PONG"
        with pytest.raises(RespError, match="attempt to compare"):
            await client.run(Script("return 1 < 'a'"), [], [])
    finally:
        await client.close()


async def test_concurrent_requests_share_one_connection_and_get_their_own_replies(redis_url: str) -> None:
    client = RedisClient(redis_url)
    try:
        script = Script(ECHO)
        replies = await asyncio.gather(*(client.run(script, ["k"] * (n % 3), [n]) for n in range(300)))
        assert replies == [[str(n).encode(), n % 3] for n in range(300)]
    finally:
        await client.close()


def test_the_client_works_on_uvloop_as_the_gateway_runs_it(redis_url: str) -> None:
    """uvloop's transports are not asyncio's classes; the tests above run on asyncio's loop."""
    import uvloop

    async def scenario() -> list[object]:
        client = RedisClient(redis_url)
        try:
            return list(await asyncio.gather(*(client.run(Script(ECHO), [], [n]) for n in range(50))))
        finally:
            await client.close()

    assert uvloop.run(scenario()) == [[str(n).encode(), 0] for n in range(50)]


async def test_a_cancelled_caller_does_not_unsettle_the_others(redis_url: str) -> None:
    client = RedisClient(redis_url)
    try:
        script = Script(ECHO)
        await client.run(script, [], [0])
        slow = asyncio.create_task(client.run(Script("local t = redis.call('TIME') return 'slow'"), [], []))
        others = [asyncio.create_task(client.run(script, [], [n])) for n in range(1, 20)]
        await asyncio.sleep(0)
        slow.cancel()
        assert [await task for task in others] == [[str(n).encode(), 0] for n in range(1, 20)]
        assert await client.run(script, [], ["after"]) == [b"after", 0]
    finally:
        await client.close()


async def test_the_database_number_and_credentials_of_the_url_are_used(redis_url: str) -> None:
    base = redis_url.rsplit("/", 1)[0]
    client = RedisClient(f"{base}/5")
    key = f"mgtest:{secrets.token_hex(6)}"
    checker = Redis.from_url(f"{base}/5")
    try:
        await client.command("SET", key, "in-5")
        assert await checker.get(key) == b"in-5"
    finally:
        await checker.delete(key)
        await checker.aclose()
        await client.close()
    wrong = RedisClient(base.replace("redis://", "redis://:not-the-password@") + "/0")
    with pytest.raises(RespError, match="AUTH"):
        await wrong.command("PING")
    await wrong.close()


async def test_a_lost_server_fails_fast_and_the_client_reconnects(redis_url: str) -> None:
    with TcpProxy("127.0.0.1", 6379) as proxy:
        # Time enough for any answer through the proxy: a lost server is a ConnectionError at
        # once, never the wait for this timeout.
        client = RedisClient(f"redis://127.0.0.1:{proxy.port}/0", timeout=5)
        try:
            assert await client.command("PING") == "PONG"
            proxy.cut()
            with pytest.raises(ConnectionError):
                await client.command("PING")
            assert client.circuit.state == "open"
            proxy.restore()
            await eventually(lambda: client.circuit.state == "closed", what="the probe reaching Redis again")
            assert await client.command("PING") == "PONG"
        finally:
            await client.close()


async def test_a_server_that_does_not_answer_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads everything, answers nothing
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = RedisClient(f"redis://127.0.0.1:{port}/0", timeout=0.2)
    try:
        with pytest.raises(TimeoutError):
            await client.command("PING")
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


def test_urls_it_cannot_serve_are_refused_with_the_forms_it_can() -> None:
    with pytest.raises(ValueError, match="redis://HOST:PORT/DB"):
        RedisClient("redis+sentinel://host/0")

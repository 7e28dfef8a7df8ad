"""The process's Redis client: commands and Lua scripts pipelined on one connection, pub/sub apart.

Rate limits and budgets send one script run per request. redis-py spends about 80 µs of CPU and
200 µs of wall time on each (its pool, retries and parser layers); the round trip itself is a
tenth of that. This client does only what the gateway needs: ``EVALSHA`` (loading the script on
``NOSCRIPT``) and plain commands, requests from every task written to one connection as they come
and their replies matched in order (RESP replies arrive in request order), a deadline per request
via a timer instead of a task. It speaks RESP2 over ``redis://``, ``rediss://`` and ``unix://``
URLs with a password or ACL user and a database number.

A request that times out closes the connection (a late reply could no longer be matched) and
fails every request waiting on it with ``TimeoutError``; a lost connection fails them with
``ConnectionError``. Either opens the circuit around Redis (``circuit.py``): from then on every
command fails at once with ``RedisUnavailable`` until a background probe reaches Redis again, so
an outage is waited out once, not by every request. A cancelled caller leaves its reply to be
read and dropped, so cancellation never unsettles the connection.

Commands that block in Redis (``BLPOP``) would hold up every request behind them, so each runs on
a connection of its own, kept for the next one. A subscription (``subscribe``) takes a connection
of its own too, as RESP2's subscribe mode does not allow other commands on it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from modelgate.redis_client.circuit import FIRST_INTERVAL_S, MAX_INTERVAL_S, Circuit
from modelgate.redis_client.connection import Address, Connection, reply_within
from modelgate.redis_client.pubsub import HEALTH_INTERVAL_S, Subscription
from modelgate.redis_client.resp import Arg, RespError, encode

DEFAULT_TIMEOUT_S = 0.5  # fail fast: the request path never waits long on Redis
SPARE_CONNECTIONS = 2  # connections for blocking commands kept for the next one


class Script:
    """A Lua script, known to Redis by the SHA-1 of its source."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class RedisClient:
    """``redis://[[user]:password@]host[:port][/db]``, ``rediss://...``, ``unix:///path?db=N``.

    One per process: it owns the connection commands share, the connections blocking commands
    borrow, the subscriptions it handed out and the circuit around Redis; ``close()`` closes them
    all. It connects on first use, and again after a connection is lost.
    """

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT_S, *, probe_interval: float = FIRST_INTERVAL_S,
                 max_probe_interval: float = MAX_INTERVAL_S) -> None:
        self.url = url
        self.address = Address(url)
        self.timeout = timeout
        self.circuit = Circuit(self._probe, first_interval=probe_interval, max_interval=max_probe_interval,
                               probe_timeout=2 * timeout)
        self.timeouts = 0  # connections given up for an answer that did not come in time
        self._connection: Connection | None = None
        self._connecting: asyncio.Task[Connection] | None = None
        self._spare: list[Connection] = []
        self._subscriptions: set[Subscription] = set()

    @classmethod
    def from_url(cls, url: str, timeout: float = DEFAULT_TIMEOUT_S) -> RedisClient:
        """A client for ``url``; nothing connects until the first command."""
        return cls(url, timeout)

    async def _connect(self) -> Connection:
        return await self.address.open(Connection, self.timeout)

    async def connection(self) -> Connection:
        """The shared connection, connected if need be; ``RedisUnavailable`` while the circuit is open."""
        self.circuit.check()
        connection = self._connection
        if connection is not None and not connection.closed:
            return connection
        task = self._connecting
        if task is None:
            # One connect for every request that finds the connection missing.
            task = self._connecting = asyncio.get_running_loop().create_task(self._connect())
            task.add_done_callback(self._connected)
        try:
            return await asyncio.shield(task)
        except OSError as error:  # refused, or no answer in time
            self.circuit.failed(error)
            raise

    def _connected(self, task: asyncio.Task[Connection]) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._connection = task.result()

    def _expire(self, connection: Connection, future: asyncio.Future[Any]) -> None:
        if not future.done() and not connection.closed:
            self.timeouts += 1
            connection.fail(TimeoutError(f"Redis did not answer within {self.timeout}s"))

    async def _await(self, connection: Connection, future: asyncio.Future[Any]) -> Any:
        timer = asyncio.get_running_loop().call_later(self.timeout, self._expire, connection, future)
        try:
            return await future
        except OSError as error:  # timed out, or the connection was lost under it
            self.circuit.failed(error)
            raise
        finally:
            timer.cancel()

    async def command(self, *args: Arg) -> Any:
        """One command; an error reply is raised as ``RespError``."""
        connection = await self.connection()
        reply = await self._await(connection, connection.send(encode(args)))
        if isinstance(reply, RespError):
            raise reply
        return reply

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        """``EVALSHA``; the script is loaded first if this Redis does not know it yet."""
        payload = encode(["EVALSHA", script.sha, len(keys), *keys, *args])
        connection = await self.connection()
        reply = await self._await(connection, connection.send(payload))
        if isinstance(reply, RespError) and str(reply).startswith("NOSCRIPT"):
            await self.command("SCRIPT", "LOAD", script.source)
            connection = await self.connection()
            reply = await self._await(connection, connection.send(payload))
        if isinstance(reply, RespError):
            raise reply
        return reply

    async def pipeline(self, *commands: Sequence[Arg]) -> list[Any]:
        """Several commands in one write, their replies in order (not a transaction: each runs
        on its own). Every reply is read before the first error reply is raised as ``RespError``."""
        connection = await self.connection()
        futures = connection.send_all(b"".join(encode(command) for command in commands), len(commands))
        timer = asyncio.get_running_loop().call_later(self.timeout, self._expire, connection, futures[-1])
        try:
            replies = [await future for future in futures]
        except OSError as error:
            self.circuit.failed(error)
            raise
        finally:
            timer.cancel()
            for future in futures:  # after a failure or a cancellation: no reply left unread
                if not future.done():
                    future.cancel()
                elif not future.cancelled():
                    future.exception()
        for reply in replies:
            if isinstance(reply, RespError):
                raise reply
        return replies

    async def publish(self, channel: str, message: bytes | str) -> int:
        """How many subscribers Redis delivered ``message`` to."""
        return int(await self.command("PUBLISH", channel, message))

    async def hgetall(self, key: str | bytes) -> dict[bytes, bytes]:
        reply = await self.command("HGETALL", key)
        return dict(zip(reply[::2], reply[1::2], strict=True))

    async def scan_iter(self, match: str, count: int = 500) -> AsyncIterator[bytes]:
        """The keys matching ``match`` (SCAN: a key may come twice if the keyspace changes meanwhile)."""
        cursor: bytes = b"0"
        while True:
            cursor, keys = await self.command("SCAN", cursor, "MATCH", match, "COUNT", count)
            for key in keys:
                yield key
            if cursor == b"0":
                return

    async def blpop(self, keys: Sequence[str], wait: float) -> tuple[bytes, bytes] | None:
        """``BLPOP`` for at most ``wait`` seconds (> 0): (key, value), or None if nothing came."""
        reply = await self.blocking(wait, "BLPOP", *keys, f"{max(wait, 0.001):.3f}")
        return None if reply is None else (reply[0], reply[1])

    async def blocking(self, wait: float, *args: Arg) -> Any:
        """A command that may block in Redis for up to ``wait`` seconds, on a connection of its own
        (shared, it would hold up every request behind it); its deadline is ``wait`` + the timeout."""
        self.circuit.check()
        connection = None
        while self._spare and connection is None:
            connection = self._spare.pop()
            if connection.closed:
                connection = None
        try:
            if connection is None:
                connection = await self.address.open(Connection, self.timeout)
            reply = await reply_within(connection, connection.send(encode(args)), wait + self.timeout)
        except BaseException as error:
            # Timed out, lost or cancelled: the command may still be blocking there.
            if connection is not None:
                connection.fail(ConnectionError("a blocking command was given up"))
            if isinstance(error, OSError):
                self.circuit.failed(error)
            raise
        if len(self._spare) < SPARE_CONNECTIONS:
            self._spare.append(connection)
        else:
            _close(connection)
        if isinstance(reply, RespError):
            raise reply
        return reply

    def subscribe(self, *channels: str, health_interval: float = HEALTH_INTERVAL_S) -> Subscription:
        """The messages published on ``channels``, on a connection of its own: ``start()`` it (or
        ``async with``), then iterate. Lost, it raises ``ConnectionError`` and stays lost: the
        caller subscribes again when it sees fit. A connection idle for ``health_interval``
        seconds is sent a PING, so that a silently dead one is noticed."""
        subscription = Subscription(self.address, channels, self.timeout, health_interval,
                                    self._subscriptions.discard, self.circuit)
        self._subscriptions.add(subscription)
        return subscription

    async def _probe(self) -> None:
        """The circuit's probe: a new connection that answers PING becomes the shared one."""
        connection = await self.address.open(Connection, self.timeout)
        try:
            reply = await reply_within(connection, connection.send(encode(["PING"])), self.timeout)
            if isinstance(reply, RespError):  # LOADING: up, but not serving yet
                raise reply
        except BaseException:
            _close(connection)
            raise
        current = self._connection
        if current is None or current.closed:
            self._connection = connection
        else:
            _close(connection)

    def status(self) -> dict[str, Any]:
        """The circuit's state and counters, and how many answers were waited for in vain."""
        return {**self.circuit.status(), "timeouts": self.timeouts}

    async def close(self) -> None:
        await self.circuit.close()
        task = self._connecting
        if task is not None:
            await asyncio.wait([task])  # settles before its connection is closed below
        connection, self._connection = self._connection, None
        if connection is not None:
            _close(connection)
        spare, self._spare = self._spare, []
        for connection in spare:
            _close(connection)
        for subscription in list(self._subscriptions):
            await subscription.close()


def _close(connection: Connection) -> None:
    if connection.transport is not None:
        connection.closed = True
        connection.transport.close()

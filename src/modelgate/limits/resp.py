"""A small Redis client for the request path: Lua scripts, pipelined on one connection.

Rate limits and budgets send one script run per request. redis-py spends about 80 µs of CPU and
200 µs of wall time on each (its pool, retries and parser layers); the round trip itself is a
tenth of that. This client does only what the request path needs: ``EVALSHA`` (loading the
script on ``NOSCRIPT``), requests from every task written to one connection as they come and
their replies matched in order (RESP replies arrive in request order), a deadline per request
via a timer instead of a task. It speaks RESP2 over ``redis://``, ``rediss://`` and ``unix://``
URLs with a password or ACL user and a database number.

A request that times out closes the connection (a late reply could no longer be matched) and
fails every request waiting on it with ``ConnectionError``; the next request connects again.
A cancelled caller leaves its reply to be read and dropped, so cancellation never unsettles the
connection (which redis-py can get wrong when a cancellation lands while it reconnects).
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit


class RespError(Exception):
    """An error reply from Redis (the script failed, NOSCRIPT, a wrong password...)."""


class Script:
    """A Lua script, known to Redis by the SHA-1 of its source."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


def encode(args: Sequence[str | int | float | bytes]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


_INCOMPLETE = object()


def parse(buffer: bytearray, start: int) -> tuple[Any, int]:
    """One reply from ``buffer`` at ``start``: (reply, end), or (_INCOMPLETE, start)."""
    end = buffer.find(b"\r\n", start)
    if end < 0:
        return _INCOMPLETE, start
    kind, line = buffer[start:start + 1], bytes(buffer[start + 1:end])
    after = end + 2
    if kind == b"+":
        return line.decode(), after
    if kind == b"-":
        return RespError(line.decode()), after
    if kind == b":":
        return int(line), after
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, after
        if len(buffer) < after + size + 2:
            return _INCOMPLETE, start
        return bytes(buffer[after:after + size]), after + size + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = parse(buffer, after)
            if item is _INCOMPLETE:
                return _INCOMPLETE, start
            items.append(item)
        return items, after
    raise RespError(f"unexpected reply from Redis: {bytes(buffer[start:end])!r}")


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.buffer = bytearray()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        position = 0
        while self.waiting:
            reply, end = parse(self.buffer, position)
            if reply is _INCOMPLETE:
                break
            position = end
            future = self.waiting.popleft()
            if not future.done():  # a cancelled caller: its reply is read and dropped
                future.set_result(reply)
        if position:
            del self.buffer[:position]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError(f"the connection to Redis was lost ({exc or 'closed'})"))

    def fail(self, error: Exception) -> None:
        self.closed = True
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()

    def send(self, payload: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        assert self.transport is not None
        self.transport.write(payload)
        return future


class LeanRedis:
    """``redis://[[user]:password@]host[:port][/db]``, ``rediss://...``, ``unix:///path?db=N``."""

    def __init__(self, url: str, timeout: float = 0.5) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"redis_url {url!r}: use redis://HOST:PORT/DB, rediss://... or unix:///PATH")
        self._scheme = parts.scheme
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._path = parts.path
        query = parse_qs(parts.query)
        db = query.get("db", [parts.path.lstrip("/") if parts.scheme != "unix" else ""])[0]
        self._db = int(db) if db else 0
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self._connection: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._scheme == "unix":
            _, connection = await asyncio.wait_for(
                loop.create_unix_connection(_Connection, self._path), self.timeout)
        else:
            context = ssl.create_default_context() if self._scheme == "rediss" else None
            _, connection = await asyncio.wait_for(
                loop.create_connection(_Connection, self._host, self._port, ssl=context), self.timeout)
        setup: list[list[str | int | float | bytes]] = []
        if self._password is not None:
            setup.append(["AUTH", self._username, self._password] if self._username else ["AUTH", self._password])
        if self._db:
            setup.append(["SELECT", self._db])
        for command in setup:
            reply = await self._await(connection, connection.send(encode(command)))
            if isinstance(reply, RespError):
                connection.fail(ConnectionError(f"Redis refused {command[0]!r}: {reply}"))
                raise reply
        return connection

    async def connection(self) -> _Connection:
        connection = self._connection
        if connection is not None and not connection.closed:
            return connection
        task = self._connecting
        if task is None:
            # One connect for every request that finds the connection missing.
            task = self._connecting = asyncio.get_running_loop().create_task(self._connect())
            task.add_done_callback(self._connected)
        return await asyncio.shield(task)

    def _connected(self, task: asyncio.Task[_Connection]) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._connection = task.result()

    async def _await(self, connection: _Connection, future: asyncio.Future[Any]) -> Any:
        def expire() -> None:
            if not future.done():
                connection.fail(TimeoutError(f"Redis did not answer within {self.timeout}s"))

        timer = asyncio.get_running_loop().call_later(self.timeout, expire)
        try:
            return await future
        finally:
            timer.cancel()

    async def command(self, *args: str | int | float | bytes) -> Any:
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

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.transport is not None:
            connection.closed = True
            connection.transport.close()

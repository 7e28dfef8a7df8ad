"""A connection to Redis: replies matched to requests in order, and how one is opened from a URL."""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

from modelgate.redis_client.resp import INCOMPLETE, Arg, RespError, encode, parse


class Connection(asyncio.Protocol):
    """Requests written as they come, each reply handed to the oldest request still waiting."""

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
            if reply is INCOMPLETE:
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
        return self.send_all(payload, 1)[0]

    def send_all(self, payload: bytes, count: int) -> list[asyncio.Future[Any]]:
        """``count`` encoded commands in one write; a future for each reply. On a connection the
        peer has closed (and this side not yet noticed) they fail with ``ConnectionError``."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(count)]
        self.waiting.extend(futures)
        transport = self.transport
        try:
            if transport is None or transport.is_closing():
                raise ConnectionError("the connection to Redis was closed")
            transport.write(payload)
        except (ConnectionError, RuntimeError) as error:  # uvloop: RuntimeError on a closed handle
            self.fail(error if isinstance(error, ConnectionError) else ConnectionError(str(error)))
        return futures


C = TypeVar("C", bound=Connection)


class Address:
    """Where and how to connect: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...``,
    ``unix:///path?db=N``."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"redis_url {url!r}: use redis://HOST:PORT/DB, rediss://... or unix:///PATH")
        self.scheme = parts.scheme
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.path = parts.path
        query = parse_qs(parts.query)
        db = query.get("db", [parts.path.lstrip("/") if parts.scheme != "unix" else ""])[0]
        self.db = int(db) if db else 0
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None

    def setup(self) -> list[list[Arg]]:
        """The commands a new connection sends first: AUTH, SELECT."""
        commands: list[list[Arg]] = []
        if self.password is not None:
            commands.append(["AUTH", self.username, self.password] if self.username else ["AUTH", self.password])
        if self.db:
            commands.append(["SELECT", self.db])
        return commands

    async def open(self, factory: Callable[[], C], within: float) -> C:
        """A connected, authenticated connection on the URL's database; each step ``within`` seconds."""
        loop = asyncio.get_running_loop()
        if self.scheme == "unix":
            _, connection = await asyncio.wait_for(loop.create_unix_connection(factory, self.path), within)
        else:
            context = ssl.create_default_context() if self.scheme == "rediss" else None
            _, connection = await asyncio.wait_for(
                loop.create_connection(factory, self.host, self.port, ssl=context), within)
        try:
            for command in self.setup():
                reply = await reply_within(connection, connection.send(encode(command)), within)
                if isinstance(reply, RespError):
                    connection.fail(ConnectionError(f"Redis refused {command[0]!r}: {reply}"))
                    raise reply
        except BaseException:
            connection.fail(ConnectionError("the connection to Redis was given up while it was set up"))
            raise
        return connection


async def reply_within(connection: Connection, future: asyncio.Future[Any], within: float) -> Any:
    """The reply of ``future``; ``within`` seconds past, the connection is closed (a late reply
    could no longer be matched) and every request waiting on it fails."""
    def expire() -> None:
        if not future.done():
            connection.fail(TimeoutError(f"Redis did not answer within {within}s"))

    timer = asyncio.get_running_loop().call_later(within, expire)
    try:
        return await future
    finally:
        timer.cancel()

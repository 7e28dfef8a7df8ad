"""The HTTP/1.1 client that carries every provider request.

Small on purpose: providers only ever POST a body and read the answer whole or as it arrives, so
the client does exactly that, on ``asyncio.Protocol`` with httptools' C parser. A general client
(aiohttp) spent about a fifth of the gateway's CPU per request building and parsing what this one
writes as one pre-joined buffer (docs/performance.md).

- Connections are kept alive and reused per (scheme, host, port); one idle longer than
  ``idle_timeout`` is closed instead of reused, and a reused one that the server closed just
  before the request arrived is replaced once, before any byte of an answer came back.
- ``Timeout.connect`` bounds connecting (TLS included); ``Timeout.read`` bounds the wait for the
  first byte and every later gap between bytes, so a slow stream is fine and a stalled one is not.
- Leaving the ``post`` block before the body was read to its end (an error, a client that went
  away) closes the connection: the upstream sees its request abandoned at once.
- Bodies arrive as sent (``Accept-Encoding: identity``); chunked, sized and close-delimited
  bodies are read alike. The body of an answer is buffered up to ``HIGH_WATER`` bytes before the
  socket stops being read.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import cast
from urllib.parse import urlsplit

import httptools

HIGH_WATER = 1 << 20  # bytes of unread body before reading from the socket pauses
IDLE_TIMEOUT_S = 60.0


class TransportError(Exception):
    """The exchange with the upstream failed below HTTP: see the subclasses."""


class ConnectError(TransportError):
    """The upstream could not be reached (refused, unresolvable, TLS failed, connect timeout)."""

    def __init__(self, message: str, strerror: str | None = None) -> None:
        super().__init__(message)
        self.strerror = strerror or message


class ReadTimeout(TransportError, TimeoutError):
    """No byte came from the upstream within ``Timeout.read``."""


class ProtocolError(TransportError):
    """The upstream closed the connection mid-answer, or sent something that is not HTTP/1.1."""


@dataclass(frozen=True, slots=True)
class Timeout:
    connect: float = 5.0
    read: float | None = 60.0


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int
    target: str  # path and query
    host_header: bytes


class Headers(dict[str, str]):
    """Response headers with lower-case names; repeated ones joined by ", "."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(name.lower(), default)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; reads one answer at a time into a queue of body chunks."""

    def __init__(self, client: HTTPClient, key: tuple[str, str, int]) -> None:
        self.client = client
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.reused = False
        self.in_use = True
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers = Headers()
        self.headers_done = False
        self.keep_alive = False
        self.complete = False
        self.failure: BaseException | None = None
        self.received_any = False
        self.body: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self._name = ""
        self.last_data = 0.0
        self.wait_started = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport, though they are one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.in_use:
            self.abort()  # bytes nobody asked for (a 408 before closing): the connection is spent
            return
        self.received_any = True
        self.last_data = time.monotonic()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ProtocolError(f"the upstream's answer is not valid HTTP/1.1: {error}"))
            self.abort()
            return
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_watch()
        self.client.forget(self)
        if not self.complete and self.failure is None:
            if self.headers_done and self._until_close():
                self.complete = True  # a body delimited by the end of the connection
            else:
                where = "before answering" if not self.headers_done else "in the middle of its answer"
                detail = f": {exc}" if exc else ""
                self.failure = ProtocolError(f"the upstream closed the connection {where}{detail}")
        self._wake()

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        # Asked now: once the message is complete the parser has reset what the answer depends on.
        self.keep_alive = self._parser.should_keep_alive()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self._stop_watch()

    # used by Response

    def _until_close(self) -> bool:
        return "content-length" not in self.headers and "chunked" not in (self.headers.get("transfer-encoding") or "")

    def _fail(self, error: BaseException) -> None:
        if self.failure is None:
            self.failure = error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until more arrives, the answer ends, or it fails (``ReadTimeout`` from the watchdog)."""
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        self.wait_started = time.monotonic()
        try:
            await waiter
        finally:
            self._waiter = None

    def _watch(self, read_timeout: float) -> None:
        """The read timeout: one timer per exchange that re-arms itself (not one per wait, which
        would cost a timer per streamed chunk). Silence counts only while someone waits."""
        self._timer = None
        if self.complete or self.failure is not None or self.closed:
            return
        now = time.monotonic()
        due = read_timeout
        if self._waiter is not None:
            silent_for = now - max(self.last_data, self.wait_started)
            if silent_for >= read_timeout:
                self._fail(ReadTimeout(f"no data from the upstream for {read_timeout:g}s"))
                self._wake()
                return
            due = read_timeout - silent_for
        self._timer = asyncio.get_running_loop().call_later(due, self._watch, read_timeout)

    def _stop_watch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def take(self) -> bytes:
        chunk = b"".join(self.body) if len(self.body) > 1 else self.body.popleft()
        self.body.clear()
        self.buffered = 0
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()
        return chunk

    def send(self, data: bytes, read_timeout: float | None) -> None:
        assert self.transport is not None
        self._reset()
        self.last_data = self.wait_started = time.monotonic()
        self.transport.write(data)
        if read_timeout is not None:
            self._timer = asyncio.get_running_loop().call_later(read_timeout, self._watch, read_timeout)

    def reusable(self) -> bool:
        return self.complete and not self.closed and self.failure is None and self.keep_alive

    def abort(self) -> None:
        self.closed = True
        self._stop_watch()
        if self.transport is not None:
            self.transport.abort()


class Response:
    """An answer whose status and headers have arrived; read its body whole or as it comes."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self.status = connection.status
        self.headers = connection.headers

    @property
    def finished(self) -> bool:
        """The body was read to its end."""
        c = self._connection
        return c.complete and not c.body

    async def read(self) -> bytes:
        parts = [chunk async for chunk in self.iter_chunks()]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as the upstream's bytes arrive (cut anywhere), until its end."""
        c = self._connection
        while True:
            if c.body:
                yield c.take()
                continue
            if c.complete:
                return
            if c.failure is not None:
                raise c.failure
            await c.wait()


class _Exchange:
    """``async with client.post(...) as response``: the connection goes back to the pool only
    when the body was read to its end."""

    def __init__(self, client: HTTPClient, url: str, data: bytes, headers: Mapping[str, str],
                 timeout: Timeout) -> None:
        self._client = client
        self._url = url
        self._data = data
        self._headers = headers
        self._timeout = timeout
        self._connection: _Connection | None = None
        self._response: Response | None = None

    async def __aenter__(self) -> Response:
        client = self._client
        origin = client.origin(self._url)
        request = _request_bytes(origin, self._headers, self._data)
        try:
            return await self._send(client, origin, request)
        except BaseException:
            if self._connection is not None:
                self._connection.abort()  # cancelled or failed before the block began
            raise

    async def _send(self, client: HTTPClient, origin: _Origin, request: bytes) -> Response:
        for _ in range(2):
            connection = await client.acquire(origin, self._timeout.connect)
            self._connection = connection
            connection.send(request, self._timeout.read)
            while not connection.headers_done:
                if connection.failure is not None:
                    break
                await connection.wait()
            if connection.headers_done:
                self._response = Response(connection)
                return self._response
            assert connection.failure is not None
            connection.abort()
            # A kept-alive connection the server had just closed (closed before a byte of an
            # answer, not timed out): once more on a fresh one.
            closed_idle = isinstance(connection.failure, ProtocolError) and not connection.received_any
            if not (connection.reused and closed_idle):
                raise connection.failure
        raise ProtocolError("the upstream closed two connections in a row before answering")

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        connection = self._connection
        if connection is None:
            return
        if exc_type is None and self._response is not None and self._response.finished and connection.reusable():
            self._client.release(connection)
        else:
            connection.abort()


def _request_bytes(origin: _Origin, headers: Mapping[str, str], data: bytes) -> bytes:
    lines = [b"POST ", origin.target.encode("latin-1"), b" HTTP/1.1\r\nHost: ", origin.host_header,
             b"\r\nContent-Length: ", str(len(data)).encode(), b"\r\nAccept-Encoding: identity\r\n"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} holds a line break")
        lines += [name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n"]
    lines += [b"\r\n", data]
    return b"".join(lines)


class HTTPClient:
    """A pool of keep-alive HTTP/1.1 connections for POSTing to upstreams."""

    def __init__(self, idle_timeout: float = IDLE_TIMEOUT_S, ssl_context: ssl.SSLContext | None = None) -> None:
        self.idle_timeout = idle_timeout
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._origins: dict[str, _Origin] = {}
        self._open: set[_Connection] = set()
        self.closed = False

    def post(self, url: str, *, data: bytes, headers: Mapping[str, str], timeout: Timeout) -> _Exchange:
        return _Exchange(self, url, data, headers, timeout)

    def origin(self, url: str) -> _Origin:
        origin = self._origins.get(url)
        if origin is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConnectError(f"cannot call {url!r}: only http:// and https:// URLs with a host are supported")
            default = 443 if parts.scheme == "https" else 80
            port = parts.port or default
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            host = parts.hostname
            shown = f"[{host}]" if ":" in host else host
            host_header = (shown if port == default else f"{shown}:{port}").encode("idna")
            origin = _Origin(parts.scheme, host, port, target, host_header)
            if len(self._origins) < 10_000:  # URLs come from the config: a handful
                self._origins[url] = origin
        return origin

    async def acquire(self, origin: _Origin, connect_timeout: float) -> _Connection:
        if self.closed:
            raise ConnectError("the HTTP client is closed")
        key = (origin.scheme, origin.host, origin.port)
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < self.idle_timeout:
                connection.reused = True
                connection.in_use = True
                return connection
            connection.abort()
        return await self._connect(key, connect_timeout)

    async def _connect(self, key: tuple[str, str, int], connect_timeout: float) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self, key), host, port, ssl=context,
                    server_hostname=host if context is not None else None)
        except TimeoutError:
            raise ConnectError(f"connecting to {host}:{port} took over {connect_timeout:g}s",
                               "connect timeout") from None
        except ssl.SSLError as error:
            raise ConnectError(f"TLS with {host}:{port} failed: {error}", f"TLS failed: {error.reason}") from error
        except OSError as error:
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise ConnectError(f"cannot connect to {host}:{port}: {reason}", reason) from error
        sock = connection.transport.get_extra_info("socket") if connection.transport else None
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._open.add(connection)
        return connection

    def forget(self, connection: _Connection) -> None:
        self._open.discard(connection)

    def release(self, connection: _Connection) -> None:
        if self.closed:
            connection.abort()
            return
        connection.idle_since = time.monotonic()
        connection.in_use = False
        self._idle.setdefault(connection.key, []).append(connection)

    async def close(self) -> None:
        self.closed = True
        for connection in list(self._open):
            if connection.transport is not None and not connection.closed:
                connection.transport.close()
        self._open.clear()
        self._idle.clear()
        await asyncio.sleep(0)

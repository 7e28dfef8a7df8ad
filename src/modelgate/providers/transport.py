"""How providers reach their upstreams: the transport seam, and the HTTP/1.1 client behind it.

A provider hands an ``UpstreamRequest`` to a ``Transport`` and reads the ``Response`` inside the
block that ``Transport.send`` opens, one method, as httpx's transports have. ``HTTPClient`` is
the transport the gateway runs on; ``mock_transport.MockTransport`` answers from a Python function
in process, for unit tests. Failures below HTTP are ``TransportError`` subclasses.

``HTTPClient`` is small on purpose: providers only ever POST a body and read the answer whole or
as it arrives, so the client does exactly that, on ``asyncio.Protocol`` with httptools' C parser.
A general client (aiohttp) spent about a fifth of the gateway's CPU per request building and
parsing what this one writes as one pre-joined buffer (docs/performance.md).

- Connections are kept alive and reused per (scheme, host, port, proxy); one idle longer than
  ``idle_timeout`` is closed instead of reused, and a reused one that the server closed just
  before the request arrived is replaced once, before any byte of an answer came back.
- ``Timeout.connect`` bounds connecting (proxy tunnel and TLS included); ``Timeout.read`` bounds
  the wait for the status line and headers, whole (bytes dribbled one at a time do not extend
  it), and every later gap between bytes, so a slow stream is fine and a stalled one is not;
  ``Timeout.total`` bounds the whole answer from sending the request to the body's last byte
  (``DeadlineExceeded``), so an answer that dribbles or never ends is cut off. A status line and
  headers over ``MAX_HEAD`` bytes are a ``ProtocolError``.
- Leaving the ``send`` block before the body was read to its end (an error, a client that went
  away) closes the connection: the upstream sees its request abandoned at once.
- Bodies arrive as sent (``Accept-Encoding: identity``); chunked, sized and close-delimited
  bodies are read alike. The body of an answer is buffered up to ``HIGH_WATER`` bytes before the
  socket stops being read.
- Egress proxy (``UpstreamRequest.proxy``, an ``http://[user:password@]host:port`` URL): an
  https upstream is reached through an HTTP ``CONNECT`` tunnel, then TLS with the upstream (its
  host name for SNI and the certificate check); an http upstream gets its request from the proxy,
  with the absolute URL in the request line. Credentials in the proxy URL are sent as
  ``Proxy-Authorization: Basic``. A proxy that refuses the tunnel (an answer other than 2xx) is
  a ``ConnectError`` that names the proxy, never its credentials.
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, cast
from urllib.parse import unquote, urlsplit

import httptools

HIGH_WATER = 1 << 20  # bytes of unread body before reading from the socket pauses
IDLE_TIMEOUT_S = 60.0
MAX_PROXY_HEAD = 16 * 1024  # bytes of a proxy's answer to CONNECT
MAX_HEAD = 64 * 1024  # bytes of an answer's status line and headers


class TransportError(Exception):
    """The exchange with the upstream failed below HTTP: see the subclasses."""


class ConnectError(TransportError):
    """The upstream could not be reached (refused, unresolvable, TLS failed, connect timeout, a
    proxy that refused the tunnel)."""

    def __init__(self, message: str, strerror: str | None = None) -> None:
        super().__init__(message)
        self.strerror = strerror or message


class ReadTimeout(TransportError, TimeoutError):
    """No byte came from the upstream within ``Timeout.read``, or its status line and headers
    were not whole within it."""


class DeadlineExceeded(TransportError, TimeoutError):
    """The answer had not ended within ``Timeout.total`` of sending the request."""


class ProtocolError(TransportError):
    """The upstream closed the connection mid-answer, or sent something that is not HTTP/1.1."""


@dataclass(frozen=True, slots=True)
class Timeout:
    """Seconds: ``connect`` to connect; ``read`` to the whole status line and headers, and of
    silence between later bytes; ``total`` from sending the request to the end of the answer."""

    connect: float = 5.0
    read: float | None = 60.0
    total: float | None = None


DEFAULT_TIMEOUT = Timeout()


@dataclass(slots=True)
class UpstreamRequest:
    """One request to an upstream, as a provider hands it to its transport."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    timeout: Timeout = DEFAULT_TIMEOUT
    proxy: str | None = None  # egress proxy URL (http://host:port); None: connect directly


class Headers(dict[str, str]):
    """Response headers with lower-case names; repeated ones joined by ", "."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(name.lower(), default)


class Response(Protocol):
    """An answer whose status and headers have arrived; its body is read whole or as it comes."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Headers: ...

    async def read(self) -> bytes:
        """The rest of the body, to its end."""
        ...

    def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as the upstream's bytes arrive (cut anywhere), until its end."""
        ...


class Transport(Protocol):
    """What carries a provider's requests to its upstream."""

    def send(self, request: UpstreamRequest) -> AbstractAsyncContextManager[Response]:
        """``async with transport.send(request) as response``: the block opens once the status
        and headers arrived. Leaving it before the body was read to its end abandons the exchange.
        Failures below HTTP raise ``TransportError`` (``ReadTimeout`` and ``DeadlineExceeded`` are
        also ``TimeoutError``s); a transport keeps to the request's ``Timeout``, ``total`` included."""
        ...


@dataclass(frozen=True, slots=True)
class _Proxy:
    host: str
    port: int
    shown: str  # the proxy's URL without credentials, for messages
    authorization: bytes | None  # the Proxy-Authorization header line


PoolKey = tuple[str, str, int, str | None]  # scheme, host, port of the upstream; proxy URL


@dataclass(frozen=True, slots=True)
class _Route:
    """How requests to one URL travel: the pool their connection comes from, where it connects
    to, and the fixed parts of the request head."""

    key: PoolKey
    scheme: str
    host: str
    port: int
    proxy: _Proxy | None
    head: bytes  # " <target> HTTP/1.1\r\nHost: <host>\r\nContent-Length: "
    tail: bytes  # "\r\nAccept-Encoding: identity\r\n" and a Proxy-Authorization line


class _Connection(asyncio.Protocol):
    """One keep-alive connection; reads one answer at a time into a queue of body chunks."""

    def __init__(self, client: HTTPClient, key: PoolKey) -> None:
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
        self._read: float | None = None
        self._total: float | None = None
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
        self.sent_at = 0.0
        self.deadline = math.inf  # when the answer must have ended
        self.expired = False  # the deadline passed: buffered bytes are not handed out any more
        self.head_bytes = 0

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
        if not self.headers_done:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD:
                self._fail(ProtocolError(f"the upstream's status line and headers run over {MAX_HEAD} bytes"))
                self.abort()
                self._wake()
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

    def _watch(self) -> None:
        """The timeouts: one timer per exchange that re-arms itself (not one per wait, which
        would cost a timer per streamed chunk). Until the headers are whole, ``read`` counts from
        sending the request; after them, silence counts only while someone waits. The deadline
        counts whatever happens."""
        self._timer = None
        if self.complete or self.failure is not None or self.closed:
            return
        now = time.monotonic()
        due = self.deadline - now
        if due <= 0:
            self.expired = True
            self._fail(DeadlineExceeded(f"the upstream's answer did not end within {self._total:g}s"))
            self._wake()
            return
        read = self._read
        if read is not None:
            if not self.headers_done:
                left = self.sent_at + read - now
                if left <= 0:
                    self._fail(ReadTimeout(f"no status line and headers from the upstream within {read:g}s"
                                           if self.received_any else f"no data from the upstream for {read:g}s"))
                    self._wake()
                    return
                due = min(due, left)
            elif self._waiter is not None:
                silent_for = now - max(self.last_data, self.wait_started)
                if silent_for >= read:
                    self._fail(ReadTimeout(f"no data from the upstream for {read:g}s"))
                    self._wake()
                    return
                due = min(due, read - silent_for)
            else:
                due = min(due, read)
        if due != math.inf:
            self._timer = asyncio.get_running_loop().call_later(due, self._watch)

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

    def send(self, data: bytes, timeout: Timeout) -> None:
        assert self.transport is not None
        self._reset()
        self.last_data = self.wait_started = self.sent_at = now = time.monotonic()
        self._read, self._total = timeout.read, timeout.total
        if timeout.total is not None:
            self.deadline = now + timeout.total
        self.transport.write(data)
        self._watch()

    def reusable(self) -> bool:
        return self.complete and not self.closed and self.failure is None and self.keep_alive

    def abort(self) -> None:
        self.closed = True
        self._stop_watch()
        if self.transport is not None:
            self.transport.abort()


class HTTPResponse:
    """``Response`` of the HTTP client: reads its connection's body queue."""

    __slots__ = ("_connection", "headers", "status")

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
        c = self._connection
        while True:
            if c.body:
                if c.expired:
                    raise cast(BaseException, c.failure)
                yield c.take()
                continue
            if c.complete:
                return
            if c.failure is not None:
                raise c.failure
            await c.wait()


class _Exchange:
    """``async with client.send(request) as response``: the connection goes back to the pool only
    when the body was read to its end."""

    __slots__ = ("_client", "_connection", "_request", "_response")

    def __init__(self, client: HTTPClient, request: UpstreamRequest) -> None:
        self._client = client
        self._request = request
        self._connection: _Connection | None = None
        self._response: HTTPResponse | None = None

    async def __aenter__(self) -> HTTPResponse:
        client = self._client
        request = self._request
        route = client.route(request.url, request.proxy)
        data = _request_bytes(route, request.method, request.headers, request.body)
        try:
            return await self._send(client, route, data)
        except BaseException:
            if self._connection is not None:
                self._connection.abort()  # cancelled or failed before the block began
            raise

    async def _send(self, client: HTTPClient, route: _Route, data: bytes) -> HTTPResponse:
        timeout = self._request.timeout
        for _ in range(2):
            connection = await client.acquire(route, timeout.connect)
            self._connection = connection
            connection.send(data, timeout)
            while not connection.headers_done:
                if connection.failure is not None:
                    break
                await connection.wait()
            if connection.headers_done:
                self._response = HTTPResponse(connection)
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


_METHODS = {"POST": b"POST", "GET": b"GET", "PUT": b"PUT", "DELETE": b"DELETE", "PATCH": b"PATCH"}


def _request_bytes(route: _Route, method: str, headers: Mapping[str, str], data: bytes) -> bytes:
    verb = _METHODS.get(method)
    if verb is None:
        if not method.isascii() or not method.isalpha():
            raise ValueError(f"{method!r} is not an HTTP method")
        verb = method.encode("ascii")
    lines = [verb, route.head, str(len(data)).encode(), route.tail]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} holds a line break")
        lines += [name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n"]
    lines += [b"\r\n", data]
    return b"".join(lines)


def _route(url: str, proxy: _Proxy | None, proxy_url: str | None) -> _Route:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectError(f"cannot call {url!r}: only http:// and https:// URLs with a host are supported")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = (shown if port == default else f"{shown}:{port}").encode("idna")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    tail = b"\r\nAccept-Encoding: identity\r\n"
    if proxy is not None and parts.scheme == "http":
        # The proxy makes the request: it takes the absolute URL, and its own credentials.
        target = f"http://{host_header.decode('ascii')}{target}"
        if proxy.authorization is not None:
            tail += proxy.authorization
    head = b" " + target.encode("latin-1") + b" HTTP/1.1\r\nHost: " + host_header + b"\r\nContent-Length: "
    return _Route((parts.scheme, host, port, proxy_url), parts.scheme, host, port, proxy, head, tail)


def _proxy(url: str) -> _Proxy:
    # "host:port" without a scheme, as HTTPS_PROXY often holds it, is taken as http:// (as curl does).
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port or 80
    except ValueError:
        port = 0
    if parts.scheme != "http" or not parts.hostname or not port:
        raise ConnectError(f"cannot use the proxy {_without_credentials(url)!r}: only http://host:port proxy "
                           "URLs are supported")
    host = parts.hostname
    shown = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    authorization = None
    if parts.username is not None:
        secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = b"Proxy-Authorization: Basic " + base64.b64encode(secret) + b"\r\n"
    return _Proxy(host, port, shown, authorization)


def _without_credentials(url: str) -> str:
    scheme, sep, rest = url.rpartition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"


class _TunnelSetup(asyncio.Protocol):
    """The proxy's answer to CONNECT: its head, read up to the empty line."""

    def __init__(self) -> None:
        self.head = bytearray()
        self.extra = False  # bytes came after the head
        self.answered: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if self.answered.done():
            self.extra = True
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end >= 0:
            self.extra = len(self.head) > end + 4
            self.answered.set_result(bytes(self.head[:end]))
        elif len(self.head) > MAX_PROXY_HEAD:
            self.answered.set_exception(ProtocolError("the answer to CONNECT has no end to its head"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_exception(ProtocolError("the connection closed before the answer to CONNECT"))


def _nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class HTTPClient:
    """The default ``Transport``: a pool of keep-alive HTTP/1.1 connections for POSTing to upstreams."""

    def __init__(self, idle_timeout: float = IDLE_TIMEOUT_S, ssl_context: ssl.SSLContext | None = None) -> None:
        self.idle_timeout = idle_timeout
        self._ssl = ssl_context
        self._idle: dict[PoolKey, list[_Connection]] = {}
        # URLs and proxies come from the config: a handful of each.
        self._routes: dict[str | None, dict[str, _Route]] = {}
        self._proxies: dict[str, _Proxy] = {}
        self._open: set[_Connection] = set()
        self.closed = False

    def send(self, request: UpstreamRequest) -> _Exchange:
        return _Exchange(self, request)

    def route(self, url: str, proxy_url: str | None) -> _Route:
        routes = self._routes.get(proxy_url)
        if routes is not None:
            route = routes.get(url)
            if route is not None:
                return route
        proxy = None
        if proxy_url is not None:
            proxy = self._proxies.get(proxy_url)
            if proxy is None:
                proxy = _proxy(proxy_url)
                if len(self._proxies) < 100:
                    self._proxies[proxy_url] = proxy
        route = _route(url, proxy, proxy_url)
        if routes is None and len(self._routes) < 100:
            routes = self._routes[proxy_url] = {}
        if routes is not None and len(routes) < 10_000:
            routes[url] = route
        return route

    async def acquire(self, route: _Route, connect_timeout: float) -> _Connection:
        if self.closed:
            raise ConnectError("the HTTP client is closed")
        idle = self._idle.get(route.key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < self.idle_timeout:
                connection.reused = True
                connection.in_use = True
                return connection
            connection.abort()
        return await self._connect(route, connect_timeout)

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def _connect(self, route: _Route, connect_timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        proxy = route.proxy
        host, port = route.host, route.port
        try:
            async with asyncio.timeout(connect_timeout):
                if proxy is None:
                    context = self._context() if route.scheme == "https" else None
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self, route.key), host, port, ssl=context,
                        server_hostname=host if context is not None else None)
                elif route.scheme == "https":
                    connection = await self._tunnel(route, proxy)
                else:
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self, route.key), proxy.host, proxy.port)
        except TimeoutError:
            through = f" through the proxy {proxy.shown}" if proxy is not None else ""
            raise ConnectError(f"connecting to {host}:{port}{through} took over {connect_timeout:g}s",
                               "connect timeout") from None
        except ssl.SSLError as error:
            raise ConnectError(f"TLS with {host}:{port} failed: {error}", f"TLS failed: {error.reason}") from error
        except OSError as error:
            reason = os.strerror(error.errno) if error.errno else str(error)
            if proxy is None:
                raise ConnectError(f"cannot connect to {host}:{port}: {reason}", reason) from error
            raise ConnectError(f"cannot connect to the proxy {proxy.shown}: {reason}",
                               f"{reason} (proxy {proxy.shown})") from error
        if connection.transport is not None:
            _nodelay(connection.transport)
        self._open.add(connection)
        return connection

    async def _tunnel(self, route: _Route, proxy: _Proxy) -> _Connection:
        """A connection to an https upstream through ``proxy``: CONNECT, then TLS inside."""
        loop = asyncio.get_running_loop()
        raw, setup = await loop.create_connection(_TunnelSetup, proxy.host, proxy.port)
        try:
            _nodelay(raw)
            host = route.host
            authority = (f"[{host}]" if ":" in host else host).encode("idna") + b":%d" % route.port
            raw.write(b"CONNECT " + authority + b" HTTP/1.1\r\nHost: " + authority + b"\r\n"
                      + (proxy.authorization or b"") + b"\r\n")
            try:
                head = await setup.answered
            except ProtocolError as error:
                raise ConnectError(f"the proxy {proxy.shown} did not answer CONNECT: {error}",
                                   f"the proxy {proxy.shown} did not answer CONNECT") from None
            status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            version, _, rest = status_line.partition(" ")
            code = rest[:3]
            if not version.startswith("HTTP/") or not code.isdigit():
                raise ConnectError(f"the proxy {proxy.shown} answered CONNECT with {status_line[:100]!r}",
                                   f"the proxy {proxy.shown} does not speak HTTP")
            if not code.startswith("2"):
                refusal = rest.strip()[:100]
                raise ConnectError(
                    f"the proxy {proxy.shown} refused the tunnel to {host}:{route.port}: {refusal}",
                    f"the proxy {proxy.shown} refused the tunnel: {refusal}")
            if setup.extra:
                raise ConnectError(f"the proxy {proxy.shown} sent bytes after its answer to CONNECT",
                                   f"the proxy {proxy.shown} broke the tunnel")
            connection = _Connection(self, route.key)
            try:
                tls = await loop.start_tls(raw, connection, self._context(), server_hostname=host)
            except ssl.SSLError:
                raise
            except OSError as error:
                reason = os.strerror(error.errno) if error.errno else str(error)
                raise ConnectError(f"TLS with {host}:{route.port} through the proxy {proxy.shown} failed: "
                                   f"{reason}", f"TLS failed: {reason} (proxy {proxy.shown})") from error
            if tls is None:
                raise ConnectError(f"TLS with {host}:{route.port} through the proxy {proxy.shown} failed",
                                   f"TLS failed (proxy {proxy.shown})")
            connection.connection_made(tls)
            return connection
        except BaseException:
            raw.abort()
            raise

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


class PoolTimeout(TransportError, TimeoutError):
    """Every connection a provider may hold stayed in use for as long as the request may wait."""


class ConnectionCap:
    """A ``Transport`` that lets one provider hold at most ``limit`` upstream exchanges (so
    connections) at once. Further requests queue in arrival order, each for at most its
    ``timeout.read`` (the deployment's ``timeout``), then fail with ``PoolTimeout``."""

    def __init__(self, transport: Transport, limit: int) -> None:
        self.transport = transport
        self.limit = limit
        self.active = 0  # exchanges holding a slot
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    def send(self, request: UpstreamRequest) -> _CappedExchange:
        return _CappedExchange(self, request)

    async def acquire(self, wait: float | None) -> None:
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(wait):
                await waiter
        except BaseException as error:
            if waiter.done() and not waiter.cancelled():
                self.release()  # a slot came just as the wait ended: pass it on
            else:
                waiter.cancel()
                if waiter in self._waiters:  # release() may have passed it over already
                    self._waiters.remove(waiter)
            if isinstance(error, TimeoutError):
                raise PoolTimeout(f"all {self.limit} connections (max_connections) stayed in use for "
                                  f"{wait:g}s") from None
            raise

    def release(self) -> None:
        """Hand the slot to the first request still waiting, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.active -= 1


class _CappedExchange:
    __slots__ = ("_cap", "_inner", "_request")

    def __init__(self, cap: ConnectionCap, request: UpstreamRequest) -> None:
        self._cap = cap
        self._request = request
        self._inner: AbstractAsyncContextManager[Response] | None = None

    async def __aenter__(self) -> Response:
        cap = self._cap
        await cap.acquire(self._request.timeout.read)
        try:
            inner = cap.transport.send(self._request)
            response = await inner.__aenter__()
        except BaseException:
            cap.release()
            raise
        self._inner = inner
        return response

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        assert self._inner is not None
        try:
            return await self._inner.__aexit__(exc_type, exc, tb)
        finally:
            self._cap.release()

"""A transport that answers from a Python function in process, for unit tests of providers.

    def handler(request: UpstreamRequest) -> MockResponse:
        return MockResponse(429, {"retry-after": "7"}, json={"error": {"message": "slow down"}})

    provider = create_provider(settings, MockTransport(handler))

The handler (a function or a coroutine function) gets each ``UpstreamRequest`` and returns a
``MockResponse``, or raises a ``TransportError`` (``ConnectError``, ``ReadTimeout``,
``ProtocolError``) as the HTTP client would. A body is given whole (bytes) or in parts: an
iterable of chunks, where an exception instance in place of a chunk is raised when the reader
reaches it (a stream cut short), or an async iterable. ``MockTransport.requests`` keeps every
request sent, and each response says whether it was read to its end (``finished``) and whether
its exchange is over (``closed``). The request's ``Timeout.total`` holds as the HTTP client keeps
it: a chunk that comes after it raises ``DeadlineExceeded`` instead.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import orjson

from modelgate.providers.transport import DeadlineExceeded, Headers, UpstreamRequest

Body = bytes | Iterable[bytes | BaseException] | AsyncIterable[bytes]
MockHandler = Callable[[UpstreamRequest], "MockResponse | Awaitable[MockResponse]"]


class MockResponse:
    """An answer of a ``MockTransport`` handler; it is the ``Response`` its exchange yields."""

    def __init__(self, status: int = 200, headers: Mapping[str, str] | None = None, body: Body = b"", *,
                 json: Any = None) -> None:
        self.status = status
        self.headers = Headers({name.lower(): value for name, value in (headers or {}).items()})
        if json is not None:
            body = orjson.dumps(json)
            self.headers.setdefault("content-type", "application/json")
        self._body = body
        self.started = False  # a reader asked for the body
        self.finished = False  # the body was read to its end
        self.closed = False  # the exchange's block was left
        self.deadline = math.inf  # monotonic time by which the body must have ended
        self.total: float | None = None

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_chunks()])

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        if self.started:
            raise RuntimeError("the body of a MockResponse is read once")
        self.started = True
        body = self._body
        if isinstance(body, bytes):
            if body:
                self._in_time()
                yield body
        elif isinstance(body, AsyncIterable):
            async for chunk in body:
                self._in_time()
                yield chunk
        else:
            for part in body:
                if isinstance(part, BaseException):
                    raise part
                self._in_time()
                yield part
        self.finished = True

    def _in_time(self) -> None:
        if time.monotonic() >= self.deadline:
            raise DeadlineExceeded(f"the upstream's answer did not end within {self.total:g}s")


class _MockExchange:
    def __init__(self, transport: MockTransport, request: UpstreamRequest) -> None:
        self._transport = transport
        self._request = request
        self._response: MockResponse | None = None

    async def __aenter__(self) -> MockResponse:
        self._transport.requests.append(self._request)
        sent_at = time.monotonic()
        answer = self._transport.handler(self._request)
        response = await answer if inspect.isawaitable(answer) else answer
        total = self._request.timeout.total
        if total is not None:
            response.total = total
            response.deadline = sent_at + total
        self._response = response
        return response

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._response is not None:
            self._response.closed = True


class MockTransport:
    """A ``Transport`` whose upstream is ``handler``; see the module docstring."""

    def __init__(self, handler: MockHandler) -> None:
        self.handler = handler
        self.requests: list[UpstreamRequest] = []

    def send(self, request: UpstreamRequest) -> _MockExchange:
        return _MockExchange(self, request)

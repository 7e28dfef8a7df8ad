"""uvicorn's httptools protocol, with bounded request heads, read deadlines, and the writes of one
event-loop turn sent as one.

Limits (``server:`` in the config, config/server.py): a request's line and headers are counted
as they arrive, before the parser has buffered them, so a head over ``max_header_bytes`` is
refused with 431 after at most one read past the limit, never buffered whole; more than
``max_headers`` fields or one longer than ``max_line_bytes`` is a 431 too, a longer request
target a 414. A connection must complete its request's headers within ``header_timeout`` seconds
of opening (or of the request's first byte, on a kept-alive connection) and may not pause a
request body for ``body_timeout`` seconds: then the answer is 408, or the connection is simply
closed if nothing of a request came. Between requests, uvicorn's own keep-alive timer applies.

A refusal ends the connection: the answer is sent, the sending side shut, and what the client
still sends is read and dropped until it closes (at most ``LINGER_S``), so that it gets to read
the answer instead of a reset.

uvicorn writes a response's status line and headers as soon as the app starts the response, and
the body when it comes: two system calls and two TCP segments for every non-streamed answer,
which the client then reads twice. Gathering the writes made in one turn of the event loop and
sending them together at its end costs one ``call_soon`` and saves the second send; a streamed
chunk still leaves in the turn it was written, so nothing is held back.
"""

from __future__ import annotations

import asyncio
import logging
from asyncio import TimerHandle
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from modelgate.config.server import ServerSettings

log = logging.getLogger("modelgate.server")

LINGER_S = 2.0  # how long a refused connection goes on reading, so that the client sees the answer


class _GatheredWrites:
    """A transport that sends what was written during one loop turn in one write at its end."""

    __slots__ = ("_eof", "_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._eof = False

    def write(self, data: bytes) -> None:
        if self._eof:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def write_eof(self) -> None:
        """Send what waits, then shut the sending side; later writes are dropped."""
        self._flush()
        self._eof = True
        if not self._transport.is_closing():
            self._transport.write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        # Everything else (is_closing, pause_reading, get_extra_info, ...) is the transport's own.
        return getattr(self._transport, name)


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request that is refused."""


class HTTPProtocol(HttpToolsProtocol):
    """``limits``: the ``server:`` settings; ``serve.py`` passes a subclass that carries them.

    The checks cost next to nothing per request: bytes are counted per read, the fields are only
    walked when the head's reads came to more than the smallest limit, and one timer per
    connection, armed once, wakes at most every ``header_timeout`` seconds to look at the clock.
    """

    limits: ClassVar[ServerSettings] = ServerSettings()

    @classmethod
    def with_limits(cls, limits: ServerSettings) -> type[HTTPProtocol]:
        return type("HTTPProtocol", (cls,), {"limits": limits})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True  # from the connection's start or a request's end to the next headers' end
        self._head_bytes = 0  # bytes received while reading the head: counted before the parser sees them
        self._head_uncounted = False  # whether the head began inside a read, uncounted until the next
        # When the head being read began (its first byte, or the connection's start); None between requests.
        self._head_started: float | None = None
        self._last_read = 0.0
        self._refusal: tuple[int, str] | None = None
        self._timer: TimerHandle | None = None
        self._lingering = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_GatheredWrites(transport, self.loop))  # type: ignore[arg-type]
        self._head_started = self.loop.time()
        self._timer = self.loop.call_later(self.limits.header_timeout, self._deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        self._unset_keepalive_if_required()
        self._last_read = now = self.loop.time()
        if self._reading_head:
            if self._head_started is None:
                self._head_started = now
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._refusal is None:
                log.warning("Invalid HTTP request received.")
                self._refuse(400, "Invalid HTTP request received.")
            else:
                self._refuse(*self._refusal)
            return
        if self._reading_head:
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(431, f"The request's headers are over {self.limits.max_header_bytes} bytes; "
                                  "send fewer or shorter headers.")
            elif self._head_bytes == 0 and self.cycle is not None and self.scope is not self.cycle.scope:
                # A pipelined request began inside this read: its bytes so far are not counted.
                self._head_uncounted = True
                self._head_started = now

    # Parser callbacks

    def on_headers_complete(self) -> None:
        limits = self.limits
        # Where the reads of the head (and maybe of a body after it) are within every limit, and the
        # head began with a read (not inside one, after a pipelined request), there is nothing to walk.
        head_bytes = self._head_bytes
        if (head_bytes > limits.max_line_bytes or head_bytes == 0 or self._head_uncounted
                or len(self.headers) > limits.max_headers):
            self._check_head(limits)
        self._reading_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True
        self._head_bytes = 0
        self._head_uncounted = False
        self._head_started = None

    def _check_head(self, limits: ServerSettings) -> None:
        if len(self.url) > limits.max_line_bytes:
            self._stop(414, f"The request target is over {limits.max_line_bytes} bytes; send a shorter URL.")
        if len(self.headers) > limits.max_headers:
            self._stop(431, f"The request has more than {limits.max_headers} header fields; send fewer headers.")
        total = len(self.url)
        for name, value in self.headers:
            size = len(name) + len(value)
            if size > limits.max_line_bytes:
                self._stop(431, f"The request's header {name[:64].decode('latin-1')!r} is over "
                                f"{limits.max_line_bytes} bytes; send a shorter value.")
            total += size + 4  # ": " and CRLF
        if total > limits.max_header_bytes:
            self._stop(431, f"The request's headers are over {limits.max_header_bytes} bytes; "
                            "send fewer or shorter headers.")

    # Deadlines and refusals

    def _deadline(self) -> None:
        self._timer = None
        if self._lingering or self.transport.is_closing():
            return
        limits, now = self.limits, self.loop.time()
        if self._reading_head:
            started = self._head_started
            if started is None or now - started < limits.header_timeout:
                # Between requests (uvicorn's keep-alive timer applies), or not late yet.
                wait = limits.header_timeout - (0 if started is None else now - started)
                self._timer = self.loop.call_later(wait, self._deadline)
            elif self._head_bytes == 0 and not self._head_uncounted:  # a connection that never sent anything
                self.transport.close()
            else:
                self._refuse(408, f"The request's headers did not arrive within {limits.header_timeout:g} s.")
            return
        idle = now - self._last_read
        if self.flow.read_paused or idle < limits.body_timeout:  # paused: the app is not reading yet
            wait = limits.body_timeout - (0 if self.flow.read_paused else idle)
            self._timer = self.loop.call_later(wait, self._deadline)
            return
        self._refuse(408, f"The request body paused for more than {limits.body_timeout:g} s.")

    def _stop(self, status: int, message: str) -> None:
        self._refusal = (status, message)
        raise _Refused(message)

    def _refuse(self, status: int, message: str) -> None:
        """End the connection with ``status`` and ``message``, after the responses still owed to the
        requests before the refused one; where no answer can be placed (the refused request's own
        response has started), the connection just closes."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._lingering = True  # nothing more is parsed
        log.info("refused a request from %s with %d: %s", self.client, status, message)
        cycle = self.cycle
        if self._reading_head:  # a new request: the ones before it are answered first
            if cycle is None or cycle.response_complete:
                self._answer(status, message)
            else:
                self.flow.pause_reading()
                cycle.on_response = lambda: self._answer(status, message)  # the last one before it
            return
        # The refused request is the cycle's own: its app sees the client gone (its sends are
        # dropped, its receive returns a disconnect).
        if not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        if cycle.response_started or self.pipeline:  # no place in the stream for an answer
            self.transport.close()
        else:
            self._answer(status, message)

    def _answer(self, status: int, message: str) -> None:
        """Send the refusal, shut the sending side, and read (and drop) what the client still sends
        until it closes, for at most ``LINGER_S``."""
        body = orjson.dumps({"type": "error", "error": {
            "message": message, "type": "invalid_request_error", "code": _CODES[status]}})
        self.transport.write(b"".join([
            STATUS_LINE[status], b"content-type: application/json\r\ncontent-length: ",
            str(len(body)).encode(), b"\r\nconnection: close\r\n\r\n", body]))
        self.transport.write_eof()
        self._timer = self.loop.call_later(LINGER_S, self.transport.close)
        self.flow.resume_reading()


_CODES = {400: "invalid_http", 408: "request_timeout", 414: "uri_too_long",
          431: "request_header_fields_too_large"}

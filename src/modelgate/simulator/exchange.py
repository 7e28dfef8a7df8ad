"""The request pipeline shared by every API: auth, body parsing, fault lookup, pacing and sending.

A handler receives an :class:`Exchange`, calls :meth:`Exchange.bind_model` once it knows the model (this counts
the request, resolves the fault and may raise or hang for ``status``/``timeout``/``echo_key`` faults), then replies
with :meth:`Exchange.send_json` or :meth:`Exchange.send_stream`, which apply latency and the faults of the answer
itself (``cut``, ``malformed``, ``error_after``, ``dribble``, ``dribble_body``, ``endless``, ``echo_key=K``,
``model``). Errors are raised as :class:`SimError` and rendered by the surface.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from aiohttp import web

from modelgate.simulator.config import ModelSpec
from modelgate.simulator.faults import Fault, FaultSpecError, parse_fault
from modelgate.simulator.state import SimState
from modelgate.simulator.surface import SimError, Surface

_DEFAULT_MESSAGES: dict[int, str] = {
    429: "Rate limit reached (simulated).",
    500: "The server had an error while processing your request (simulated).",
    503: "The server is overloaded or not ready yet (simulated).",
    529: "Overloaded",
}


Handler = Callable[["Exchange", dict[str, Any]], Awaitable[web.StreamResponse]]

_AUTH_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key")


class Exchange:
    """One request/response pair travelling through the simulator."""

    def __init__(self, state: SimState, surface: Surface, request: web.Request) -> None:
        self.state = state
        self.surface = surface
        self.request = request
        self.request_id = surface.new_request_id()
        self.model = ""
        self.spec: ModelSpec = state.config.defaults
        self.fault: Fault | None = None
        self.body: dict[str, Any] = {}

    # -- request side -------------------------------------------------------------------------------------

    def check_auth(self) -> None:
        key = self.surface.api_key(self.request)
        expected = self.state.config.api_key
        if not key or (expected is not None and key != expected):
            raise self.surface.auth_error(key or None)

    async def read_json(self) -> dict[str, Any]:
        raw = await self.request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError as exc:
            raise SimError(400, f"The request body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(body, dict):
            raise SimError(400, "The request body must be a JSON object.", code="invalid_json")
        return body

    async def bind_model(self, model: str) -> None:
        """Record the request for ``model`` and act on its fault; ``status`` raises, ``timeout`` hangs."""
        self.model = model
        self.spec = self.state.config.model(model)
        self.state.stats.by_model[model] += 1
        self.state.stats.by_api[self.surface.name] += 1
        self.fault = self._resolve_fault()
        if self.fault is None:
            return
        self.state.stats.faults[self.fault.spec] += 1
        if self.fault.kind == "status":
            raise _status_error(self.fault)
        if self.fault.kind == "echo":
            raise _echo_error(self.fault, self.body)
        if self.fault.kind == "echo_key" and not self.fault.mid_stream:
            raise self._echo_error()
        if self.fault.kind == "timeout":
            await self._hang(self.fault.seconds)

    def _resolve_fault(self) -> Fault | None:
        header = self.request.headers.get("x-sim-fault")
        if header:
            try:
                return parse_fault(header)
            except FaultSpecError as exc:
                raise SimError(400, f"x-sim-fault: {exc}", code="invalid_fault") from None
        runtime = self.state.faults.take(self.model)
        if runtime is not None:
            return runtime
        if self.spec.fault:
            return parse_fault(self.spec.fault)
        return None

    async def _hang(self, seconds: float) -> None:
        # Wait without answering; the simulator stopping (or the client leaving, which cancels this handler)
        # ends the wait early. Then drop the connection, as an upstream that never answered would.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.state.stopping.wait(), seconds)
        self._abort()
        raise _Aborted

    def _echo_message(self) -> str:
        """What a careless upstream says about a key it refuses: the key, and the headers that carried it."""
        headers = self.request.headers
        carried = "; ".join(f"{name}: {headers[name]}" for name in _AUTH_HEADERS if name in headers)
        return (f"Incorrect API key provided: {self.surface.api_key(self.request) or ''}. "
                f"The request carried {carried or 'no auth header'}.")

    def _echo_error(self) -> SimError:
        return SimError(401, self._echo_message(), code="invalid_api_key")

    @property
    def safety(self) -> bool:
        return self.fault is not None and self.fault.kind == "safety"

    def _pacing(self, header: str, configured: int) -> float:
        value = self.request.headers.get(header)
        if value is None:
            return configured / 1000
        try:
            return max(0.0, float(value)) / 1000
        except ValueError:
            raise SimError(400, f"{header} must be a number of milliseconds, got {value!r}") from None

    # -- response side ------------------------------------------------------------------------------------

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {
            self.surface.request_id_header: self.request_id,
            **self.surface.extra_headers(self.request_id),
            **(extra or {}),
        }

    def error_response(self, error: SimError) -> web.Response:
        body = orjson.dumps(self.surface.error_body(error, self.request_id))
        return web.Response(
            status=error.status,
            body=body,
            content_type="application/json",
            headers=self.headers(error.headers),
        )

    async def send_json(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.StreamResponse:
        """A 200 JSON reply after the model's latency, with the ``cut``/``malformed`` faults applied."""
        await asyncio.sleep(self._pacing("x-sim-latency-ms", self.spec.latency_ms))
        fault = self.fault
        if fault is not None and fault.kind == "model":
            _name_model(body, fault.model)
        payload = orjson.dumps(body)
        if fault is not None and fault.kind == "error_after":
            raise _status_error(fault)
        if fault is not None and fault.kind == "echo_key":
            raise self._echo_error()
        if fault is not None and fault.kind == "malformed":
            payload = b'{"id": "truncated", "choices": [' + payload[: len(payload) // 3]
        if fault is not None and fault.kind in ("dribble", "dribble_body"):
            await self._dribble(fault, {**self.headers(headers), "content-type": "application/json",
                                        "content-length": str(len(payload))}, payload)
        response = web.StreamResponse(status=200, headers=self.headers(headers))
        response.content_type = "application/json"
        if fault is not None and fault.kind == "endless":
            await response.prepare(self.request)
            await response.write(b'{"id": "endless", "choices": [')
            await self._forever(response, b" ", fault.gap_ms / 1000)
        response.content_length = len(payload)
        await response.prepare(self.request)
        if fault is not None and fault.kind == "cut":
            await response.write(payload[: len(payload) // 2])
            self._abort()
            raise _Aborted
        await response.write(payload)
        await response.write_eof()
        return response

    async def send_stream(self, frames: Sequence[bytes], headers: dict[str, str] | None = None) -> web.StreamResponse:
        """An SSE reply, paced by ttft/chunk delays, with ``cut``/``malformed``/``error_after`` applied."""
        ttft = self._pacing("x-sim-ttft-ms", self.spec.ttft_ms)
        gap = self._pacing("x-sim-chunk-ms", self.spec.chunk_ms)
        fault = self.fault
        outgoing = list(frames)
        if fault is not None and fault.kind == "model":
            outgoing = [_frame_naming(frame, fault.model) for frame in outgoing]
        head = self.headers({"cache-control": "no-cache", "content-type": "text/event-stream", **(headers or {})})
        if fault is not None and fault.kind in ("dribble", "dribble_body"):
            await self._dribble(fault, head, b"".join(outgoing))
        response = web.StreamResponse(status=200, headers=head)
        await response.prepare(self.request)
        if fault is not None and fault.kind == "malformed":
            outgoing.insert(0, self.surface.malformed_frame())
        await asyncio.sleep(ttft)
        if fault is not None and fault.kind == "endless":
            first = next((i for i, frame in enumerate(outgoing) if self.surface.carries_content(_frame_data(frame))), 0)
            for frame in outgoing[:first]:
                await response.write(frame)
            await self._forever(response, outgoing[first], fault.gap_ms / 1000)
        # A count past the end still breaks the stream: just before its last frame (the terminator, if any).
        break_at = min(fault.after, len(outgoing) - 1) if fault is not None and fault.mid_stream else -1
        for sent, frame in enumerate(outgoing):
            if fault is not None and sent == break_at:
                if fault.kind == "cut":
                    self._abort()
                    raise _Aborted
                message = self._echo_message() if fault.kind == "echo_key" else None
                await response.write(self.surface.stream_error_frame_at(self.request_id, message, sent))
                break
            if sent:
                await asyncio.sleep(gap)
            await response.write(frame)
        await response.write_eof()
        return response

    async def _dribble(self, fault: Fault, headers: dict[str, str], body: bytes) -> None:
        """Send a 200 answer by hand, a byte at a time (``dribble``: from the status line on;
        ``dribble_body``: the body only), then close the connection."""
        gap = fault.gap_ms / 1000
        lines = "".join(f"{name}: {value}\r\n" for name, value in {**headers, "connection": "close"}.items())
        head = f"HTTP/1.1 200 OK\r\n{lines}\r\n".encode("latin-1")
        await self._trickle(head, gap if fault.kind == "dribble" else 0.0)
        await self._trickle(body, gap)
        transport = self.request.transport
        if transport is not None:
            transport.close()
        raise _Aborted

    async def _trickle(self, data: bytes, gap: float) -> None:
        transport = self.request.transport
        step = 1 if gap > 0 else max(len(data), 1)
        for start in range(0, len(data), step):
            if transport is None or transport.is_closing() or self.state.stopping.is_set():
                self._abort()
                raise _Aborted
            transport.write(data[start:start + step])
            if gap > 0:
                await asyncio.sleep(gap)

    async def _forever(self, response: web.StreamResponse, piece: bytes, gap: float) -> None:
        """Write ``piece`` every ``gap`` seconds until the client goes away (which cancels this
        handler) or the simulator stops; then drop the connection: the answer never ends."""
        while not self.state.stopping.is_set():
            await response.write(piece)
            await asyncio.sleep(gap)
        self._abort()
        raise _Aborted

    def _abort(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()


class _Aborted(Exception):
    """The connection was dropped on purpose; there is nothing left to send."""


def _retry_after(value: str) -> str:
    """A Retry-After as the fault spec wrote it; ``date+S`` / ``date-S``: the HTTP date S seconds from now."""
    if value.startswith(("date+", "date-")):
        try:
            offset = float(value[4:])
        except ValueError:
            return value
        return email.utils.formatdate(time.time() + offset, usegmt=True)
    return value


def _frame_data(frame: bytes) -> Any:
    """The JSON of an SSE frame's ``data:`` line; None where there is none."""
    start = frame.find(b"data: ")
    if start < 0:
        return None
    try:
        return orjson.loads(frame[start + 6 :])
    except orjson.JSONDecodeError:
        return None


def _name_model(body: Any, model: object) -> bool:
    """Put ``model`` where ``body`` (an answer, or an event of a stream) names its model."""
    if not isinstance(body, dict):
        return False
    named = False
    for key in ("model", "modelVersion"):
        if key in body:
            body[key] = model
            named = True
    for key in ("message", "response"):  # Anthropic's message_start, the Responses API's response.* events
        inner = body.get(key)
        if isinstance(inner, dict) and "model" in inner:
            inner["model"] = model
            named = True
    return named


def _frame_naming(frame: bytes, model: object) -> bytes:
    """``frame`` with ``model`` put where its data names the model."""
    data = _frame_data(frame)
    if not _name_model(data, model):
        return frame
    start = frame.find(b"data: ") + 6
    ending = frame[len(frame.rstrip(b"\r\n")) :]
    return frame[:start] + orjson.dumps(data) + ending


def _status_error(fault: Fault) -> SimError:
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        headers["retry-after"] = _retry_after(fault.retry_after)
    if fault.retry_after_ms is not None:
        headers["retry-after-ms"] = fault.retry_after_ms
    return SimError(
        fault.status, fault.message or _DEFAULT_MESSAGES.get(fault.status, "Simulated error."), headers=headers
    )


def _echo_error(fault: Fault, body: dict[str, Any]) -> SimError:
    field = fault.field or ""
    value = body.get(field)
    quoted = value if isinstance(value, str) else orjson.dumps(value).decode()
    return SimError(400, f"Invalid value for '{field}': '{quoted}'.", param=field, code="invalid_value")


def endpoint(
    state: SimState, surface: Surface, handler: Handler
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap ``handler`` into an aiohttp route handler running the shared pipeline."""

    async def route(request: web.Request) -> web.StreamResponse:
        exchange = Exchange(state, surface, request)
        try:
            exchange.check_auth()
            body = exchange.body = await exchange.read_json() if request.method == "POST" else {}
            return await handler(exchange, body)
        except SimError as error:
            return exchange.error_response(error)
        except _Aborted:
            # The transport is gone; aiohttp ignores a response for a closed connection.
            return web.Response(status=499)

    return route

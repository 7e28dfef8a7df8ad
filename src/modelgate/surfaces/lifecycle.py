"""One request lifecycle for every surface that runs a model call.

authenticate → parse → deployment → ``Call`` → the chain → a stream or a folded answer. Reasoning
state that the gateway sealed for a client and the client sent back in a chat request's history is
opened before the chain runs (``reasoning_state.py``). For a ``StatefulOperation``
(``serve_stateful_call``, which opens its own sealed items) the request is completed from stored
state before the chain runs, and the answer is kept before its last bytes go out. Errors before the
first byte of the response are raised, for the application to render in the surface's format; a
stream that fails after it started ends with the format's error frame. A client that goes away
cancels the call, and with it the upstream request.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import TypeVar
from urllib.parse import quote

from opentelemetry.trace import Span

from modelgate.http.asgi import Receive, Send
from modelgate.http.request import DisconnectWatch, HTTPRequest
from modelgate.http.response import respond, start_stream
from modelgate.pipeline.contract import Call
from modelgate.schema.errors import GatewayError
from modelgate.schema.request import ChatRequest
from modelgate.surfaces.base import Core, Operation, StatefulOperation
from modelgate.surfaces.reasoning_state import restore_reasoning

Op = TypeVar("Op", bound=Operation)

log = logging.getLogger("modelgate.surfaces")

Keep = Callable[[Call], Awaitable[None]]  # keeps a whole answer (``StatefulOperation.keep``)

MAX_HEADER_CHARS = 256  # a header value that names what answered
MAX_RETRY_AFTER_S = 86_400  # the longest Retry-After an error answer carries
# What a header value keeps as it is: visible ASCII and space, but "%", which escapes the rest.
_HEADER_SAFE = frozenset(chr(c) for c in range(0x20, 0x7f) if chr(c) != "%")


def header_value(value: object) -> str:
    """``value`` as a header value: text of visible ASCII as it is; other characters (line
    breaks, non-ASCII) percent-encoded as UTF-8; cut to ``MAX_HEADER_CHARS``; "" for what is not
    text. The upstream's model name gets here, and an upstream may send anything."""
    if not isinstance(value, str):
        return ""
    if value.isascii() and value.isprintable() and "%" not in value:
        return value[:MAX_HEADER_CHARS]
    pieces: list[str] = []
    size = 0
    for char in value[:MAX_HEADER_CHARS]:  # whole characters only, however many escapes each takes
        piece = char if char in _HEADER_SAFE else quote(char, safe="", errors="replace")
        size += len(piece)
        if size > MAX_HEADER_CHARS:
            break
        pieces.append(piece)
    return "".join(pieces)


def answered_by(call: Call) -> dict[str, str]:
    """Response headers naming what answered, with the request id."""
    return {
        "x-request-id": call.request_id,
        "x-modelgate-deployment": call.deployment.name,
        "x-modelgate-provider": call.provider or "",
        "x-modelgate-model": header_value(call.upstream_model),
        "x-modelgate-attempts": str(call.attempts),
        **call.response_headers,
    }


def error_headers(error: GatewayError, ids: dict[str, str]) -> dict[str, str]:
    """The headers of an error answer: those the error carries, the request ids, and
    ``Retry-After`` in whole seconds where waiting helps (a wait that is not a finite number of
    seconds is left out)."""
    headers = {**error.headers, **ids}
    wait = error.retry_after
    if isinstance(wait, (int, float)) and math.isfinite(wait):
        headers["retry-after"] = str(min(max(1, round(wait)), MAX_RETRY_AFTER_S))
    return headers


async def serve_call(core: Core, operation: Operation, http: HTTPRequest, send: Send) -> None:
    await _traced(core, operation, http, send, _serve_call)


async def serve_stateful_call(core: Core, operation: StatefulOperation, http: HTTPRequest, send: Send) -> None:
    """``serve_call`` for an operation that continues from stored state and keeps its answers.
    Such an operation (the Responses API's) opens the sealed state of its own items itself."""
    await _traced(core, operation, http, send, _serve_stateful_call)


async def _traced(core: Core, operation: Op, http: HTTPRequest, send: Send,
                  serve: Callable[[Core, Op, HTTPRequest, Send, Span | None], Awaitable[None]]) -> None:
    """``serve`` the call, inside the request's span where the gateway traces."""
    tracing = core.tracing
    if tracing is None or not tracing.keeps(http.headers):
        await serve(core, operation, http, send, None)
        return
    with tracing.server(operation.route, http.headers) as span:
        await serve(core, operation, http, send, span)


async def _serve_call(core: Core, operation: Operation, http: HTTPRequest, send: Send, span: Span | None) -> None:
    call = await _start(core, operation, http, span)
    if isinstance(call.request, ChatRequest):
        # The history may carry reasoning state sealed by the Responses surface, in the place
        # this format keeps opaque state; the upstream gets back what it issued instead.
        restore_reasoning(call.request, core.sealer)
    await _serve(core, operation, call, http, send, None)


async def _serve_stateful_call(core: Core, operation: StatefulOperation, http: HTTPRequest, send: Send,
                               span: Span | None) -> None:
    call = await _start(core, operation, http, span)
    await operation.prepare(call)
    await _serve(core, operation, call, http, send, operation.keep)


async def _start(core: Core, operation: Operation, http: HTTPRequest, span: Span | None) -> Call:
    principal = core.authenticate(http.headers)
    request = operation.parse(await http.json(), http.headers)
    deployment = core.deployment(request.model, principal)
    call = Call(request_id=http.request_id, request=request, deployment=deployment, principal=principal,
                route=operation.route, trace=span, cache_control=http.headers.get("cache-control"))
    if span is not None:
        assert core.tracing is not None
        core.tracing.started(span, call, operation.route)
    return call


async def _serve(core: Core, operation: Operation, call: Call, http: HTTPRequest, send: Send,
                 keep: Keep | None) -> None:
    streaming = getattr(call.request, "stream", False)
    requests = core.request_log
    if requests is None:
        await _answer(call, http.receive, _stream(core, operation, call, send, keep) if streaming
                      else _fold(core, operation, call, send, keep))
        return
    capture = await requests.capture(call, http)
    if capture.payloads is not None:
        send = capture.sending(send)
    try:
        await _answer(call, http.receive, _stream(core, operation, call, send, keep) if streaming
                      else _fold(core, operation, call, send, keep))
    finally:
        requests.finish(call, http, capture)


async def _fold(core: Core, operation: Operation, call: Call, send: Send, keep: Keep | None) -> None:
    fold = operation.fold(call)
    async with aclosing(core.handler(call)) as events:
        async for event in events:
            fold.add(event)
    body = fold.body()
    if keep is not None:
        await keep(call)
    await respond(send, 200, body, operation.headers(call))


async def _stream(core: Core, operation: Operation, call: Call, send: Send, keep: Keep | None) -> None:
    render = operation.stream(call)
    async with aclosing(core.handler(call)) as events:
        # Until the first event arrives nothing is sent, so an error still gets its status.
        first = await anext(events, None)
        await start_stream(send, operation.headers(call))
        try:
            if first is not None:
                await _send(send, render.render(first))
            async for event in events:
                await _send(send, render.render(event))
        except GatewayError as error:
            log.warning("stream %s failed after it started: %s", call.request_id, error.message)
            await send({"type": "http.response.body", "body": render.fail(error), "more_body": False})
            return
    closing = render.close()
    if keep is not None:
        await keep(call)
    await send({"type": "http.response.body", "body": closing, "more_body": False})


async def _send(send: Send, frames: bytes) -> None:
    if frames:
        await send({"type": "http.response.body", "body": frames, "more_body": True})


async def _answer(call: Call, receive: Receive, answer: Awaitable[None]) -> None:
    """Await ``answer`` so that a client that goes away cancels it (and with it the upstream
    request), and an error carries the headers the stages set (x-ratelimit-* on a refusal)."""
    watch = DisconnectWatch(receive)
    try:
        await answer
    except GatewayError as error:
        error.headers = {**call.response_headers, **error.headers}
        raise
    except asyncio.CancelledError:
        if not watch.disconnected:
            raise
        log.info("client went away; request %s cancelled upstream", call.request_id)
    finally:
        watch.close()

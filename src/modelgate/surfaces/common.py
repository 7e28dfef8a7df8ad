"""What every surface does alike: request ids and the headers that say what answered."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable

from modelgate.pipeline.call import Call
from modelgate.schema.errors import GatewayError
from modelgate.server.http import DisconnectWatch, HTTPRequest, Receive, Send
from modelgate.server.routing import Endpoint

log = logging.getLogger("modelgate.surfaces")
ErrorSender = Callable[[Send, GatewayError, str], Awaitable[None]]


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def answered_by(call: Call) -> dict[str, str]:
    """Response headers naming what answered, with the request id."""
    return {
        "x-request-id": call.request_id,
        "x-modelgate-deployment": call.deployment.name,
        "x-modelgate-provider": call.provider or "",
        "x-modelgate-model": call.upstream_model or "",
        "x-modelgate-attempts": str(call.attempts),
        **call.response_headers,
    }


def guarded_by(send_error: ErrorSender) -> Callable[[Endpoint], Endpoint]:
    """A decorator that gives each request its id and renders every error an endpoint raises
    before it responded with ``send_error``, in the surface's own wire format."""
    def guard(endpoint: Endpoint) -> Endpoint:
        async def guarded(request: HTTPRequest, send: Send) -> None:
            # Always our own id: it keys the usage record, which a client must not be able to repeat.
            request_id = new_request_id()
            request.scope["modelgate.request_id"] = request_id
            try:
                await endpoint(request, send)
            except GatewayError as error:
                await send_error(send, error, request_id)
        return guarded
    return guard


async def answer_call(call: Call, receive: Receive, answer: Awaitable[None]) -> None:
    """Await ``answer``, the response to ``call``, so that a client that goes away cancels it
    (and with it the upstream request), and an error carries the headers the stages set
    (x-ratelimit-* on a refusal)."""
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

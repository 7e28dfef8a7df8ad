"""The Anthropic surface: POST /v1/messages and /v1/messages/count_tokens before every deployment.

The official ``anthropic`` SDK and Claude Code (``ANTHROPIC_BASE_URL`` pointed here) work against
any provider: the request becomes the canonical one and runs through the same pipeline as the
OpenAI surface's (limits, routing, metering), and the events come back as Anthropic's. Errors
before the response are Anthropic error objects with their status and a ``request-id`` header; a
stream that fails after it started ends with ``event: error``.
"""

from __future__ import annotations

import logging
from contextlib import aclosing
from typing import Any

import orjson

from modelgate.pipeline.call import Call
from modelgate.providers.sse import sse_event
from modelgate.schema.errors import GatewayError, NotFound
from modelgate.schema.tokens import estimate_input_tokens
from modelgate.server.http import HTTPRequest, Send, respond, start_stream
from modelgate.server.routing import Route
from modelgate.server.services import Services
from modelgate.surfaces.anthropic.requests import parse_messages_request
from modelgate.surfaces.anthropic.responses import MessageRenderer, error_body, fold_message, stream_error
from modelgate.surfaces.common import answer_call, answered_by, guarded_by, new_request_id

log = logging.getLogger("modelgate.anthropic")
PATH_PREFIX = "/v1/messages"


async def send_error(send: Send, error: GatewayError, request_id: str) -> None:
    headers = {**error.headers, "request-id": request_id, "x-request-id": request_id}
    if error.retry_after is not None:
        headers["retry-after"] = str(max(1, round(error.retry_after)))
    await respond(send, error.status, error_body(error, request_id), headers)


# Errors before the response starts become Anthropic error objects.
guard = guarded_by(send_error)


async def no_route(request: HTTPRequest, send: Send, path_known: bool) -> None:
    """The 404 or 405 for a path under /v1/messages that has no handler, as Anthropic renders it."""
    error = (GatewayError(f"{request.method} is not allowed on {request.path}", status=405)
             if path_known else
             NotFound(f"There is no route {request.method} {request.path}. The Anthropic Messages API "
                      "here is POST /v1/messages and POST /v1/messages/count_tokens."))
    await send_error(send, error, new_request_id())


def _headers(call: Call) -> dict[str, str]:
    return {"request-id": call.request_id, **answered_by(call)}


class AnthropicSurface:
    def __init__(self, services: Services) -> None:
        self.services = services

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/v1/messages", guard(self.messages)),
            Route("POST", "/v1/messages/count_tokens", guard(self.count_tokens)),
        ]

    async def messages(self, http: HTTPRequest, send: Send) -> None:
        principal = self.services.auth.authenticate(http.headers)
        request = parse_messages_request(await http.json(), http.headers)
        deployment = self.services.deployment(request.model, principal)
        call = Call(request_id=http.scope["modelgate.request_id"], request=request,
                    deployment=deployment, principal=principal)
        answer = (self._stream(call, send, estimate_input_tokens(request)) if request.stream
                  else self._complete(call, send))
        await answer_call(call, http.receive, answer)

    def _renderer(self, call: Call, input_estimate: int = 0) -> MessageRenderer:
        return MessageRenderer("msg_" + call.request_id.removeprefix("req_"), call.deployment.name,
                               call.deployment.reasoning.show, input_estimate)

    async def _complete(self, call: Call, send: Send) -> None:
        renderer = self._renderer(call)
        stream: list[dict[str, Any]] = []
        async with aclosing(self.services.handler(call)) as events:
            async for event in events:
                stream += renderer.render(event)
        stream += renderer.finish()
        body = fold_message(stream, call.provider or call.deployment.name)
        await respond(send, 200, orjson.dumps(body), _headers(call))

    async def _stream(self, call: Call, send: Send, input_estimate: int) -> None:
        renderer = self._renderer(call, input_estimate)
        async with aclosing(self.services.handler(call)) as events:
            # Until the first event arrives nothing is sent, so an error still gets its status.
            first = await anext(events, None)
            await start_stream(send, _headers(call))
            try:
                if first is not None:
                    await _send_events(send, renderer.render(first))
                async for event in events:
                    await _send_events(send, renderer.render(event))
            except GatewayError as error:
                log.warning("stream %s failed after it started: %s", call.request_id, error.message)
                await send({"type": "http.response.body", "body": stream_error(error, call.request_id),
                            "more_body": False})
                return
        await _send_events(send, renderer.finish(), more=False)

    async def count_tokens(self, http: HTTPRequest, send: Send) -> None:
        principal = self.services.auth.authenticate(http.headers)
        request = parse_messages_request(await http.json(), http.headers, counting=True)
        self.services.deployment(request.model, principal)
        # An estimate for every provider; Anthropic deployments could ask their upstream instead.
        body = orjson.dumps({"input_tokens": estimate_input_tokens(request)})
        await respond(send, 200, body, {"request-id": http.scope["modelgate.request_id"],
                                        "x-request-id": http.scope["modelgate.request_id"]})


async def _send_events(send: Send, events: list[dict[str, Any]], more: bool = True) -> None:
    if not events and more:
        return  # the event said nothing a client sees (Start, Usage, Finish)
    body = b"".join(sse_event(str(e["type"]), orjson.dumps(e)) for e in events)
    await send({"type": "http.response.body", "body": body, "more_body": more})

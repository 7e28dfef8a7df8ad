"""The Anthropic surface: POST /v1/messages and /v1/messages/count_tokens before every deployment.

The official ``anthropic`` SDK and Claude Code (``ANTHROPIC_BASE_URL`` pointed here) work against
any provider: the request becomes the canonical one and runs through the same lifecycle and
pipeline as the OpenAI surface's (limits, routing, metering), and the events come back as
Anthropic's. Errors before the response are Anthropic error objects with their status and a
``request-id`` header; a stream that fails after it started ends with ``event: error``. Answers
and refusals carry the ``anthropic-ratelimit-*`` headers of the caller's limits.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from modelgate.http.asgi import Send
from modelgate.http.request import HTTPRequest
from modelgate.http.response import respond
from modelgate.http.routing import Route
from modelgate.http.sse import sse_event
from modelgate.limits.headers import anthropic_ratelimit_headers
from modelgate.pipeline.contract import Call
from modelgate.schema.errors import GatewayError, MethodNotAllowed, NotFound
from modelgate.schema.events import Event
from modelgate.schema.request import ChatRequest
from modelgate.schema.tokens import estimate_input_tokens
from modelgate.surfaces.anthropic.parse import parse_messages_request
from modelgate.surfaces.anthropic.render import MessageRenderer, error_body, fold_message, stream_error
from modelgate.surfaces.base import Core
from modelgate.surfaces.lifecycle import answered_by, error_headers, serve_call


class AnthropicSurface:
    prefix = "/v1/messages"

    def __init__(self, core: Core) -> None:
        self.core = core
        self.messages = Messages()

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/v1/messages", self.create_message),
            Route("POST", "/v1/messages/count_tokens", self.count_tokens),
        ]

    def error_response(self, error: GatewayError, request_id: str) -> tuple[bytes, dict[str, str]]:
        headers = error_headers(error, {"request-id": request_id, "x-request-id": request_id})
        headers.update(anthropic_ratelimit_headers(headers, time.time()))
        return error_body(error, request_id), headers

    def no_route(self, method: str, path: str, path_known: bool) -> GatewayError:
        if path_known:
            return MethodNotAllowed(f"{method} is not allowed on {path}")
        return NotFound(f"There is no route {method} {path}. The Anthropic Messages API here is "
                        "POST /v1/messages and POST /v1/messages/count_tokens.")

    async def create_message(self, http: HTTPRequest, send: Send) -> None:
        await serve_call(self.core, self.messages, http, send)

    async def count_tokens(self, http: HTTPRequest, send: Send) -> None:
        principal = self.core.authenticate(http.headers)
        request = parse_messages_request(await http.json(), http.headers, counting=True)
        deployment = self.core.deployment(request.model, principal)
        # The upstream's own count where it has an endpoint for it (Anthropic's), else an estimate.
        counted = await self.core.count_tokens(request, deployment)
        body = orjson.dumps({"input_tokens": estimate_input_tokens(request) if counted is None else counted})
        await respond(send, 200, body, {"request-id": http.request_id, "x-request-id": http.request_id})


class Messages:
    """``POST /v1/messages`` as an operation of ``serve_call``."""

    route = "messages"

    def parse(self, body: Any, headers: Mapping[str, str]) -> ChatRequest:
        return parse_messages_request(body, headers)

    def headers(self, call: Call) -> dict[str, str]:
        headers = {"request-id": call.request_id, **answered_by(call)}
        headers.update(anthropic_ratelimit_headers(call.response_headers, time.time()))
        return headers

    def fold(self, call: Call) -> MessageFold:
        return MessageFold(call)

    def stream(self, call: Call) -> MessageStream:
        return MessageStream(call)


def _renderer(call: Call, input_estimate: int = 0) -> MessageRenderer:
    return MessageRenderer("msg_" + call.request_id.removeprefix("req_"), call.deployment.name,
                           call.deployment.reasoning.show, input_estimate)


class MessageFold:
    """The answer's stream events, folded into one message: Anthropic's content blocks keep the
    order in which thinking, text and tool calls arrived, which ``ChatResult`` does not record."""

    __slots__ = ("call", "events", "renderer")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.renderer = _renderer(call)
        self.events: list[dict[str, Any]] = []

    def add(self, event: Event) -> None:
        self.events += self.renderer.render(event)

    def body(self) -> bytes:
        self.events += self.renderer.finish()
        return orjson.dumps(fold_message(self.events, self.call.provider or self.call.deployment.name))


class MessageStream:
    __slots__ = ("renderer", "request_id")

    def __init__(self, call: Call) -> None:
        assert isinstance(call.request, ChatRequest)
        self.request_id = call.request_id
        self.renderer = _renderer(call, estimate_input_tokens(call.request))

    def render(self, event: Event) -> bytes:
        return _frames(self.renderer.render(event))

    def close(self) -> bytes:
        return _frames(self.renderer.finish())

    def fail(self, error: GatewayError) -> bytes:
        return stream_error(error, self.request_id)


def _frames(events: list[dict[str, Any]]) -> bytes:
    return b"".join([sse_event(str(e["type"]), orjson.dumps(e)) for e in events]) if events else b""

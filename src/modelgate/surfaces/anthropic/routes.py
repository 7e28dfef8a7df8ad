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
from typing import Any, Protocol

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
from modelgate.storage import ResponseStore
from modelgate.surfaces.anthropic.parse import parse_messages_request
from modelgate.surfaces.anthropic.render import MessageRenderer, error_body, fold_message, stream_error
from modelgate.surfaces.anthropic.threads import (
    Thread,
    ThreadTurn,
    has_threads_beta,
    load_turn,
    read_thread,
    without_threads_beta,
)
from modelgate.surfaces.base import Core
from modelgate.surfaces.lifecycle import answered_by, error_headers, serve_call
from modelgate.surfaces.reasoning_state import restore_reasoning


class ThreadCore(Core, Protocol):
    """What the surface needs besides ``Core``: the store that keeps message threads."""

    @property
    def responses(self) -> ResponseStore: ...


class AnthropicSurface:
    prefix = "/v1/messages"

    def __init__(self, core: ThreadCore) -> None:
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
        if has_threads_beta(http.headers):
            thread = read_thread(await http.json())
            if thread is not None:
                await self.continue_thread(http, send, thread)
                return
        await serve_call(self.core, self.messages, http, send)

    async def continue_thread(self, http: HTTPRequest, send: Send, thread: Thread) -> None:
        """A message thread's turn (threads.py): the thread's earlier turns read back before the
        call, this one stored after it."""
        principal = self.core.authenticate(http.headers)
        body = await http.json()
        turn = await load_turn(self.core.responses, thread, body, principal.project)
        await serve_call(self.core, ThreadedMessages(turn, self.core.responses), http, send)

    async def count_tokens(self, http: HTTPRequest, send: Send) -> None:
        principal = self.core.authenticate(http.headers)
        request = parse_messages_request(await http.json(), http.headers, counting=True)
        restore_reasoning(request, self.core.sealer)
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

    def message(self) -> dict[str, Any]:
        self.events += self.renderer.finish()
        return fold_message(self.events, self.call.provider or self.call.deployment.name)

    def body(self) -> bytes:
        return orjson.dumps(self.message())


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


class ThreadedMessages(Messages):
    """``POST /v1/messages`` as one turn of a message thread: the body gets the thread's earlier
    messages, and the answer is stored as the thread's next turn."""

    def __init__(self, turn: ThreadTurn, store: ResponseStore) -> None:
        self.turn = turn
        self.store = store

    def parse(self, body: Any, headers: Mapping[str, str]) -> ChatRequest:
        return parse_messages_request(self.turn.body(body), without_threads_beta(headers))

    def fold(self, call: Call) -> MessageFold:
        return ThreadFold(call, self)

    def stream(self, call: Call) -> MessageStream:
        return ThreadStream(call, self)

    def keep(self, message: dict[str, Any]) -> None:
        stored = self.turn.stored(message)
        if stored is not None:
            self.store.put_nowait(stored)


class ThreadFold(MessageFold):
    __slots__ = ("operation",)

    def __init__(self, call: Call, operation: ThreadedMessages) -> None:
        super().__init__(call)
        self.operation = operation

    def body(self) -> bytes:
        message = self.message()
        self.operation.keep(message)
        return orjson.dumps(message)


class ThreadStream(MessageStream):
    """A stream whose events are also folded, to store the message once it is complete (one
    that fails midway is not stored: the next turn finds no such thread and starts anew)."""

    __slots__ = ("call", "events", "operation")

    def __init__(self, call: Call, operation: ThreadedMessages) -> None:
        super().__init__(call)
        self.call = call
        self.operation = operation
        self.events: list[dict[str, Any]] = []

    def render(self, event: Event) -> bytes:
        events = self.renderer.render(event)
        self.events += events
        return _frames(events)

    def close(self) -> bytes:
        events = self.renderer.finish()
        self.events += events
        self.operation.keep(fold_message(self.events, self.call.provider or self.call.deployment.name))
        return _frames(events)


def _frames(events: list[dict[str, Any]]) -> bytes:
    return b"".join([sse_event(str(e["type"]), orjson.dumps(e)) for e in events]) if events else b""

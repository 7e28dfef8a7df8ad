"""The OpenAI surface: /v1/chat/completions and /v1/embeddings, and the errors of every path under /v1.

Chat completions and embeddings are operations run by ``serve_call``; this module supplies
their parsers and renderers. Errors before the first byte of a response become OpenAI error
objects with their status; a stream that fails after it started ends with an error event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from modelgate.http.asgi import Send
from modelgate.http.request import HTTPRequest
from modelgate.http.routing import Route
from modelgate.http.sse import sse_data
from modelgate.pipeline.contract import Call
from modelgate.schema.errors import GatewayError, MethodNotAllowed, NotFound
from modelgate.schema.events import ChatResult, Event, ResultBuilder
from modelgate.schema.request import ChatRequest, EmbeddingRequest
from modelgate.surfaces.base import Core
from modelgate.surfaces.lifecycle import answered_by, error_headers, serve_call
from modelgate.surfaces.openai.parse import parse_chat_request, parse_embedding_request
from modelgate.surfaces.openai.render import (
    ChunkRenderer,
    completion_body,
    embeddings_body,
    error_body,
    error_object,
)

DONE = b"data: [DONE]\n\n"


class OpenAISurface:
    prefix = "/v1"

    def __init__(self, core: Core) -> None:
        self.core = core
        self.chat = ChatCompletions()
        self.embeddings = Embeddings()

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/v1/chat/completions", self.chat_completions),
            Route("POST", "/v1/embeddings", self.create_embeddings),
        ]

    def error_response(self, error: GatewayError, request_id: str) -> tuple[bytes, dict[str, str]]:
        return error_body(error), error_headers(error, {"x-request-id": request_id})

    def no_route(self, method: str, path: str, path_known: bool) -> GatewayError:
        if path_known:
            return MethodNotAllowed(f"{method} is not allowed on {path}")
        return NotFound(f"There is no route {method} {path}. The OpenAI API is under /v1 "
                        "(POST /v1/chat/completions, GET /v1/models).", code="unknown_url")

    async def chat_completions(self, http: HTTPRequest, send: Send) -> None:
        await serve_call(self.core, self.chat, http, send)

    async def create_embeddings(self, http: HTTPRequest, send: Send) -> None:
        await serve_call(self.core, self.embeddings, http, send)


class ChatCompletions:
    """``POST /v1/chat/completions`` as an operation of ``serve_call``."""

    route = "chat"

    def parse(self, body: Any, headers: Mapping[str, str]) -> ChatRequest:
        return parse_chat_request(body)

    def headers(self, call: Call) -> dict[str, str]:
        return answered_by(call)

    def fold(self, call: Call) -> ResultFold:
        response_id, created, show = "chatcmpl-" + call.request_id[4:], int(time.time()), call.deployment.reasoning.show
        return ResultFold(lambda result: completion_body(result, response_id, created, show))

    def stream(self, call: Call) -> ChunkStream:
        return ChunkStream(call)


class ResultFold:
    """The events folded into a ``ChatResult``, rendered by ``render`` at the end."""

    __slots__ = ("builder", "render")

    def __init__(self, render: Callable[[ChatResult], bytes]) -> None:
        self.render = render
        self.builder = ResultBuilder()

    def add(self, event: Event) -> None:
        self.builder.add(event)

    def body(self) -> bytes:
        return self.render(self.builder.finish())


class ChunkStream:
    __slots__ = ("renderer",)

    def __init__(self, call: Call) -> None:
        include_usage = isinstance(call.request, ChatRequest) and call.request.include_usage
        self.renderer = ChunkRenderer("chatcmpl-" + call.request_id[4:], int(time.time()),
                                      include_usage, call.deployment.reasoning.show)

    def render(self, event: Event) -> bytes:
        chunks = self.renderer.render(event)
        return b"".join([sse_data(c) for c in chunks]) if chunks else b""

    def close(self) -> bytes:
        return b"".join([sse_data(c) for c in self.renderer.closing()]) + DONE

    def fail(self, error: GatewayError) -> bytes:
        return sse_data(orjson.dumps({"error": error_object(error)}))


class Embeddings:
    """``POST /v1/embeddings`` as an operation of ``serve_call`` (never streamed)."""

    route = "embeddings"

    def parse(self, body: Any, headers: Mapping[str, str]) -> EmbeddingRequest:
        return parse_embedding_request(body)

    def headers(self, call: Call) -> dict[str, str]:
        return answered_by(call)

    def fold(self, call: Call) -> ResultFold:
        assert isinstance(call.request, EmbeddingRequest)
        encoding = call.request.encoding_format
        return ResultFold(lambda result: embeddings_body(result, encoding))

    def stream(self, call: Call) -> ChunkStream:
        raise AssertionError("embeddings are never streamed")

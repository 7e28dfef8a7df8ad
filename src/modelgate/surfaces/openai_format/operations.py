"""Chat completions, embeddings and moderations as operations of ``serve_call``, whichever surface
serves them.

A surface that speaks this format (OpenAI's ``/v1``, Azure's ``/openai``) hands these to
``serve_call``; they parse the body and render the events, the surface says where and how errors
look. A stream that fails after it started ends with an error event carrying the error object.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from modelgate.http.sse import sse_data
from modelgate.pipeline.contract import Call
from modelgate.schema.errors import GatewayError
from modelgate.schema.events import ChatResult, Event, ResultBuilder
from modelgate.schema.request import ChatRequest, EmbeddingRequest, ModerationRequest
from modelgate.surfaces.lifecycle import answered_by
from modelgate.surfaces.openai_format.moderations import moderations_body, parse_moderation_request
from modelgate.surfaces.openai_format.parse import parse_chat_request, parse_embedding_request
from modelgate.surfaces.openai_format.render import ChunkRenderer, completion_body, embeddings_body, error_object

DONE = b"data: [DONE]\n\n"


class ChatCompletions:
    """``POST .../chat/completions`` as an operation of ``serve_call``."""

    route = "chat"

    def parse(self, body: Any, headers: Mapping[str, str]) -> ChatRequest:
        return parse_chat_request(body)

    def headers(self, call: Call) -> dict[str, str]:
        return answered_by(call)

    def fold(self, call: Call) -> ResultFold:
        response_id, created, show = "chatcmpl-" + call.request_id[4:], int(time.time()), call.deployment.reasoning.show
        return ResultFold(lambda result: completion_body(result, response_id, created, show, call.safety))

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
                                      include_usage, call.deployment.reasoning.show, lambda: call.safety)

    def render(self, event: Event) -> bytes:
        chunks = self.renderer.render(event)
        return b"".join([sse_data(c) for c in chunks]) if chunks else b""

    def close(self) -> bytes:
        return b"".join([sse_data(c) for c in self.renderer.closing()]) + DONE

    def fail(self, error: GatewayError) -> bytes:
        return sse_data(orjson.dumps({"error": error_object(error)}))


class Embeddings:
    """``POST .../embeddings`` as an operation of ``serve_call`` (never streamed)."""

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


class Moderations:
    """``POST /v1/moderations`` as an operation of ``serve_call`` (never streamed): answered by the
    safety stage from the deployment's moderation checks, or by the deployment's own upstream."""

    route = "moderations"

    def parse(self, body: Any, headers: Mapping[str, str]) -> ModerationRequest:
        return parse_moderation_request(body)

    def headers(self, call: Call) -> dict[str, str]:
        return answered_by(call)

    def fold(self, call: Call) -> ResultFold:
        response_id = "modr-" + call.request_id[4:]
        return ResultFold(lambda result: moderations_body(result, response_id))

    def stream(self, call: Call) -> ChunkStream:
        raise AssertionError("moderations are never streamed")

"""The OpenAI surface: /v1/chat/completions, /v1/embeddings and /v1/models.

Each handler authenticates, parses the body into the canonical request, runs it through the
pipeline and renders the events. Errors before the first byte of a response become OpenAI error
objects with their status; a stream that fails after it started ends with an error event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

import orjson

from modelgate.pipeline.call import Call
from modelgate.providers.sse import sse_data
from modelgate.schema.errors import GatewayError
from modelgate.schema.events import Event, Folder
from modelgate.server.http import HTTPRequest, Send, respond, start_stream
from modelgate.server.routing import Route
from modelgate.server.services import Services
from modelgate.surfaces.anthropic.models import anthropic_model, anthropic_model_list
from modelgate.surfaces.common import answer_call, answered_by, guarded_by
from modelgate.surfaces.openai.requests import parse_chat_request, parse_embedding_request
from modelgate.surfaces.openai.responses import (
    ChunkRenderer,
    completion_body,
    embeddings_body,
    error_body,
)

log = logging.getLogger("modelgate.openai")
DONE = b"data: [DONE]\n\n"


async def send_error(send: Send, error: GatewayError, request_id: str) -> None:
    headers = {**error.headers, "x-request-id": request_id}
    if error.retry_after is not None:
        headers["retry-after"] = str(max(1, round(error.retry_after)))
    await respond(send, error.status, error_body(error), headers)


# Errors before the response starts become OpenAI error objects.
guard = guarded_by(send_error)


async def _first(events: AsyncIterator[Event]) -> Event | None:
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None


class OpenAISurface:
    def __init__(self, services: Services) -> None:
        self.services = services

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/v1/chat/completions", guard(self.chat_completions)),
            Route("POST", "/v1/embeddings", guard(self.embeddings)),
            Route("GET", "/v1/models", guard(self.list_models)),
            Route("GET", "/v1/models/{model}", guard(self.get_model)),
        ]

    async def chat_completions(self, http: HTTPRequest, send: Send) -> None:
        principal = self.services.auth.authenticate(http.headers)
        request = parse_chat_request(await http.json())
        deployment = self.services.deployment(request.model, principal)
        call = Call(request_id=http.scope["modelgate.request_id"], request=request,
                    deployment=deployment, principal=principal)
        answer = self._stream(call, send) if request.stream else self._complete(call, send)
        await answer_call(call, http.receive, answer)

    async def _complete(self, call: Call, send: Send) -> None:
        folder = Folder()
        async with aclosing(self.services.handler(call)) as events:
            async for event in events:
                folder.add(event)
        body = completion_body(folder.finish(), "chatcmpl-" + call.request_id[4:], int(time.time()),
                               call.deployment.reasoning.show)
        await respond(send, 200, body, answered_by(call))

    async def _stream(self, call: Call, send: Send) -> None:
        request = call.request
        include_usage = getattr(request, "include_usage", False)
        renderer = ChunkRenderer("chatcmpl-" + call.request_id[4:], int(time.time()),
                                 include_usage, call.deployment.reasoning.show)
        async with aclosing(self.services.handler(call)) as events:
            # Until the first event arrives nothing is sent, so an error still gets its status.
            first = await _first(events)
            await start_stream(send, answered_by(call))
            try:
                if first is not None:
                    await _send_chunks(send, renderer.render(first))
                async for event in events:
                    chunks = renderer.render(event)
                    if chunks:
                        await _send_chunks(send, chunks)
            except GatewayError as error:
                log.warning("stream %s failed after it started: %s", call.request_id, error.message)
                payload = sse_data(orjson.dumps({"error": {
                    "message": error.message, "type": error.type, "param": error.param,
                    "code": error.code}}))
                await send({"type": "http.response.body", "body": payload, "more_body": False})
                return
        closing = b"".join(sse_data(c) for c in renderer.closing())
        await send({"type": "http.response.body", "body": closing + DONE, "more_body": False})

    async def embeddings(self, http: HTTPRequest, send: Send) -> None:
        principal = self.services.auth.authenticate(http.headers)
        request = parse_embedding_request(await http.json())
        deployment = self.services.deployment(request.model, principal)
        call = Call(request_id=http.scope["modelgate.request_id"], request=request,
                    deployment=deployment, principal=principal)
        folder = Folder()
        try:
            async with aclosing(self.services.handler(call)) as events:
                async for event in events:
                    folder.add(event)
        except GatewayError as error:
            error.headers = {**call.response_headers, **error.headers}
            raise
        await respond(send, 200, embeddings_body(folder.finish(), request.encoding_format),
                      answered_by(call))

    async def list_models(self, http: HTTPRequest, send: Send) -> None:
        principal = self.services.auth.authenticate(http.headers)
        names = [name for name in self.services.settings.deployments if principal.may_use(name)]
        if "anthropic-version" in http.headers:  # the anthropic SDK lists models at the same path
            body = anthropic_model_list([self._anthropic_model(n) for n in names])
        else:
            body = {"object": "list", "data": [self._model(name) for name in names]}
        await respond(send, 200, orjson.dumps(body), {"x-request-id": http.scope["modelgate.request_id"]})

    async def get_model(self, http: HTTPRequest, send: Send) -> None:
        principal = self.services.auth.authenticate(http.headers)
        deployment = self.services.deployment(http.path_params["model"], principal)
        body = (self._anthropic_model(deployment.name) if "anthropic-version" in http.headers
                else self._model(deployment.name))
        await respond(send, 200, orjson.dumps(body), {"x-request-id": http.scope["modelgate.request_id"]})

    def _model(self, name: str) -> dict[str, object]:
        deployment = self.services.settings.deployments[name]
        return {"id": name, "object": "model", "created": self.services.started_at,
                "owned_by": deployment.targets[0].provider}

    def _anthropic_model(self, name: str) -> dict[str, object]:
        facts = self.services.settings.deployments[name].targets[0].facts
        return anthropic_model(name, self.services.started_at, facts.context_window, facts.max_output_tokens)


async def _send_chunks(send: Send, chunks: list[bytes]) -> None:
    body = b"".join(sse_data(c) for c in chunks)
    await send({"type": "http.response.body", "body": body, "more_body": True})

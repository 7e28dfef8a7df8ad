"""The OpenAI surface: /v1/chat/completions, /v1/embeddings and /v1/moderations, and the errors of
every path under /v1.

Chat completions, embeddings and moderations are operations run by ``serve_call``, in OpenAI's wire format
(``surfaces/openai_format``, which the Azure surface speaks too). Errors before the first byte of
a response become OpenAI error objects with their status; a stream that fails after it started
ends with an error event.
"""

from __future__ import annotations

from modelgate.http.asgi import Send
from modelgate.http.request import HTTPRequest
from modelgate.http.routing import Route
from modelgate.schema.errors import GatewayError, MethodNotAllowed, NotFound
from modelgate.surfaces.base import Core
from modelgate.surfaces.lifecycle import error_headers, serve_call
from modelgate.surfaces.openai_format.operations import ChatCompletions, Embeddings, Moderations
from modelgate.surfaces.openai_format.render import error_body


class OpenAISurface:
    prefix = "/v1"

    def __init__(self, core: Core) -> None:
        self.core = core
        self.chat = ChatCompletions()
        self.embeddings = Embeddings()
        self.moderations = Moderations()

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/v1/chat/completions", self.chat_completions),
            Route("POST", "/v1/embeddings", self.create_embeddings),
            Route("POST", "/v1/moderations", self.create_moderations),
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

    async def create_moderations(self, http: HTTPRequest, send: Send) -> None:
        await serve_call(self.core, self.moderations, http, send)

"""An HTTP request as the surfaces read it, and noticing a client that left."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import orjson

from modelgate.http.asgi import Receive, Scope
from modelgate.schema.errors import ClientDisconnected, InvalidRequest, RequestTooLarge, UnsupportedMediaType

MAX_BODY = 32 * 1024 * 1024  # what Anthropic accepts for Messages; OpenAI's limits are lower


class HTTPRequest:
    __slots__ = ("_body", "headers", "method", "path", "path_params", "query", "receive", "request_id", "scope")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query: bytes = scope.get("query_string", b"")
        self.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.path_params: dict[str, str] = {}
        # Always our own id: it keys the usage record, which a client must not be able to repeat.
        self.request_id = "req_" + secrets.token_hex(12)
        self._body: bytes | None = None

    async def body(self) -> bytes:
        if self._body is None:
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnected("The connection closed before the request body was complete.")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > MAX_BODY:
                    raise RequestTooLarge(f"The request body is over {MAX_BODY // (1024 * 1024)} MB; "
                                          "send a smaller request.")
                chunks.append(chunk)
                if not message.get("more_body"):
                    break
            self._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self._body

    async def json(self) -> Any:
        """The body as JSON: sent as ``application/json`` (with parameters), a ``+json`` type, or
        without a Content-Type (some clients leave it out); any other type is a 415."""
        content_type = self.headers.get("content-type")
        if content_type and not is_json(content_type):
            raise UnsupportedMediaType(
                f"This endpoint takes a JSON body, but the request's Content-Type is {content_type[:100]!r}. "
                "Send the body as JSON with 'Content-Type: application/json'.")
        raw = await self.body()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(
                f"We could not parse the JSON body of your request ({exc}). "
                "Send valid JSON with 'Content-Type: application/json'.",
                code="invalid_json") from None


def is_json(content_type: str) -> bool:
    """Whether a Content-Type names JSON: ``application/json`` or ``application/<anything>+json``."""
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/")
                                                  and media_type.endswith("+json"))


class DisconnectWatch:
    """Cancels the current task when the client disconnects before the response is complete.

    The cancellation reaches the upstream request wherever it waits, which closes the upstream
    connection: a client that goes away stops paying for tokens.
    """

    __slots__ = ("_task", "_watcher", "disconnected", "done")

    def __init__(self, receive: Receive) -> None:
        self.disconnected = False
        self.done = False
        self._task = asyncio.current_task()
        self._watcher = asyncio.get_running_loop().create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not self.done and self._task is not None:
                    self.disconnected = True
                    self._task.cancel()
                return

    def close(self) -> None:
        self.done = True
        self._watcher.cancel()

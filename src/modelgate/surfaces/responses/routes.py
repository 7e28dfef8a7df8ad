"""The Responses surface: ``POST /v1/responses`` before every deployment, and stored responses.

Creating a response runs through the same lifecycle as every model call (keys, deployment
scopes, limits, budgets, metering as route "responses"); it is stateful, so it runs as
``serve_stateful_call``. ``GET`` and ``DELETE /v1/responses/{id}`` and
``GET /v1/responses/{id}/input_items`` read the store only: they call no model and record no
usage. A stored response belongs to the project of the key that made it; any other key gets the
404 of a response that does not exist. Errors are OpenAI error objects.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson

from modelgate.http.asgi import Send
from modelgate.http.request import HTTPRequest
from modelgate.http.response import respond
from modelgate.http.routing import Route
from modelgate.schema.errors import GatewayError, InvalidRequest, MethodNotAllowed, NotFound
from modelgate.storage.responses import StoredResponse
from modelgate.surfaces.base import Core
from modelgate.surfaces.lifecycle import error_headers, serve_stateful_call
from modelgate.surfaces.openai_format.render import error_body
from modelgate.surfaces.responses.operation import CreateResponse
from modelgate.surfaces.responses.parse import SEALED_REASONING
from modelgate.surfaces.responses.render import visible, visible_response

MAX_PAGE = 100
DEFAULT_PAGE = 20


class ResponsesSurface:
    prefix = "/v1/responses"

    def __init__(self, core: Core) -> None:
        self.core = core

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/v1/responses", self.create),
            Route("GET", "/v1/responses/{response_id}", self.retrieve),
            Route("DELETE", "/v1/responses/{response_id}", self.delete),
            Route("GET", "/v1/responses/{response_id}/input_items", self.input_items),
        ]

    def error_response(self, error: GatewayError, request_id: str) -> tuple[bytes, dict[str, str]]:
        return error_body(error), error_headers(error, {"x-request-id": request_id})

    def no_route(self, method: str, path: str, path_known: bool) -> GatewayError:
        if path_known:
            return MethodNotAllowed(f"{method} is not allowed on {path}")
        return NotFound(f"There is no route {method} {path}. The Responses API here is POST /v1/responses, "
                        "GET and DELETE /v1/responses/{id} and GET /v1/responses/{id}/input_items.",
                        code="unknown_url")

    async def create(self, http: HTTPRequest, send: Send) -> None:
        await serve_stateful_call(self.core, CreateResponse(self.core, http.request_id), http, send)

    async def retrieve(self, http: HTTPRequest, send: Send) -> None:
        query = _query(http)
        if _flag(query, "stream"):
            raise InvalidRequest("Streaming a stored response again is not supported; GET it without 'stream'.",
                                 param="stream", code="invalid_value")
        stored = await self._stored(http)
        body = visible_response(orjson.loads(stored.body), SEALED_REASONING in _include(query))
        await respond(send, 200, orjson.dumps(body), {"x-request-id": http.request_id})

    async def delete(self, http: HTTPRequest, send: Send) -> None:
        principal = self.core.authenticate(http.headers)
        response_id = http.path_params["response_id"]
        stored = await self.core.responses.get(response_id, principal.project)
        if stored is None or stored.kind != "response" or not await self.core.responses.delete(
                response_id, principal.project):
            raise _not_found(response_id)
        body = orjson.dumps({"id": response_id, "object": "response", "deleted": True})
        await respond(send, 200, body, {"x-request-id": http.request_id})

    async def input_items(self, http: HTTPRequest, send: Send) -> None:
        query = _query(http)
        limit = _limit(query)
        order = _last(query, "order") or "desc"
        if order not in ("asc", "desc"):
            raise InvalidRequest("'order' must be 'asc' or 'desc'", param="order", code="invalid_value")
        after = _last(query, "after")
        stored = await self._stored(http)
        items: list[dict[str, Any]] = orjson.loads(stored.input_items)
        if order == "desc":
            items.reverse()
        if after is not None:
            at = next((i for i, item in enumerate(items) if item.get("id") == after), None)
            if at is None:
                raise InvalidRequest(f"'after' names no input item of response '{stored.id}': {after[:100]!r}",
                                     param="after", code="invalid_value")
            items = items[at + 1:]
        sealed = SEALED_REASONING in _include(query)
        page = [visible(item, sealed) for item in items[:limit]]
        body = {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit}
        await respond(send, 200, orjson.dumps(body), {"x-request-id": http.request_id})

    async def _stored(self, http: HTTPRequest) -> StoredResponse:
        principal = self.core.authenticate(http.headers)
        response_id = http.path_params["response_id"]
        stored = await self.core.responses.get(response_id, principal.project)
        if stored is None or stored.kind != "response":  # a message thread is not a response
            raise _not_found(response_id)
        return stored


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id[:100]}' not found.", param="response_id",
                    code="response_not_found")


def _query(http: HTTPRequest) -> dict[str, list[str]]:
    return parse_qs(http.query.decode("latin-1"))


def _last(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return (_last(query, name) or "").lower() == "true"


def _include(query: dict[str, list[str]]) -> list[str]:
    """``include`` as the SDKs send it (``include[]=...``) or plainly repeated."""
    return query.get("include[]", []) + query.get("include", [])


def _limit(query: dict[str, list[str]]) -> int:
    raw = _last(query, "limit")
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise InvalidRequest(f"'limit' must be an integer from 1 to {MAX_PAGE}, got {raw[:20]!r}", param="limit",
                             code="invalid_value")
    return int(raw)

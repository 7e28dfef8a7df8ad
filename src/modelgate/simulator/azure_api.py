"""The Azure OpenAI surface: deployment routes with ``api-version`` and the ``/openai/v1`` routes.

* ``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` and ``.../embeddings``: the
  deployment name is the model (the body's ``model`` is ignored, as on Azure); a missing ``api-version`` is a
  400 ``MissingApiVersionParameter``.
* ``POST /openai/v1/chat/completions`` and ``/openai/v1/embeddings``: the v1 API, no ``api-version``.
* ``POST /openai/v1/responses``, and ``POST /openai/responses?api-version=...`` (where ``AzureOpenAI.responses``
  calls): the Responses API, the body's ``model`` naming the deployment.

Auth is the ``api-key`` header (or ``Authorization: Bearer`` for Entra tokens). Replies carry Azure's
content-filter annotations, and streams open with a choice-less ``prompt_filter_results`` chunk
(protocols.md §6.6).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from modelgate.simulator.exchange import Exchange, endpoint
from modelgate.simulator.openai_api import OpenAISurface, ResponsesSurface, chat_completions, embeddings, responses
from modelgate.simulator.state import SimState
from modelgate.simulator.surface import SimError


class AzureSurface(OpenAISurface):
    """Azure's variant of the OpenAI wire format."""

    name = "azure"

    def api_key(self, request: web.Request) -> str | None:
        return request.headers.get("api-key") or super().api_key(request)

    def extra_headers(self, request_id: str) -> dict[str, str]:
        return {"apim-request-id": request_id}

    def auth_error(self, key: str | None) -> SimError:
        return SimError(
            401,
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
            "key for an active subscription and use a correct regional API endpoint for your resource.",
            code="401",
        )


class AzureResponsesSurface(ResponsesSurface, AzureSurface):
    """Azure's auth and headers, the Responses API's stream errors."""


def _require_api_version(exchange: Exchange) -> None:
    if not exchange.request.query.get("api-version"):
        raise SimError(
            400,
            "The api-version query parameter (?api-version=) is required for all requests.",
            code="MissingApiVersionParameter",
        )


async def _deployment_chat(exchange: Exchange, body: dict[str, Any]) -> web.StreamResponse:
    _require_api_version(exchange)
    deployment = exchange.request.match_info["deployment"]
    return await chat_completions(exchange, body, model=deployment, azure=True)


async def _deployment_embeddings(exchange: Exchange, body: dict[str, Any]) -> web.StreamResponse:
    _require_api_version(exchange)
    return await embeddings(exchange, body, model=exchange.request.match_info["deployment"])


async def _v1_chat(exchange: Exchange, body: dict[str, Any]) -> web.StreamResponse:
    return await chat_completions(exchange, body, azure=True)


async def _v1_embeddings(exchange: Exchange, body: dict[str, Any]) -> web.StreamResponse:
    return await embeddings(exchange, body)


async def _responses(exchange: Exchange, body: dict[str, Any]) -> web.StreamResponse:
    _require_api_version(exchange)
    return await responses(exchange, body)


async def _v1_responses(exchange: Exchange, body: dict[str, Any]) -> web.StreamResponse:
    return await responses(exchange, body)


def add_azure_routes(app: web.Application, state: SimState) -> None:
    surface = AzureSurface()
    responses_surface = AzureResponsesSurface()
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", endpoint(state, surface, _deployment_chat))
    app.router.add_post("/openai/deployments/{deployment}/embeddings", endpoint(state, surface, _deployment_embeddings))
    app.router.add_post("/openai/v1/chat/completions", endpoint(state, surface, _v1_chat))
    app.router.add_post("/openai/v1/embeddings", endpoint(state, surface, _v1_embeddings))
    app.router.add_post("/openai/responses", endpoint(state, responses_surface, _responses))
    app.router.add_post("/openai/v1/responses", endpoint(state, responses_surface, _v1_responses))

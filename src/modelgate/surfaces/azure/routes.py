"""The Azure OpenAI surface: what ``AzureOpenAI`` and the v1 API's ``OpenAI(base_url=.../openai/v1)`` call.

Dated routes, each with a required ``?api-version=`` (versions.py):

    POST /openai/deployments/{deployment}/chat/completions
    POST /openai/deployments/{deployment}/embeddings
    POST /openai/deployments/{deployment}/responses      (with the Responses API plugged in)
    POST /openai/responses                               (the body's model names the deployment)
    GET, DELETE /openai/responses/{id}, GET /openai/responses/{id}/input_items
    GET  /openai/models, /openai/models/{model}

and the v1 routes, which need none (``preview`` is taken):

    POST /openai/v1/chat/completions, /openai/v1/embeddings, /openai/v1/responses
    GET, DELETE /openai/v1/responses/{id}, GET /openai/v1/responses/{id}/input_items
    GET  /openai/v1/models, /openai/v1/models/{model}

``{deployment}`` is a modelgate deployment, and wins over the body's ``model`` (``AzureOpenAI``
with ``azure_deployment`` sends another one there). The key comes as ``api-key`` or as
``Authorization: Bearer`` (an Entra token slot). Bodies, answers and streams are OpenAI's
(``surfaces/openai_format``), run by ``serve_call`` like every other model call; errors are in
Azure's envelopes (render.py). The Responses API comes from the composition (``server/app.py``)
as a ``ResponsesPlug``, as surfaces do not import each other: without it its routes are not served.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from modelgate.http.asgi import Send
from modelgate.http.request import HTTPRequest
from modelgate.http.response import respond
from modelgate.http.routing import Endpoint, Route
from modelgate.pipeline.contract import Call
from modelgate.schema.errors import GatewayError, MethodNotAllowed, NotFound
from modelgate.schema.request import ChatRequest, EmbeddingRequest, ModerationRequest
from modelgate.surfaces.azure.render import DEPLOYMENT_NOT_FOUND, error_body
from modelgate.surfaces.azure.versions import (
    DATED_VERSIONS,
    RESOURCE_NOT_FOUND,
    RESPONSES_VERSIONS,
    check_v1_version,
    check_version,
)
from modelgate.surfaces.base import Core, Fold, Operation, StatefulOperation, StreamRender
from modelgate.surfaces.lifecycle import error_headers, serve_call, serve_stateful_call
from modelgate.surfaces.models import ModelList
from modelgate.surfaces.openai_format.operations import ChatCompletions, Embeddings

MODEL_NOT_FOUND = "model_not_found"  # the core's code for a deployment a key cannot reach


class AzureOperation:
    """An operation of the OpenAI wire format on an Azure route: the path's deployment, where
    there is one, names the model; the answer carries Azure's ``apim-request-id`` too."""

    __slots__ = ("deployment", "inner", "model", "route")

    def __init__(self, inner: Operation, deployment: str | None) -> None:
        self.inner = inner
        self.route = inner.route
        self.deployment = deployment
        self.model = deployment  # the deployment asked for, once known

    def parse(self, body: Any, headers: Mapping[str, str]) -> ChatRequest | EmbeddingRequest | ModerationRequest:
        if self.deployment is not None and isinstance(body, dict):
            body = {**body, "model": self.deployment}
        request = self.inner.parse(body, headers)
        self.model = request.model
        return request

    def headers(self, call: Call) -> dict[str, str]:
        return {**self.inner.headers(call), "apim-request-id": call.request_id}

    def fold(self, call: Call) -> Fold:
        return self.inner.fold(call)

    def stream(self, call: Call) -> StreamRender:
        return self.inner.stream(call)


class AzureStatefulOperation(AzureOperation):
    """An ``AzureOperation`` around an operation that continues from stored state and keeps its answers."""

    __slots__ = ()

    inner: StatefulOperation

    async def prepare(self, call: Call) -> None:
        await self.inner.prepare(call)

    async def keep(self, call: Call) -> None:
        await self.inner.keep(call)


@dataclass(frozen=True, slots=True)
class ResponsesPlug:
    """The Responses API as the Azure routes serve it: a new operation per request (given its
    request id) to create a response, and the endpoints of stored responses."""

    create: Callable[[str], StatefulOperation]
    retrieve: Endpoint
    delete: Endpoint
    input_items: Endpoint


def deployment_not_found(name: str) -> NotFound:
    return NotFound(f"The API deployment '{name[:100]}' does not exist, or this key may not use it. "
                    "GET /openai/models lists the deployments you can call.", code=DEPLOYMENT_NOT_FOUND)


class AzureSurface:
    prefix = "/openai"

    def __init__(self, core: Core, models: ModelList, responses: ResponsesPlug | None = None) -> None:
        self.core = core
        self.models = models
        self.chat = ChatCompletions()
        self.embeddings = Embeddings()
        self.responses = responses

    def routes(self) -> list[Route]:
        dated = DATED_VERSIONS
        routes = [
            Route("POST", "/openai/deployments/{deployment}/chat/completions", self._dated(self.chat, dated)),
            Route("POST", "/openai/deployments/{deployment}/embeddings", self._dated(self.embeddings, dated)),
            Route("GET", "/openai/models", self.list_models),
            Route("GET", "/openai/models/{model}", self.get_model),
            Route("POST", "/openai/v1/chat/completions", self._v1(self.chat)),
            Route("POST", "/openai/v1/embeddings", self._v1(self.embeddings)),
            Route("GET", "/openai/v1/models", self.list_models),
            Route("GET", "/openai/v1/models/{model}", self.get_model),
        ]
        plug = self.responses
        if plug is not None:
            routes += [
                Route("POST", "/openai/deployments/{deployment}/responses", self._create_response(dated=True)),
                Route("POST", "/openai/responses", self._create_response(dated=True)),
                Route("POST", "/openai/v1/responses", self._create_response(dated=False)),
            ]
            for base, versioned in (("/openai/responses", True), ("/openai/v1/responses", False)):
                routes += [
                    Route("GET", base + "/{response_id}", self._checked(plug.retrieve, versioned)),
                    Route("DELETE", base + "/{response_id}", self._checked(plug.delete, versioned)),
                    Route("GET", base + "/{response_id}/input_items", self._checked(plug.input_items, versioned)),
                ]
        return routes

    def error_response(self, error: GatewayError, request_id: str) -> tuple[bytes, dict[str, str]]:
        return error_body(error), error_headers(error, {"x-request-id": request_id, "apim-request-id": request_id})

    def no_route(self, method: str, path: str, path_known: bool) -> GatewayError:
        if path_known:
            return MethodNotAllowed(f"{method} is not allowed on {path}")
        return NotFound(f"Resource not found: there is no route {method} {path}. The Azure OpenAI API here is "
                        "POST /openai/deployments/{deployment}/chat/completions (or /embeddings) with "
                        "?api-version=, and /openai/v1/chat/completions, /openai/v1/embeddings, "
                        "GET /openai/v1/models.", code=RESOURCE_NOT_FOUND)

    def _dated(self, operation: Operation, served: frozenset[str]) -> Endpoint:
        async def endpoint(http: HTTPRequest, send: Send) -> None:
            check_version(http.query, served, http.path)
            await self._serve(AzureOperation(operation, http.path_params.get("deployment")), http, send)
        return endpoint

    def _v1(self, operation: Operation) -> Endpoint:
        async def endpoint(http: HTTPRequest, send: Send) -> None:
            check_v1_version(http.query, http.path)
            await self._serve(AzureOperation(operation, None), http, send)
        return endpoint

    def _create_response(self, *, dated: bool) -> Endpoint:
        assert self.responses is not None
        create = self.responses.create

        async def endpoint(http: HTTPRequest, send: Send) -> None:
            _check_responses_version(http, dated)
            await self._serve(AzureStatefulOperation(create(http.request_id), http.path_params.get("deployment")),
                              http, send)
        return endpoint

    def _checked(self, served: Endpoint, dated: bool) -> Endpoint:
        """A stored-response endpoint behind the api-version check of its route."""
        async def endpoint(http: HTTPRequest, send: Send) -> None:
            _check_responses_version(http, dated)
            await served(http, send)
        return endpoint

    async def _serve(self, operation: AzureOperation, http: HTTPRequest, send: Send) -> None:
        try:
            if isinstance(operation, AzureStatefulOperation):
                await serve_stateful_call(self.core, operation, http, send)
            else:
                await serve_call(self.core, operation, http, send)
        except NotFound as error:
            if error.code != MODEL_NOT_FOUND or operation.model is None:
                raise
            raise deployment_not_found(operation.model) from error

    def _check(self, http: HTTPRequest) -> None:
        if http.path.startswith("/openai/v1/"):
            check_v1_version(http.query, http.path)
        else:
            check_version(http.query, DATED_VERSIONS, http.path)

    async def list_models(self, http: HTTPRequest, send: Send) -> None:
        self._check(http)
        principal = self.core.authenticate(http.headers)
        await respond(send, 200, self.models.listing(False, principal.deployments),
                      {"x-request-id": http.request_id, "apim-request-id": http.request_id})

    async def get_model(self, http: HTTPRequest, send: Send) -> None:
        self._check(http)
        principal = self.core.authenticate(http.headers)
        name = http.path_params["model"]
        try:
            deployment = self.core.deployment(name, principal)
        except NotFound as error:
            raise deployment_not_found(name) from error
        await respond(send, 200, orjson.dumps(self.models.openai_model(deployment.name)),
                      {"x-request-id": http.request_id, "apim-request-id": http.request_id})


def _check_responses_version(http: HTTPRequest, dated: bool) -> None:
    if dated:
        check_version(http.query, RESPONSES_VERSIONS, http.path)
    else:
        check_v1_version(http.query, http.path)

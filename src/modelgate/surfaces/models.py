"""``GET /v1/models`` and ``GET /v1/models/{model}``: the deployments a caller may use.

Both SDKs list models at this path. The answer is OpenAI's model list, or Anthropic's
``ModelInfo`` list when the request carries ``anthropic-version``, as every anthropic SDK
request does. Errors are rendered by the surface that owns ``/v1`` (OpenAI's).

The list changes only with the deployments, so it is kept serialised: each deployment's entry
once, each list once per format and per set of deployments a key may use (keys of a project
usually share one). All of it is made again when the deployments mapping is another one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import orjson

from modelgate.config.settings import DeploymentSettings
from modelgate.http.asgi import Send
from modelgate.http.request import HTTPRequest
from modelgate.http.response import respond
from modelgate.http.routing import Route
from modelgate.surfaces.base import Core

MAX_LISTS = 1024  # serialised lists kept: one per format and set of deployments allowed


class ModelList:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.builds = 0  # times the cache was made from the deployments
        self._source: Mapping[str, DeploymentSettings] | None = None
        self._names: list[str] = []
        self._position: dict[str, int] = {}
        self._entries: tuple[list[bytes], list[bytes]] = ([], [])  # each deployment's, by format
        self._lists: dict[tuple[bool, frozenset[str] | None], bytes] = {}

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/v1/models", self.list_models),
            Route("GET", "/v1/models/{model}", self.get_model),
        ]

    async def list_models(self, http: HTTPRequest, send: Send) -> None:
        principal = self.core.authenticate(http.headers)
        await respond(send, 200, self.listing("anthropic-version" in http.headers, principal.deployments),
                      {"x-request-id": http.request_id})

    def listing(self, anthropic: bool, allowed: frozenset[str] | None) -> bytes:
        """The serialised list of the deployments in ``allowed`` (None: all of them)."""
        if self.core.deployments is not self._source:
            self._build(self.core.deployments)
        body = self._lists.get((anthropic, allowed))
        if body is None:
            body = self._render(anthropic, allowed)
            if len(self._lists) >= MAX_LISTS:
                self._lists.clear()
            self._lists[(anthropic, allowed)] = body
        return body

    def _build(self, deployments: Mapping[str, DeploymentSettings]) -> None:
        self.builds += 1
        self._source = deployments
        self._names = list(deployments)
        self._position = {name: i for i, name in enumerate(self._names)}
        self._entries = ([orjson.dumps(self.openai_model(name)) for name in self._names],
                         [orjson.dumps(self._anthropic_model(name)) for name in self._names])
        self._lists.clear()

    def _render(self, anthropic: bool, allowed: frozenset[str] | None) -> bytes:
        chosen: Sequence[int]
        if allowed is None:
            chosen = range(len(self._names))
        else:
            chosen = sorted(self._position[name] for name in allowed if name in self._position)
        entries = self._entries[anthropic]
        data = b"[" + b",".join(entries[i] for i in chosen) + b"]"
        if not anthropic:
            return b'{"object":"list","data":' + data + b"}"
        first = orjson.dumps(self._names[chosen[0]]) if chosen else b"null"
        last = orjson.dumps(self._names[chosen[-1]]) if chosen else b"null"
        return b'{"data":' + data + b',"has_more":false,"first_id":' + first + b',"last_id":' + last + b"}"

    async def get_model(self, http: HTTPRequest, send: Send) -> None:
        principal = self.core.authenticate(http.headers)
        deployment = self.core.deployment(http.path_params["model"], principal)
        body = (self._anthropic_model(deployment.name) if "anthropic-version" in http.headers
                else self.openai_model(deployment.name))
        await respond(send, 200, orjson.dumps(body), {"x-request-id": http.request_id})

    def openai_model(self, name: str) -> dict[str, object]:
        deployment = self.core.deployments[name]
        return {"id": name, "object": "model", "created": self.core.started_at,
                "owned_by": deployment.targets[0].provider}

    def _anthropic_model(self, name: str) -> dict[str, object]:
        facts = self.core.deployments[name].targets[0].facts
        return anthropic_model(name, self.core.started_at, facts.context_window, facts.max_output_tokens)


def anthropic_model(name: str, created: int, context_window: int | None,
                    max_output_tokens: int | None) -> dict[str, object]:
    model: dict[str, object] = {
        "id": name, "type": "model", "display_name": name,
        "created_at": datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z"),
    }
    if context_window:
        model["max_input_tokens"] = context_window
    if max_output_tokens:
        model["max_tokens"] = max_output_tokens
    return model

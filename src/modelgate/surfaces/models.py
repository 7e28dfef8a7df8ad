"""``GET /v1/models`` and ``GET /v1/models/{model}``: the deployments a caller may use.

Both SDKs list models at this path. The answer is OpenAI's model list, or Anthropic's
``ModelInfo`` list when the request carries ``anthropic-version``, as every anthropic SDK
request does. Errors are rendered by the surface that owns ``/v1`` (OpenAI's).
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from modelgate.http.asgi import Send
from modelgate.http.request import HTTPRequest
from modelgate.http.response import respond
from modelgate.http.routing import Route
from modelgate.surfaces.base import Core


class ModelList:
    def __init__(self, core: Core) -> None:
        self.core = core

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/v1/models", self.list_models),
            Route("GET", "/v1/models/{model}", self.get_model),
        ]

    async def list_models(self, http: HTTPRequest, send: Send) -> None:
        principal = self.core.authenticate(http.headers)
        names = [name for name in self.core.deployments if principal.may_use(name)]
        if "anthropic-version" in http.headers:
            body = anthropic_model_list([self._anthropic_model(n) for n in names])
        else:
            body = {"object": "list", "data": [self._openai_model(name) for name in names]}
        await respond(send, 200, orjson.dumps(body), {"x-request-id": http.request_id})

    async def get_model(self, http: HTTPRequest, send: Send) -> None:
        principal = self.core.authenticate(http.headers)
        deployment = self.core.deployment(http.path_params["model"], principal)
        body = (self._anthropic_model(deployment.name) if "anthropic-version" in http.headers
                else self._openai_model(deployment.name))
        await respond(send, 200, orjson.dumps(body), {"x-request-id": http.request_id})

    def _openai_model(self, name: str) -> dict[str, object]:
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


def anthropic_model_list(models: list[dict[str, object]]) -> dict[str, object]:
    return {"data": models, "has_more": False,
            "first_id": models[0]["id"] if models else None, "last_id": models[-1]["id"] if models else None}

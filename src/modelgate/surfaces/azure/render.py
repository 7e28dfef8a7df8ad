"""The gateway's errors in Azure OpenAI's envelopes (platform.md §1).

Azure answers its own refusals with ``{"error": {"code", "message"}}``: ``DeploymentNotFound`` for
an unknown deployment, ``"404"`` for a route or api-version it does not serve, ``"401"`` for a
bad key, ``"429"`` for a rate limit. Everything else (a bad request, an upstream's error) is an
OpenAI error object with its ``code``, as Azure's model errors are.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelgate.schema.errors import AuthenticationFailed, BudgetExceeded, GatewayError, RateLimited, UpstreamError
from modelgate.surfaces.azure.versions import RESOURCE_NOT_FOUND
from modelgate.surfaces.openai_format.render import error_object as openai_error_object

DEPLOYMENT_NOT_FOUND = "DeploymentNotFound"
AZURE_CODES = frozenset((DEPLOYMENT_NOT_FOUND, RESOURCE_NOT_FOUND))


def error_object(error: GatewayError) -> dict[str, Any]:
    if error.code in AZURE_CODES:
        return {"code": error.code, "message": error.message}
    if isinstance(error, AuthenticationFailed):
        return {"code": "401", "message": error.message}
    rate_limited = isinstance(error, RateLimited) and not isinstance(error, BudgetExceeded)
    if rate_limited or (isinstance(error, UpstreamError) and error.status == 429):
        return {"code": "429", "message": error.message}
    return openai_error_object(error)


def error_body(error: GatewayError) -> bytes:
    return orjson.dumps({"error": error_object(error)})

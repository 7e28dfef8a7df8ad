"""The admin app: a Starlette application beside the gateway's lean request path.

The gateway hands it every request whose path starts with one of ``PATHS``: the admin API under
/admin (routes.py), ``GET /health/deployments`` (health.py) and ``GET /metrics``. Every route needs the master key
(on a gateway without one, every caller is the master); a project key gets 403. Every error, the
framework's own 404 and 405 included, is an OpenAI-style error object with an ``x-request-id``.
The app keeps no state of its own: what it uses (``AdminCore``) is started and stopped by the
gateway's lifespan, so it has no lifespan to run.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from modelgate.schema.errors import (
    GatewayError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
)
from modelgate.storage import DataRejected
from modelgate.surfaces.admin.core import AdminCore
from modelgate.surfaces.admin.health import DeploymentHealth
from modelgate.surfaces.admin.routes import ENDPOINTS, AdminAPI
from modelgate.surfaces.admin.web import new_request_id
from modelgate.surfaces.lifecycle import error_headers
from modelgate.surfaces.openai_format.render import error_body
from modelgate.telemetry.metrics import CONTENT_TYPE

log = logging.getLogger("modelgate")

# Paths starting with these are the admin app's; it answers 404 for those it has no route for.
PATHS = ("/admin", "/health/deployments", "/metrics")
ADMIN_REFUSAL = "The admin API needs the gateway's master key; this is a project key."
HEALTH_REFUSAL = "GET /health/deployments needs the gateway's master key; this is a project key."
METRICS_REFUSAL = ("GET /metrics needs the gateway's master key; this is a project key (or scrape "
                   "telemetry.metrics_port, which needs none).")

Answer = Callable[[Request], Awaitable[Response]]


def admin_app(core: AdminCore) -> Starlette:
    api = AdminAPI(core)
    routes = [AdminRoute(method, path, master_only(core, partial(handler, api), ADMIN_REFUSAL))
              for method, path, handler in ENDPOINTS]
    routes.append(AdminRoute("GET", "/health/deployments",
                             master_only(core, DeploymentHealth(core).deployments, HEALTH_REFUSAL)))
    routes.append(AdminRoute("GET", "/metrics", master_only(core, partial(metrics, core), METRICS_REFUSAL)))
    return Starlette(routes=routes, exception_handlers={GatewayError: gateway_error, HTTPException: routing_error})


async def metrics(core: AdminCore, request: Request) -> Response:
    """Every worker's metrics in Prometheus' text format."""
    return Response(core.metrics_text(), 200, {"x-request-id": new_request_id()}, media_type=CONTENT_TYPE)


class AdminRoute(Route):
    """One method on one path, matched as the gateway matches its other paths: trailing slashes
    aside, and without the HEAD that Starlette adds to a GET."""

    def __init__(self, method: str, path: str, endpoint: Answer) -> None:
        super().__init__(path, endpoint, methods=[method])
        self.methods = {method}

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path: str = scope["path"]
        if path.endswith("/") and path != "/":
            scope = {**scope, "path": path.rstrip("/") or "/"}
        return super().matches(scope)


def master_only(core: AdminCore, answer: Answer, refusal: str) -> Answer:
    """``answer`` for the master key alone (``refusal`` says why to a project key). A value the
    database refused (which the validation should have caught first) is a 400; any other failure
    that is not a ``GatewayError`` is a bug: logged, and answered as an internal error."""
    async def endpoint(request: Request) -> Response:
        if core.authenticate(request.headers).key_id != "master":
            raise PermissionDenied(refusal, code="master_key_required")
        try:
            return await answer(request)
        except GatewayError:
            raise
        except DataRejected as exc:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
            raise InvalidRequest("The database cannot hold a value of this request; the log has the details.",
                                 code="value_not_storable") from exc
        except Exception as exc:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            raise InternalError("The gateway hit an internal error; the log has the details.") from exc
    return endpoint


async def gateway_error(request: Request, exc: Exception) -> Response:
    """``exc`` as an OpenAI-style error object, with its headers and an ``x-request-id``."""
    assert isinstance(exc, GatewayError)
    headers = error_headers(exc, {"x-request-id": new_request_id()})
    return Response(error_body(exc), exc.status, headers, media_type="application/json")


async def routing_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no route for the path, or not for this method), as the gateway's."""
    assert isinstance(exc, HTTPException)
    return await gateway_error(request, _gateway_error_for(request, exc))


def _gateway_error_for(request: Request, exc: HTTPException) -> GatewayError:
    method, path = request.method, request.url.path
    if exc.status_code == 404:
        return NotFound(f"There is no route {method} {path}. The OpenAI API is under /v1 "
                        "(POST /v1/chat/completions, GET /v1/models).", code="unknown_url")
    if exc.status_code == 405:
        return MethodNotAllowed(f"{method} is not allowed on {path}")
    error: GatewayError = InvalidRequest(exc.detail) if exc.status_code < 500 else InternalError(exc.detail)
    error.status = exc.status_code
    return error

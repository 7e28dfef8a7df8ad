"""The ASGI application: lifespan (services up and down) and dispatch of paths to surfaces.

Each surface owns a path prefix; the longest prefix that matches a path picks the surface that
renders its errors, whether an endpoint raised them, no endpoint matched, or something failed
unexpectedly. Endpoints raise ``GatewayError`` before their response starts; after it started,
a surface ends its own stream.

The admin app (surfaces/admin/app.py, on Starlette) answers the paths under /admin and
/health/deployments, and the portal (surfaces/portal/app.py) those under /ui, where a browser that
asks for / is sent; prefix checks send them there, ahead of the lean path.
"""

from __future__ import annotations

import logging
from functools import partial

import orjson

from modelgate.config.settings import Settings
from modelgate.http.asgi import ASGIApp, Receive, Scope, Send
from modelgate.http.request import HTTPRequest
from modelgate.http.response import respond
from modelgate.http.routing import PathRouter, Route
from modelgate.pipeline.sealing import Sealer
from modelgate.schema.errors import GatewayError, InternalError
from modelgate.server.services import Services, start_services
from modelgate.storage import ResponseStore
from modelgate.surfaces.admin.app import PATHS as ADMIN_PATHS
from modelgate.surfaces.admin.app import admin_app
from modelgate.surfaces.anthropic.routes import AnthropicSurface
from modelgate.surfaces.azure.routes import AzureSurface, ResponsesPlug
from modelgate.surfaces.base import Surface
from modelgate.surfaces.models import ModelList
from modelgate.surfaces.openai.routes import OpenAISurface
from modelgate.surfaces.portal.app import PREFIX as PORTAL
from modelgate.surfaces.portal.app import Portal
from modelgate.surfaces.responses.operation import CreateResponse
from modelgate.surfaces.responses.routes import ResponsesSurface
from modelgate.telemetry.logs import REQUEST_ID

log = logging.getLogger("modelgate")


class GatewayApp:
    """An ASGI app serving every surface of one gateway process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: Services | None = None
        self.router = PathRouter([])
        self.surfaces: list[Surface] = []
        self.fallback: Surface | None = None
        self.admin: ASGIApp | None = None
        self.portal: ASGIApp | None = None

    async def startup(self) -> None:
        self.services = services = await start_services(self.settings)
        openai = OpenAISurface(services)
        models = ModelList(services)
        # Longest prefix first: /v1/messages is Anthropic's, /v1/responses the Responses API's, the
        # rest of /v1 OpenAI's; /openai Azure's.
        responses = ResponsesSurface(services)
        azure_responses = ResponsesPlug(create=partial(CreateResponse, services), retrieve=responses.retrieve,
                                        delete=responses.delete, input_items=responses.input_items)
        self.surfaces = [AnthropicSurface(services), responses, openai,
                         AzureSurface(services, models, azure_responses)]
        self.fallback = openai
        routes = [Route("GET", "/health", self.health)]
        for surface in self.surfaces:
            routes += surface.routes()
        routes += models.routes()
        self.router = PathRouter(routes)
        self.admin = admin_app(services)
        self.portal = Portal(services, self)

    @property
    def responses(self) -> ResponseStore:
        """The stored responses (once started)."""
        assert self.services is not None, "lifespan startup has not run"
        return self.services.responses

    @property
    def sealer(self) -> Sealer:
        """What seals the state handed to clients (once started)."""
        assert self.services is not None, "lifespan startup has not run"
        return self.services.sealer

    async def shutdown(self) -> None:
        if self.services is not None:
            await self.services.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path.startswith(ADMIN_PATHS):
                assert self.admin is not None, "lifespan startup has not run"
                await self.admin(scope, receive, send)
            elif path == PORTAL or path.startswith(PORTAL + "/"):
                assert self.portal is not None, "lifespan startup has not run"
                await self.portal(scope, receive, send)
            elif path == "/" and _browser(scope):
                await respond(send, 302, b"", {"location": PORTAL + "/"})
            else:
                await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    def surface(self, path: str) -> Surface:
        for surface in self.surfaces:
            if path == surface.prefix or path.startswith(surface.prefix + "/"):
                return surface
        assert self.fallback is not None, "lifespan startup has not run"
        return self.fallback

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = HTTPRequest(scope, receive)
        REQUEST_ID.set(request.request_id)  # this task's log lines name it (log_format: json)
        endpoint, path_known = self.router.match(request)
        try:
            if endpoint is None:
                raise self.surface(request.path).no_route(request.method, request.path, path_known)
            await endpoint(request, send)
        except GatewayError as error:
            await self._error(request, send, error)
        except Exception:
            # Every expected failure is a GatewayError; this is a bug.
            log.exception("unhandled error on %s %s", request.method, request.path)
            await self._error(request, send, InternalError(
                "The gateway hit an internal error; the log has the details."))

    async def _error(self, request: HTTPRequest, send: Send, error: GatewayError) -> None:
        body, headers = self.surface(request.path).error_response(error, request.request_id)
        await respond(send, error.status, body, headers)

    async def health(self, request: HTTPRequest, send: Send) -> None:
        await respond(send, 200, orjson.dumps({"status": "ok"}), {})

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _browser(scope: Scope) -> bool:
    """Whether a request is a browser's asking for a page (a GET that accepts HTML)."""
    if scope["method"] != "GET":
        return False
    return any(name == b"accept" and b"text/html" in value for name, value in scope["headers"])


def create_app(settings: Settings) -> GatewayApp:
    return GatewayApp(settings)

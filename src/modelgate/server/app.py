"""The ASGI application: lifespan (services up and down) and dispatch of paths to surfaces."""

from __future__ import annotations

import logging

import orjson

from modelgate.config.settings import Settings
from modelgate.schema.errors import GatewayError, NotFound
from modelgate.server.http import HTTPRequest, Receive, Scope, Send, respond
from modelgate.server.routing import Route, Router
from modelgate.server.services import Services
from modelgate.surfaces.admin.health import DeploymentHealth
from modelgate.surfaces.admin.routes import AdminSurface
from modelgate.surfaces.anthropic import routes as anthropic
from modelgate.surfaces.openai.responses import error_body
from modelgate.surfaces.openai.routes import OpenAISurface

log = logging.getLogger("modelgate")


class Gateway:
    """An ASGI app serving every surface of one gateway process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: Services | None = None
        self.router: Router | None = None

    async def startup(self) -> None:
        self.services = await Services.start(self.settings)
        routes = [Route("GET", "/health", self.health)]
        routes += OpenAISurface(self.services).routes()
        routes += anthropic.AnthropicSurface(self.services).routes()
        routes += AdminSurface(self.services).routes()
        routes += DeploymentHealth(self.services).routes()
        self.router = Router(routes)

    async def shutdown(self) -> None:
        if self.services is not None:
            await self.services.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = HTTPRequest(scope, receive)
        assert self.router is not None, "lifespan startup has not run"
        endpoint, path_known = self.router.match(request)
        if endpoint is None and request.path.startswith(anthropic.PATH_PREFIX):
            await anthropic.no_route(request, send, path_known)
            return
        if endpoint is None:
            error = (GatewayError(f"{request.method} is not allowed on {request.path}", status=405,
                                  type="invalid_request_error", code="method_not_allowed")
                     if path_known else
                     NotFound(f"There is no route {request.method} {request.path}. The OpenAI API is "
                              "under /v1 (POST /v1/chat/completions, GET /v1/models).",
                              code="unknown_url"))
            await respond(send, error.status, error_body(error), {})
            return
        try:
            await endpoint(request, send)
        except Exception:
            # Every expected failure is a GatewayError rendered by its surface; this is a bug.
            log.exception("unhandled error on %s %s", request.method, request.path)
            error = GatewayError("The gateway hit an internal error; the log has the details.",
                                 status=500, type="server_error", code="internal_error")
            if request.path.startswith(anthropic.PATH_PREFIX):
                await anthropic.send_error(send, error, request.scope.get("modelgate.request_id", ""))
                return
            await respond(send, 500, error_body(error), {})

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


def create_app(settings: Settings) -> Gateway:
    return Gateway(settings)

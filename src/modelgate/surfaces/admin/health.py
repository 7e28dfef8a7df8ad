"""``GET /health/deployments``: every deployment's targets as the router sees them (master key).

One entry per deployment, in config order, with its strategy and fallbacks, and per target: the
breaker's state (closed, open, half-open) and why it opened, seconds until an open one lets a
probe through, the moving average of time to first token, the error rate and attempt count over
the last minute, attempts in flight. ``shared`` says whether breaker state is shared through
Redis (``connected`` then says whether it is right now) or kept by this process alone. The
latency and error figures are this process's own.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from modelgate.http.asgi import Send
from modelgate.http.request import HTTPRequest
from modelgate.http.response import respond
from modelgate.http.routing import Route
from modelgate.schema.errors import PermissionDenied
from modelgate.server.services import Services


class DeploymentHealth:
    def __init__(self, services: Services) -> None:
        self.services = services

    def routes(self) -> list[Route]:
        return [Route("GET", "/health/deployments", self.deployments)]

    async def deployments(self, http: HTTPRequest, send: Send) -> None:
        principal = self.services.auth.authenticate(http.headers)
        if principal.key_id != "master":
            raise PermissionDenied("GET /health/deployments needs the gateway's master key; this is a project key.",
                                   code="master_key_required")
        await respond(send, 200, orjson.dumps(self.report()),
                      {"x-request-id": http.request_id, "cache-control": "no-store"})

    def report(self) -> dict[str, Any]:
        router = self.services.router
        now = time.monotonic()
        deployments = []
        for name, group in router.groups.items():
            targets = []
            for target in group.targets:
                figures = target.health.snapshot(now)
                figures["weight"] = target.weight
                figures["context_window"] = target.facts.context_window
                targets.append(figures)
            deployments.append({"name": name, "strategy": group.strategy, "fallbacks": group.fallbacks,
                                "timeout": group.timeout, "retries": group.retries,
                                "max_share": group.max_share, "targets": targets})
        sync = self.services.health_sync
        return {"shared": router.health.shared, "connected": sync.connected if sync is not None else None,
                "deployments": deployments}

"""``GET /health/deployments``: every deployment's targets as the router sees them (master key).

One entry per deployment, in config order, with its strategy and fallbacks, and per target: the
breaker's state (closed, open, half-open) and why it opened, seconds until an open one lets a
probe through, the moving average of time to first token, the error rate and attempt count over
the last minute, attempts in flight. ``shared`` says whether breaker state is shared through
Redis (``connected`` then says whether it is right now) or kept by this process alone. The
latency and error figures are this process's own.

``redis`` (null without ``redis_url``) is the circuit around Redis (``redis_client/circuit.py``):
``state`` ``closed`` (in use) or ``open`` (unreachable: limits and budgets do what their
``redis_outage`` says), ``for_s`` in that state, the ``error`` that opened it and
``next_probe_in_s`` while open; ``opened``, ``probes``, ``failed_fast`` (commands that failed at
once while open) and ``timeouts`` (answers waited for in vain) count since the start.

A target of a local model has ``engine``: its replicas on this process (``index``, ``state``:
starting, ready, dead or stopped, ``pid``, requests ``running``), the requests ``waiting`` for
one, ``restarts`` so far, and ``failure`` (why the last start failed, until a replica is ready);
null while no pool runs it here.

``usage`` is this process's usage recorder: ``written`` (records the database took since the
start), ``backlog`` (journal segments waiting for the database: non-zero while it is unreachable),
``quarantined`` (records the database refused, set aside with their reason in ``quarantine_file``
since the start; each one is also logged).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from modelgate.engines.pool import ReplicaPool
from modelgate.providers.local import LocalProvider
from modelgate.surfaces.admin.core import AdminCore
from modelgate.surfaces.admin.web import json_response, new_request_id


class DeploymentHealth:
    def __init__(self, core: AdminCore) -> None:
        self.core = core

    async def deployments(self, request: Request) -> Response:
        return json_response(200, self.report(), {"x-request-id": new_request_id(), "cache-control": "no-store"})

    def report(self) -> dict[str, Any]:
        router = self.core.router
        now = time.monotonic()
        deployments = []
        for name, group in router.groups.items():
            targets = []
            for target in group.targets:
                figures = target.health.snapshot(now)
                figures["weight"] = target.weight
                figures["context_window"] = target.facts.context_window
                if isinstance(target.provider, LocalProvider):
                    figures["engine"] = engine_json(target.provider.running(target.upstream))
                targets.append(figures)
            deployments.append({"name": name, "strategy": group.strategy, "fallbacks": group.fallbacks,
                                "timeout": group.timeout, "retries": group.retries,
                                "max_share": group.max_share, "targets": targets})
        sync = self.core.health_sync
        redis = self.core.redis
        recorder = self.core.recorder
        usage = {"written": recorder.written, "backlog": recorder.backlog, "quarantined": recorder.quarantined,
                 "quarantine_file": str(recorder.quarantine.path)}
        return {"shared": router.health.shared, "connected": sync.connected if sync is not None else None,
                "redis": redis.status() if redis is not None else None, "usage": usage, "deployments": deployments}


def engine_json(pool: ReplicaPool | None) -> dict[str, Any] | None:
    """What a local model's pool on this process is doing."""
    if pool is None:
        return None
    return {"replicas": [{"index": r.index, "state": r.state, "pid": r.pid, "running": r.running}
                         for r in pool.replicas],
            "waiting": pool.waiting, "restarts": pool.restarts,
            "failure": str(pool.failure) if pool.failure is not None else None}

"""The runtime control API under ``/sim/``: faults, stats and reset, for chaos runs and tests.

* ``POST /sim/faults`` body ``{"model": "name" | "*", "fault": "<spec>" | null, "count": N | null}`` sets the
  fault for a model (``"*"``: every model without its own), or clears it with ``"fault": null``; ``count``
  applies it to the next N requests only. Answers ``{"faults": {...}}`` with what is now installed.
* ``GET /sim/stats`` → ``{"requests", "by_model", "by_api", "faults", "faults_served"}``.
* ``POST /sim/reset`` clears counters, runtime faults and the prompt/signature caches.

These routes need no API key: they are the operator's, not a provider's.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from modelgate.simulator.faults import FaultSpecError, parse_fault
from modelgate.simulator.state import SimState


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def add_control_routes(app: web.Application, state: SimState) -> None:
    async def set_fault(request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _json({"error": 'body must be JSON: {"model": ..., "fault": ..., "count": ...}'}, 400)
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return _json({"error": "'model' is required: a model name or \"*\""}, 400)
        spec, count = body.get("fault"), body.get("count")
        if count is not None and (not isinstance(count, int) or count < 1):
            return _json({"error": "'count' must be a positive integer or null"}, 400)
        if spec is not None and not isinstance(spec, str):
            return _json({"error": "'fault' must be a fault spec string or null"}, 400)
        try:
            fault = parse_fault(spec) if spec is not None else None
        except FaultSpecError as exc:
            return _json({"error": str(exc)}, 400)
        state.faults.set(body["model"], fault, count)
        return _json({"faults": state.faults.snapshot()})

    async def stats(request: web.Request) -> web.Response:
        return _json({**state.stats.as_dict(), "active_faults": state.faults.snapshot()})

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        return _json({"reset": True})

    app.router.add_post("/sim/faults", set_fault)
    app.router.add_get("/sim/stats", stats)
    app.router.add_post("/sim/reset", reset)

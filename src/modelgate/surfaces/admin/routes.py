"""The admin API under /admin: projects, keys, usage reports and provider statements.

Every route needs the master key (on a gateway without one, every caller is the master); a
project key gets 403. Errors are OpenAI-style error objects. The document of this API is
``GET /admin/openapi.json`` (surfaces/admin/openapi.py).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson

from modelgate.auth.keyadmin import KeyAdmin, parse_key_spec, parse_limit_changes, parse_project_spec
from modelgate.http.asgi import Send
from modelgate.http.request import HTTPRequest
from modelgate.http.response import respond
from modelgate.http.routing import Endpoint, Route
from modelgate.schema.errors import InvalidRequest, NotFound, PermissionDenied
from modelgate.server.services import Services
from modelgate.surfaces.admin import wire
from modelgate.surfaces.admin.openapi import admin_openapi

PREFIX = "/admin"
# (method, path, handler): the API that openapi.py documents.
ENDPOINTS = [
    ("GET", "/admin/openapi.json", "openapi"),
    ("POST", "/admin/projects", "create_project"),
    ("GET", "/admin/projects", "list_projects"),
    ("GET", "/admin/projects/{name}", "get_project"),
    ("PATCH", "/admin/projects/{name}", "update_project"),
    ("POST", "/admin/keys", "create_key"),
    ("GET", "/admin/keys", "list_keys"),
    ("GET", "/admin/keys/{id}", "get_key"),
    ("DELETE", "/admin/keys/{id}", "revoke_key"),
    ("GET", "/admin/usage", "usage"),
    ("GET", "/admin/statements", "statements"),
]


class AdminSurface:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.storage = services.storage
        self.admin = KeyAdmin(services.storage, list(services.settings.deployments), services.key_sync.changed)

    def routes(self) -> list[Route]:
        return [Route(method, path, self._master_only(getattr(self, handler)))
                for method, path, handler in ENDPOINTS]

    def _master_only(self, endpoint: Endpoint) -> Endpoint:
        async def checked(http: HTTPRequest, send: Send) -> None:
            principal = self.services.auth.authenticate(http.headers)
            if principal.key_id != "master":
                raise PermissionDenied("The admin API needs the gateway's master key; this is a project key.",
                                       code="master_key_required")
            await endpoint(http, send)
        return checked

    async def openapi(self, http: HTTPRequest, send: Send) -> None:
        await _json(send, 200, admin_openapi())

    # -- projects ----------------------------------------------------------------------------

    async def create_project(self, http: HTTPRequest, send: Send) -> None:
        name, limits = parse_project_spec(await http.json(), self.admin.deployments)
        record = await self.admin.create_project(name, limits)
        await _json(send, 201, wire.project_json(record))

    async def list_projects(self, http: HTTPRequest, send: Send) -> None:
        found = await self.storage.keys.list_projects()
        await _json(send, 200, {"object": "list", "data": [wire.project_json(p) for p in found]})

    async def get_project(self, http: HTTPRequest, send: Send) -> None:
        name = http.path_params["name"]
        record = await self.storage.keys.get_project(name)
        if record is None:
            raise NotFound(f"There is no project {name!r}.", code="project_not_found")
        await _json(send, 200, wire.project_json(record))

    async def update_project(self, http: HTTPRequest, send: Send) -> None:
        changes = parse_limit_changes(await http.json(), self.admin.deployments)
        record = await self.admin.update_project(http.path_params["name"], changes)
        await _json(send, 200, wire.project_json(record))

    # -- keys --------------------------------------------------------------------------------

    async def create_key(self, http: HTTPRequest, send: Send) -> None:
        issued = await self.admin.create_key(parse_key_spec(await http.json(), self.admin.deployments))
        await _json(send, 201, wire.issued_key_json(issued))

    async def list_keys(self, http: HTTPRequest, send: Send) -> None:
        params = _query(http, {"project", "include_revoked"})
        include = params.get("include_revoked", "false")
        if include not in ("true", "false"):
            raise InvalidRequest("'include_revoked' must be true or false", param="include_revoked")
        found = await self.storage.keys.list_keys(params.get("project"), include_revoked=include == "true")
        await _json(send, 200, {"object": "list", "data": [wire.key_json(k) for k in found]})

    async def get_key(self, http: HTTPRequest, send: Send) -> None:
        key_id = http.path_params["id"]
        record = await self.storage.keys.get_key(key_id)
        if record is None:
            raise NotFound(f"There is no key {key_id!r}.", code="key_not_found")
        await _json(send, 200, wire.key_json(record))

    async def revoke_key(self, http: HTTPRequest, send: Send) -> None:
        record = await self.admin.revoke_key(http.path_params["id"])
        await _json(send, 200, wire.key_json(record))

    # -- reports -----------------------------------------------------------------------------

    async def usage(self, http: HTTPRequest, send: Send) -> None:
        params = _query(http, {"project", "key", "deployment", "provider", "model", "since", "until", "period",
                               "group_by", "format"})
        filters = wire.report_filters(params)
        group_by = wire.parse_group_by(params.get("group_by"))
        rows = await self.storage.query_usage(filters, group_by)
        if _format(params) == "csv":
            await _csv(send, wire.usage_csv(rows, group_by), "usage.csv")
        else:
            await _json(send, 200, wire.usage_report_json(rows, filters, group_by))

    async def statements(self, http: HTTPRequest, send: Send) -> None:
        params = _query(http, {"provider", "since", "until", "period", "format"})
        filters = wire.report_filters(params)
        rows = await self.storage.query_usage(filters, ["provider", "model"])
        found = wire.statements(rows, filters.since, filters.until)
        if _format(params) == "csv":
            await _csv(send, wire.statements_csv(found), "statements.csv")
        else:
            await _json(send, 200, {"object": "list", "data": [wire.statement_json(s) for s in found]})


def _query(http: HTTPRequest, allowed: set[str]) -> dict[str, str]:
    params = dict(parse_qsl(http.query.decode("latin-1"), keep_blank_values=False))
    for name in params:
        if name not in allowed:
            raise InvalidRequest(f"Unknown query parameter '{name}'; allowed: {', '.join(sorted(allowed))}",
                                 param=name)
    return params


def _format(params: dict[str, str]) -> str:
    value = params.get("format", "json")
    if value not in ("json", "csv"):
        raise InvalidRequest(f"'format' must be json or csv, got {value!r}", param="format")
    return value


async def _json(send: Send, status: int, body: Any) -> None:
    await respond(send, status, orjson.dumps(body), {})


async def _csv(send: Send, text: str, filename: str) -> None:
    await respond(send, 200, text.encode(), {"content-disposition": f'attachment; filename="{filename}"'},
                  content_type=b"text/csv; charset=utf-8")

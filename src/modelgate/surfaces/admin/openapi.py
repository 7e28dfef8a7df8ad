"""The OpenAPI 3.1 document of the admin API, served at ``GET /admin/openapi.json``.

Written by hand next to the routes it describes; the tests check every route is in it and every
answer the API gives matches its schema.
"""

from __future__ import annotations

from typing import Any

from modelgate import __version__
from modelgate.storage import GROUP_BY

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties,
            "required": required if required is not None else list(properties), "additionalProperties": False}


def _list(item: str) -> dict[str, Any]:
    return _object({"object": {"const": "list"}, "data": {"type": "array", "items": _ref(item)}})


TIME = {"type": "string", "format": "date-time"}
INT = {"type": "integer", "minimum": 0}
MONEY = {"type": "number"}

LIMITS: dict[str, Any] = {
    "deployments": _nullable({"type": "array", "items": {"type": "string"},
                              "description": "Deployments it may call; null: all"}),
    "rpm": _nullable({"type": "integer", "minimum": 1, "description": "Requests per minute"}),
    "tpm": _nullable({"type": "integer", "minimum": 1, "description": "Tokens per minute"}),
    "budget": _nullable({"type": "number", "minimum": 0, "description": "USD per budget_period"}),
    "budget_period": {"enum": ["day", "month"]},
}
LIMITS_IN: dict[str, Any] = {
    "deployments": {"type": "array", "items": {"type": "string"}},
    "rpm": {"type": "integer", "minimum": 1},
    "tpm": {"type": "integer", "minimum": 1},
    "budget": {"type": "number", "minimum": 0},
    "budget_period": {"enum": ["day", "month"], "default": "month"},
}
TOKENS = {name: INT for name in ("input_tokens", "cached_input_tokens", "cache_write_tokens",
                                 "reasoning_tokens", "output_tokens")}
USAGE_TOTALS = {"requests": INT, "errors": INT, **TOKENS, "cost": MONEY, "revenue": MONEY, "margin": MONEY}
KEY: dict[str, Any] = {
    "object": {"const": "api_key"}, "id": {"type": "string"}, "project": {"type": "string"},
    "name": _nullable({"type": "string"}), "prefix": {"type": "string"}, **LIMITS,
    "expires_at": _nullable(TIME), "created_at": TIME, "revoked_at": _nullable(TIME),
    "status": {"enum": ["active", "expired", "revoked"]},
}
GROUPS = {name: _nullable({"type": "string"}) for name in GROUP_BY}

SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": _object({
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": _nullable({"type": "string"}), "code": _nullable({"type": "string"})})}),
    "Project": _object({"object": {"const": "project"}, "name": {"type": "string"}, **LIMITS, "created_at": TIME}),
    "ProjectCreate": _object({"name": {"type": "string"}, **LIMITS_IN}, required=["name"]),
    "ProjectUpdate": _object({name: _nullable(schema) for name, schema in LIMITS_IN.items()}, required=[]),
    "ProjectList": _list("Project"),
    "Key": _object(KEY),
    "KeyCreate": _object({
        "project": {"type": "string", "description": "Created (with no limits) if it does not exist"},
        "name": {"type": "string"}, **LIMITS_IN,
        "expires": {"type": "string", "description": "ISO date (midnight UTC) or date-time"}},
        required=["project"]),
    "KeyCreated": _object({**KEY, "key": {"type": "string", "description": "The key; shown this once only"}}),
    "KeyList": _list("Key"),
    "UsageRow": _object({**GROUPS, **USAGE_TOTALS}, required=list(USAGE_TOTALS)),
    "UsageReport": _object({
        "object": {"const": "usage_report"},
        "filters": _object({name: _nullable({"type": "string"}) for name in
                            ("project", "key", "deployment", "provider", "model", "since", "until")}),
        "group_by": {"type": "array", "items": {"enum": list(GROUP_BY)}},
        "data": {"type": "array", "items": _ref("UsageRow")},
        "totals": _ref("UsageRow")}),
    "Statement": _object({
        "object": {"const": "statement"}, "provider": {"type": "string"},
        "since": _nullable(TIME), "until": _nullable(TIME),
        "lines": {"type": "array", "items": _object({
            "model": _nullable({"type": "string"}), "requests": INT, **TOKENS, "cost": MONEY})},
        "requests": INT, "total": {"type": "number", "description": "USD owed to the provider"}}),
    "StatementList": _list("Statement"),
}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _answer(description: str, schema: str | None = None, csv: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {"schema": _ref(schema)}} if schema else {}
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    return {"description": description, **({"content": content} if content else {})}


ERRORS = {status: {"description": text, "content": {JSON: {"schema": _ref("Error")}}}
          for status, text in (("400", "Invalid request: the message names the field"),
                               ("401", "Missing or wrong key"), ("403", "Not the master key"))}
FILTERS = [
    _query("project", "Only this project"), _query("key", "Only this key id"),
    _query("deployment", "Only this deployment"), _query("provider", "Only this provider"),
    _query("model", "Only this upstream model"),
    _query("since", "From this ISO date or date-time (inclusive, UTC)"),
    _query("until", "Up to this ISO date or date-time (exclusive, UTC)"),
    _query("period", "A month (2030-01) or day (2030-01-31) instead of since/until"),
]
FORMAT = _query("format", "json (default) or csv", {"enum": ["json", "csv"]})


def _operation(summary: str, answers: dict[str, Any], body: str | None = None,
               parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": {**answers, **ERRORS}}
    if body:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(body)}}}
    if parameters:
        operation["parameters"] = parameters
    return operation


def admin_openapi() -> dict[str, Any]:
    not_found = {"404": {"description": "No such record", "content": {JSON: {"schema": _ref("Error")}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "modelgate admin API", "version": __version__,
                 "description": "Projects, keys, usage and provider statements. Every route needs the "
                                "gateway's master key."},
        "security": [{"masterKey": []}],
        "paths": {
            "/admin/openapi.json": {"get": _operation("This document", {"200": {"description": "OpenAPI 3.1"}})},
            "/admin/projects": {
                "post": _operation("Create a project", {
                    "201": _answer("The project", "Project"),
                    "409": {"description": "The project exists", "content": {JSON: {"schema": _ref("Error")}}}},
                    body="ProjectCreate"),
                "get": _operation("List the projects", {"200": _answer("The projects", "ProjectList")}),
            },
            "/admin/projects/{name}": {
                "parameters": [_path("name")],
                "get": _operation("One project", {"200": _answer("The project", "Project"), **not_found}),
                "patch": _operation("Change a project's limits (null clears one)",
                                    {"200": _answer("The project", "Project"), **not_found}, body="ProjectUpdate"),
            },
            "/admin/keys": {
                "post": _operation("Create a key; the answer holds the key, shown this once",
                                   {"201": _answer("The key", "KeyCreated")}, body="KeyCreate"),
                "get": _operation("List the keys (not their secrets)", {"200": _answer("The keys", "KeyList")},
                                  parameters=[_query("project", "Only this project's keys"),
                                              _query("include_revoked", "Revoked keys too",
                                                     {"enum": ["true", "false"]})]),
            },
            "/admin/keys/{id}": {
                "parameters": [_path("id")],
                "get": _operation("One key", {"200": _answer("The key", "Key"), **not_found}),
                "delete": _operation("Revoke a key: it stops working on every gateway process at once",
                                     {"200": _answer("The revoked key", "Key"), **not_found}),
            },
            "/admin/usage": {"get": _operation(
                "Usage totals with cost, revenue and margin, optionally grouped",
                {"200": _answer("The report", "UsageReport", csv=True)},
                parameters=[*FILTERS, _query("group_by", f"Comma-separated: {', '.join(GROUP_BY)}"), FORMAT])},
            "/admin/statements": {"get": _operation(
                "What is owed to each provider for a period, by model",
                {"200": _answer("One statement per provider", "StatementList", csv=True)},
                parameters=[_query("provider", "Only this provider"), *FILTERS[5:], FORMAT])},
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"masterKey": {"type": "http", "scheme": "bearer",
                                              "description": "The master_key of the gateway's config"}},
        },
    }

"""The OpenAPI 3.1 document of the admin API, served at ``GET /admin/openapi.json``.

Built from the routes it describes: each route of ``routes.ENDPOINTS`` is one operation, and each
handler declares how its operation reads with ``@documented``. The tests check every answer the
API gives matches its schema.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from modelgate import __version__
from modelgate.auth.keyadmin import KEY_NAME_LENGTH, NAME, NAME_LENGTH
from modelgate.storage import GROUP_BY
from modelgate.storage.bounds import MAX_BUDGET, MAX_RPM, MAX_TPM
from modelgate.surfaces.admin import evals
from modelgate.surfaces.admin.wire import TEXT_PARAMS

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
SAFETY = {"type": "string", "description": "A content policy of the config (safety.policies), run on the project's "
                                           "requests besides their deployment's"}
INT = {"type": "integer", "minimum": 0}
MONEY = {"type": "number"}

RPM = {"type": "integer", "minimum": 1, "maximum": MAX_RPM}
TPM = {"type": "integer", "minimum": 1, "maximum": MAX_TPM}
BUDGET = {"type": "number", "minimum": 0, "maximum": MAX_BUDGET}
PROJECT_NAME = {"type": "string", "pattern": f"^{NAME.pattern}$", "maxLength": NAME_LENGTH}
LIMITS: dict[str, Any] = {
    "deployments": _nullable({"type": "array", "items": {"type": "string"},
                              "description": "Deployments it may call; null: all"}),
    "rpm": _nullable({**RPM, "description": "Requests per minute"}),
    "tpm": _nullable({**TPM, "description": "Tokens per minute"}),
    "budget": _nullable({**BUDGET, "description": "USD per budget_period"}),
    "budget_period": {"enum": ["day", "month"]},
}
LIMITS_IN: dict[str, Any] = {
    "deployments": {"type": "array", "items": {"type": "string"}},
    "rpm": RPM,
    "tpm": TPM,
    "budget": BUDGET,
    "budget_period": {"enum": ["day", "month"], "default": "month"},
}
TOKENS = {name: INT for name in ("input_tokens", "cached_input_tokens", "cache_write_tokens",
                                 "reasoning_tokens", "output_tokens")}
CACHE_TOTALS = {"cache_hits": {**INT, "description": "Requests answered from the response cache"},
                "saved": {**MONEY, "description": "USD of provider cost the cache's answers did not spend"}}
USAGE_TOTALS = {"requests": INT, "errors": INT, **TOKENS, "cost": MONEY, "revenue": MONEY, "margin": MONEY,
                **CACHE_TOTALS}
KEY: dict[str, Any] = {
    "object": {"const": "api_key"}, "id": {"type": "string"}, "project": {"type": "string"},
    "name": _nullable({"type": "string"}), "prefix": {"type": "string"}, **LIMITS,
    "expires_at": _nullable(TIME), "created_at": TIME, "revoked_at": _nullable(TIME),
    "status": {"enum": ["active", "expired", "revoked"]},
}
GROUPS = {name: _nullable({"type": "boolean"} if name == "cache_hit" else {"type": "string"}) for name in GROUP_BY}
_TEXT = {"type": "string"}
REQUEST: dict[str, Any] = {
    "object": {"const": "request"}, "id": _TEXT, "created_at": TIME, "project": _nullable(_TEXT),
    "key": _nullable(_TEXT), "deployment": _TEXT, "provider": _nullable(_TEXT), "model": _nullable(_TEXT),
    "route": _TEXT, "surface": {"enum": ["openai", "anthropic", "azure"]}, "path": _TEXT,
    "status": {"type": "integer"}, "latency_ms": {"type": "number"}, "ttft_ms": _nullable({"type": "number"}),
    **TOKENS, "cost": MONEY, "price": MONEY, "attempts": INT, "error": _nullable(_TEXT),
    "verdict": _nullable(_TEXT), "cache_hit": {"type": "boolean"}, "saved": MONEY,
    "client_ip": _nullable(_TEXT), "user_agent": _nullable(_TEXT), "trace_id": _nullable(_TEXT)}
_NUMBER = {"type": "number"}
SHA256 = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$", "description": "A dataset file's sha256"}
EVAL_RUN: dict[str, Any] = {
    "object": {"const": "eval_run"}, "id": _TEXT, "name": _TEXT,
    "dataset": {"type": "string", "description": "The dataset file's path, as the run was given it"},
    "dataset_sha256": _TEXT, "items": INT, "deployments": {"type": "array", "items": _TEXT},
    "scorers": {"type": "array", "items": _TEXT}, "repeats": INT, "project": _TEXT,
    "status": {"enum": ["running", "done", "stopped"]}, "created_at": TIME,
    "updated_at": {**TIME, "description": "The latest answer stored, or the latest change of status"},
    "answers": {**INT, "description": "Results stored so far"},
    "expected": {**INT, "description": "items * repeats * deployments"},
    "progress": {"type": "number", "minimum": 0, "maximum": 1, "description": "answers / expected"}}
MEAN = _object({"mean": _nullable(_NUMBER), "low": _nullable(_NUMBER), "high": _nullable(_NUMBER), "n": INT})
EVAL_SUMMARY = _object({
    "deployment": _TEXT, "answers": INT, "errors": INT,
    "quality": _nullable({"type": "number", "description": "The mean of the scorers' means"}),
    "scores": {"type": "object", "additionalProperties": MEAN,
               "description": "Each scorer's mean with its 95 % interval"},
    "pass_rate": MEAN, "latency_ms": _object({"p50": _nullable(_NUMBER), "p95": _nullable(_NUMBER)}),
    "ttft_ms_p50": _nullable(_NUMBER), "cost_per_item": MONEY, "cost_per_1k_items": MONEY})

SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": _object({
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": _nullable({"type": "string"}), "code": _nullable({"type": "string"})})}),
    "Project": _object({"object": {"const": "project"}, "name": {"type": "string"}, **LIMITS,
                        "safety": _nullable(SAFETY), "created_at": TIME}),
    "ProjectCreate": _object({"name": PROJECT_NAME, **LIMITS_IN, "safety": _nullable(SAFETY)}, required=["name"]),
    "ProjectUpdate": _object({**{name: _nullable(schema) for name, schema in LIMITS_IN.items()},
                              "safety": _nullable(SAFETY)}, required=[]),
    "ProjectList": _list("Project"),
    "Key": _object(KEY),
    "KeyCreate": _object({
        "project": {**PROJECT_NAME, "description": "Created (with no limits) if it does not exist"},
        "name": {"type": "string", "maxLength": KEY_NAME_LENGTH, "description": "A label; no NUL character"},
        **LIMITS_IN,
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
        "totals": _ref("UsageRow"),
        "compute": _nullable({"type": "array", "description": (
            "Own compute in the period: each local model's replica time and its cost (provider and model "
            "filters apply); null for a report of a project, key or deployment, to which replicas are not "
            "charged"), "items": _object({
                "provider": {"type": "string"}, "model": {"type": "string"}, "runs": INT,
                "replica_hours": {"type": "number"},
                "per_replica_hour": _nullable({"type": "number"}),
                "compute_cost": _nullable(MONEY)})})}),
    "Statement": _object({
        "object": {"const": "statement"}, "provider": {"type": "string"},
        "since": _nullable(TIME), "until": _nullable(TIME),
        "lines": {"type": "array", "items": _object({
            "model": _nullable({"type": "string"}),
            "deployments": {"type": "array", "items": {"type": "string"}}, "requests": INT, **TOKENS,
            "cost": MONEY, "revenue": MONEY, **CACHE_TOTALS,
            "replica_hours": _nullable({"type": "number", "description": "Hours the model's replicas ran "
                                                                         "(local providers; null for APIs)"}),
            "per_replica_hour": _nullable({"type": "number", "description": "USD per replica-hour, where every "
                                                                            "run in the period had the same"}),
            "compute_cost": _nullable({**MONEY, "description": "replica_hours at their per_replica_hour; null "
                                                               "where no compute_cost is set"})})},
        "requests": INT, "revenue": MONEY, "saved": CACHE_TOTALS["saved"],
        "compute_cost": _nullable({**MONEY, "description": "USD of own compute (local providers)"}),
        "total": {"type": "number", "description": "USD owed to the provider, or spent on own compute"}}),
    "StatementList": _list("Statement"),
    "CacheCleared": _object({
        "object": {"const": "cache.cleared"}, "deployment": _nullable({"type": "string"}),
        "project": _nullable({"type": "string"}),
        "deleted": {**INT, "description": "Answers dropped: with Redis, of every process; without, of the "
                                           "process that answered (the others drop theirs within 2 s)"}}),
    "Deployment": _object({
        "object": {"const": "deployment"}, "name": {"type": "string"},
        "source": {"enum": ["config", "api"], "description": "config: read-only here; api: made through this API"},
        "strategy": {"type": "string"}, "fallbacks": {"type": "array", "items": {"type": "string"}},
        "timeout": _nullable({"type": "number"}), "retries": INT,
        "targets": {"type": "array", "items": _object({
            "provider": {"type": "string"}, "model": {"type": "string"}, "weight": {"type": "number"},
            "api": {"type": "string"}})},
        "body": _nullable({"type": "object", "description": "The deployment as given (source api)"}),
        "created_at": _nullable(TIME), "updated_at": _nullable(TIME)}),
    "DeploymentCreate": {
        "type": "object", "required": ["name"], "additionalProperties": True,
        "description": "A deployment exactly as an entry of the config file's deployments: (name; provider and "
                       "model, or targets; strategy, fallbacks, timeout, price, ...; for a local provider engine, "
                       "replicas, max_concurrency, queue, device, compute_cost, ...), checked by the same reader",
        "properties": {"name": PROJECT_NAME, "provider": {"type": "string"}, "model": {"type": "string"},
                       "targets": {"type": "array", "items": {"type": "object"}},
                       "fallbacks": {"type": "array", "items": {"type": "string"}},
                       "strategy": {"type": "string"}, "timeout": {"type": "number"}}},
    "DeploymentUpdate": {
        "type": "object", "additionalProperties": True,
        "description": "Keys of the deployment to change, merged over the stored body; null removes a key"},
    "DeploymentList": _list("Deployment"),
    "Blocklist": _object({
        "object": {"const": "blocklist"}, "name": {"type": "string"},
        "terms": {"type": "array", "items": {"type": "string"}},
        "patterns": {"type": "array", "items": {"type": "string"}},
        "source": {"enum": ["config", "api"], "description": "config: the config's terms; api: set through this API"},
        "updated_at": _nullable(TIME),
        "used_by": {"type": "array", "items": {"type": "string"},
                    "description": "Policies with a check that uses it"}}),
    "BlocklistSet": _object({
        "terms": {"type": "array", "items": {"type": "string"},
                  "description": "Words and phrases, matched as whole words whatever their case and accents"},
        "patterns": {"type": "array", "items": {"type": "string"}, "description": "Python regular expressions"}},
        required=[]),
    "BlocklistList": _list("Blocklist"),
    "Request": _object(REQUEST),
    "RequestDetail": _object({
        **REQUEST,
        "history": {"type": "array", "description": "Each upstream attempt, in order", "items": {
            "type": "object", "required": ["attempt", "provider", "model", "started_ms", "duration_ms", "outcome"],
            "properties": {
                "attempt": INT, "provider": {"type": "string"}, "model": {"type": "string"},
                "started_ms": {"type": "number", "description": "Since the request arrived"},
                "duration_ms": {"type": "number", "description": "To its failure, or to the first content of "
                                                                 "its answer"},
                "outcome": {"enum": ["answered", "failed", "broke_off", "cancelled"]},
                "status": {"type": "integer"}, "error": {"type": "string"}}}},
        "request_body": _nullable({"type": "string", "description": "As sent, redacted; where the deployment "
                                                                    "says log_payloads"}),
        "response_body": _nullable({"type": "string", "description": "As sent back (a stream's events), "
                                                                     "redacted; where the deployment says "
                                                                     "log_payloads"})}),
    "RequestPage": _object({"object": {"const": "list"}, "data": {"type": "array", "items": _ref("Request")},
                            "next_cursor": _nullable({"type": "string", "description": "Pass as cursor for the "
                                                                                       "next page; null: the last"})}),
    "EvalRun": _object(EVAL_RUN),
    "EvalRunList": _list("EvalRun"),
    "EvalSummary": EVAL_SUMMARY,
    "EvalRunReport": _object({
        **EVAL_RUN,
        "deployments_summary": {"type": "array", "items": _ref("EvalSummary"),
                                "description": "Per deployment, best quality first"},
        "tags": {"type": "object", "additionalProperties": {"type": "array", "items": _ref("EvalSummary")},
                 "description": "The same per tag of the dataset's items (none where the gateway cannot read "
                                "the dataset file, unchanged, at the run's path)"}}),
    "EvalResult": _object({
        "object": {"const": "eval_result"}, "item": INT, "repeat": INT, "deployment": _TEXT, "output": _TEXT,
        "tool_calls": {"type": "array", "items": {"type": "object"}},
        "scores": {"type": "object", "additionalProperties": _object({
            "score": _nullable({"type": "number", "minimum": 0, "maximum": 1}),
            "passed": _nullable({"type": "boolean"}), "detail": _TEXT})},
        "latency_ms": _NUMBER, "ttft_ms": _nullable(_NUMBER), "input_tokens": INT, "output_tokens": INT,
        "cost": MONEY, "price": MONEY, "scoring_price": {**MONEY, "description": "What the scorers' own calls cost"},
        "error": _nullable(_TEXT), "request_id": _nullable(_TEXT)}),
    "EvalResultPage": _object({"object": {"const": "list"}, "data": {"type": "array", "items": _ref("EvalResult")},
                               "total": {**INT, "description": "The run's results in all"}, "limit": INT,
                               "offset": INT}),
    "EvalDataset": _object({
        "object": {"const": "eval_dataset"}, "name": {"type": "string", "description": "The file's name, as its "
                                                                                       "newest run gave it"},
        "dataset_sha256": _TEXT, "items": INT, "runs": INT, "last_run_at": TIME}),
    "EvalDatasetList": _list("EvalDataset"),
    "Leaderboard": _object({
        "object": {"const": "leaderboard"}, "dataset": _TEXT, "dataset_sha256": _TEXT, "runs": INT,
        "finished_runs": INT,
        "data": {"type": "array", "description": "Best quality first", "items": _object({
            "rank": {"type": "integer", "minimum": 1}, "deployment": _TEXT, "quality": _nullable(_NUMBER),
            "pass_rate": _nullable(_NUMBER), "cost_per_1k_items": MONEY, "latency_p50_ms": _nullable(_NUMBER),
            "answers": INT, "errors": INT,
            "run": _object({"id": _TEXT, "name": _TEXT, "created_at": TIME,
                            "scorers": {"type": "array", "items": _TEXT}})})}}),
}


def parameter(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


def text_schema(name: str) -> dict[str, Any]:
    """A text parameter compared with a column: no longer than the column, without NUL."""
    return {"type": "string", "maxLength": TEXT_PARAMS[name], "description": "No NUL character"}


# Path parameters that are not a column's text filter.
PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "run": {"type": "string", "maxLength": evals.RUN_LENGTH, "description": "A run's name or id; no NUL character"},
    "dataset_sha256": SHA256,
}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": PATH_SCHEMAS.get(name) or text_schema(name)}


def answer(description: str, schema: str | None = None, csv: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {"schema": _ref(schema)}} if schema else {}
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    return {"description": description, **({"content": content} if content else {})}


ERRORS = {status: {"description": text, "content": {JSON: {"schema": _ref("Error")}}}
          for status, text in (("400", "Invalid request: the message names the field"),
                               ("401", "Missing or wrong key"), ("403", "Not the master key"))}
FILTERS = [
    parameter("project", "Only this project", text_schema("project")),
    parameter("key", "Only this key id", text_schema("key")),
    parameter("deployment", "Only this deployment", text_schema("deployment")),
    parameter("provider", "Only this provider", text_schema("provider")),
    parameter("model", "Only this upstream model", text_schema("model")),
    parameter("since", "From this ISO date or date-time (inclusive, UTC)"),
    parameter("until", "Up to this ISO date or date-time (exclusive, UTC)"),
    parameter("period", "A month (2030-01) or day (2030-01-31) instead of since/until"),
]
FORMAT = parameter("format", "json (default) or csv", {"enum": ["json", "csv"]})
EVAL_PAGE = [parameter("limit", f"Results per page, 1 to {evals.MAX_LIMIT} (default 100)",
                       {"type": "integer", "minimum": 1, "maximum": evals.MAX_LIMIT}),
             parameter("offset", "Results to skip (default 0)", {"type": "integer", "minimum": 0,
                                                                 "maximum": evals.MAX_OFFSET})]
NOT_FOUND = {"404": {"description": "No such record", "content": {JSON: {"schema": _ref("Error")}}}}
CONFLICT = {"409": {"description": "The project exists", "content": {JSON: {"schema": _ref("Error")}}}}
DEPLOYMENT_CONFLICT = {"409": {"description": "The name is taken, the deployment comes from the config file "
                                              "(read-only here), or another deployment falls back to it",
                               "content": {JSON: {"schema": _ref("Error")}}}}


def _operation(summary: str, answers: dict[str, Any], body: str | None = None,
               parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": {**answers, **ERRORS}}
    if body:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(body)}}}
    if parameters:
        operation["parameters"] = parameters
    return operation


Handler = TypeVar("Handler", bound=Callable[..., Any])
# Each documented handler's operation, by handler.
OPERATIONS: dict[Callable[..., Any], dict[str, Any]] = {}


def documented(summary: str, answers: dict[str, Any], *, body: str | None = None,
               parameters: list[dict[str, Any]] | None = None) -> Callable[[Handler], Handler]:
    """The operation a handler answers, as the document describes it: its summary, its answers by
    status (the 400, 401 and 403 every route may give are added), the schema of its JSON body,
    its query parameters."""
    def register(handler: Handler) -> Handler:
        OPERATIONS[handler] = _operation(summary, answers, body, parameters)
        return handler
    return register


def document(endpoints: Iterable[tuple[str, str, Callable[..., Any]]]) -> dict[str, Any]:
    """The document of ``endpoints`` (method, path, documented handler), in their order."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path, handler in endpoints:
        item = paths.get(path)
        if item is None:
            names = re.findall(r"\{(\w+)\}", path)
            item = paths[path] = {"parameters": [_path(name) for name in names]} if names else {}
        item[method.lower()] = OPERATIONS[handler]
    return {
        "openapi": "3.1.0",
        "info": {"title": "modelgate admin API", "version": __version__,
                 "description": "Projects, keys, deployments, usage, provider statements, the request log and "
                                "evaluation runs. Every route needs the "
                                "gateway's master key."},
        "security": [{"masterKey": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"masterKey": {"type": "http", "scheme": "bearer",
                                              "description": "The master_key of the gateway's config"}},
        },
    }


def admin_openapi() -> dict[str, Any]:
    """The document of the admin API: every route of ``routes.ENDPOINTS``."""
    # Imported here: the routes import this module to document their handlers.
    from modelgate.surfaces.admin.routes import ENDPOINTS

    return document(ENDPOINTS)

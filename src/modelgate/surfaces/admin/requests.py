"""The request log as the admin API and `modelgate logs` show it: search parameters in, entries out.

Parameters are named as ``/admin/usage``'s (``project``, ``key``, ``deployment``, ``provider``,
``since``, ``until``), with ``status`` (a code, 429, or a class, 5xx), ``q`` (text in the error
message), ``limit`` and ``cursor`` (a page's ``next_cursor``).
"""

from __future__ import annotations

import re
from typing import Any

from modelgate.schema.errors import InvalidRequest
from modelgate.storage import RequestFilters, RequestLogEntry
from modelgate.surfaces.admin.wire import parse_time, text_param

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_Q = 200
PARAMS = frozenset({"project", "key", "deployment", "provider", "since", "until", "status", "q", "limit", "cursor"})
_STATUS = re.compile(r"([1-5])(?:xx|XX)|([1-5]\d\d)")
# The fields of an entry in a page, in order; one entry (``entry_json(..., detail=True)``) adds
# its attempts and payloads.
FIELDS = ("id", "created_at", "project", "key", "deployment", "provider", "model", "route", "surface", "path",
          "status", "latency_ms", "ttft_ms", "input_tokens", "cached_input_tokens", "cache_write_tokens",
          "reasoning_tokens", "output_tokens", "cost", "price", "attempts", "error", "verdict", "cache_hit",
          "saved", "client_ip", "user_agent", "trace_id")


def parse_status(value: str) -> tuple[int, int]:
    """A status code (429) or class (5xx) as the range of codes it covers."""
    match = _STATUS.fullmatch(value.strip())
    if match is None:
        raise InvalidRequest(f"'status' must be a status code such as 429 or a class such as 5xx, got {value!r}",
                             param="status")
    if match.group(1):
        low = int(match.group(1)) * 100
        return low, low + 99
    code = int(match.group(2))
    return code, code


def parse_limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"'limit' must be a whole number from 1 to {MAX_LIMIT}, got {value!r}", param="limit")
    return limit


def request_filters(params: dict[str, str]) -> RequestFilters:
    texts = {name: text_param(params[name], name) if params.get(name) is not None else None
             for name in ("project", "key", "deployment", "provider")}
    filters = RequestFilters(project=texts["project"], key_id=texts["key"], deployment=texts["deployment"],
                             provider=texts["provider"])
    if params.get("since"):
        filters.since = parse_time(params["since"], "since")
    if params.get("until"):
        filters.until = parse_time(params["until"], "until")
    if filters.since and filters.until and filters.until <= filters.since:
        raise InvalidRequest("'until' must be after 'since' (until is exclusive)", param="until")
    if params.get("status"):
        filters.status = parse_status(params["status"])
    q = params.get("q")
    if q:
        if len(q) > MAX_Q or "\x00" in q:
            raise InvalidRequest(f"'q' must be text of at most {MAX_Q} characters without NUL", param="q")
        filters.q = q
    return filters


def entry_json(entry: RequestLogEntry, detail: bool = False) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "object": "request", "id": entry.request_id,
        "created_at": entry.created_at.isoformat().replace("+00:00", "Z"),
        "project": entry.project, "key": entry.key_id, "deployment": entry.deployment, "provider": entry.provider,
        "model": entry.model, "route": entry.route, "surface": entry.surface, "path": entry.path,
        "status": entry.status, "latency_ms": entry.latency_ms, "ttft_ms": entry.ttft_ms,
        "input_tokens": entry.input_tokens, "cached_input_tokens": entry.cached_input_tokens,
        "cache_write_tokens": entry.cache_write_tokens, "reasoning_tokens": entry.reasoning_tokens,
        "output_tokens": entry.output_tokens, "cost": round(entry.cost, 8), "price": round(entry.price, 8),
        "attempts": entry.attempts, "error": entry.error, "verdict": entry.verdict, "cache_hit": entry.cache_hit,
        "saved": round(entry.saved, 8), "client_ip": entry.client_ip,
        "user_agent": entry.user_agent, "trace_id": entry.trace_id}
    if detail:
        shown.update(history=entry.history, request_body=entry.request_body, response_body=entry.response_body)
    return shown


def page_json(entries: list[RequestLogEntry], next_cursor: str | None) -> dict[str, Any]:
    return {"object": "list", "data": [entry_json(entry) for entry in entries], "next_cursor": next_cursor}

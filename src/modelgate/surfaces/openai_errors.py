"""The gateway's errors as OpenAI error objects, shared by every surface that speaks an OpenAI
format (Chat Completions, Responses, Azure, the admin API)."""

from __future__ import annotations

from typing import Any

import orjson

from modelgate.schema.errors import (
    AuthenticationFailed,
    BudgetExceeded,
    Conflict,
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    RateLimited,
    UnsupportedMediaType,
    UpstreamError,
    UpstreamMalformed,
    UpstreamTimeout,
    UpstreamUnreachable,
)

# OpenAI's error type for each of the gateway's errors (the most specific class wins).
ERROR_TYPES: tuple[tuple[type[GatewayError], str], ...] = (
    (UpstreamUnreachable, "upstream_unreachable"),
    (UpstreamTimeout, "upstream_timeout"),
    (UpstreamMalformed, "upstream_error"),
    (BudgetExceeded, "insufficient_quota"),
    (RateLimited, "rate_limit_error"),
    (AuthenticationFailed, "authentication_error"),
    (PermissionDenied, "permission_error"),
    (UnsupportedMediaType, "invalid_request_error"),
    (InvalidRequest, "invalid_request_error"),
    (NotFound, "invalid_request_error"),
    (MethodNotAllowed, "invalid_request_error"),
    (Conflict, "invalid_request_error"),
)


def error_type(error: GatewayError) -> str:
    """OpenAI's ``type`` for ``error``: an upstream's own type where it named one, else by class,
    else by status."""
    if isinstance(error, UpstreamError) and error.upstream_type:
        return error.upstream_type
    for kind, name in ERROR_TYPES:
        if isinstance(error, kind):
            return name
    return type_for_status(error.status)


def type_for_status(status: int) -> str:
    """OpenAI's error type for an HTTP status."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    if status < 500:
        return "invalid_request_error"
    return "server_error"


def error_object(error: GatewayError) -> dict[str, Any]:
    return {"message": error.message, "type": error_type(error), "param": error.param, "code": error.code}


def error_body(error: GatewayError) -> bytes:
    return orjson.dumps({"error": error_object(error)})

"""The response object as OpenAI returns it, its usage and its error, and what a client may see
of reasoning state.

A response repeats the request's parameters (``ResponsesRequest.echo``) beside its own fields.
Output items always carry their sealed ``encrypted_content`` inside the gateway (it is what a
stored response keeps); ``visible`` takes it out unless the request's ``include`` asked for it.
"""

from __future__ import annotations

from typing import Any

from modelgate.schema.errors import GatewayError
from modelgate.schema.events import Usage

# ResponseError.code is a closed set; the gateway's errors map onto three of its values.
RATE_LIMITED = "rate_limit_exceeded"
INVALID_PROMPT = "invalid_prompt"
SERVER_ERROR = "server_error"


def response_object(*, id: str, created_at: int, status: str, model: str, echo: dict[str, Any],
                    output: list[dict[str, Any]], usage: Usage | None, incomplete_reason: str | None = None,
                    error: GatewayError | None = None, completed_at: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": id, "object": "response", "created_at": created_at, "status": status, "background": False,
        "error": error_object(error) if error is not None else None,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "model": model, "output": output, **echo, "completed_at": completed_at,
    }
    # The spec has no null for these two: left out until there is a value.
    if usage is not None:
        body["usage"] = usage_object(usage)
    if body.get("user") is None:
        body.pop("user", None)
    return body


def usage_object(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens,
                                 "cache_write_tokens": usage.cache_write_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def error_object(error: GatewayError) -> dict[str, Any]:
    """A failed response's ``error``: its code from the closed set OpenAI uses, the message whole."""
    if error.status == 429:
        code = RATE_LIMITED
    elif 400 <= error.status < 500:
        code = INVALID_PROMPT
    else:
        code = SERVER_ERROR
    return {"code": code, "message": error.message}


def incomplete_reason(finish_reason: str | None) -> str | None:
    if finish_reason == "length":
        return "max_output_tokens"
    if finish_reason == "content_filter":
        return "content_filter"
    return None


def visible(item: dict[str, Any], sealed: bool) -> dict[str, Any]:
    """``item`` as a client sees it: a reasoning item's ``encrypted_content`` only when asked for."""
    if sealed or item.get("type") != "reasoning" or "encrypted_content" not in item:
        return item
    return {k: v for k, v in item.items() if k != "encrypted_content"}


def visible_response(body: dict[str, Any], sealed: bool) -> dict[str, Any]:
    if sealed:
        return body
    return {**body, "output": [visible(item, False) for item in body.get("output") or ()]}

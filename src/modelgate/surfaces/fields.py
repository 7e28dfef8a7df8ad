"""Checking the fields of a JSON request body, with 400s that name the field and the fix.

Shared by every surface: the wire formats differ, the way a client is told what is wrong does not.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from modelgate.schema.errors import InvalidRequest


def bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def model_of(body: Any) -> str:
    """The deployment a request body names; a 400 for a body that is not an object or has no model."""
    if not isinstance(body, dict):
        raise bad("The request body must be a JSON object.", "body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required: the name of a deployment (GET /v1/models lists them)",
                             param="model", code="missing_required_parameter")
    return model


def type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def number(body: dict[str, Any], name: str, low: float | None = None,
            high: float | None = None) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad(f"'{name}' must be a number, got {type_name(value)}", name)
    if (low is not None and value < low) or (high is not None and value > high):
        raise bad(f"'{name}' must be between {low:g} and {high:g}, got {value}", name)
    return float(value)


def integer(body: dict[str, Any], name: str, low: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"'{name}' must be an integer, got {type_name(value)}", name)
    if low is not None and value < low:
        raise bad(f"'{name}' must be at least {low}, got {value}", name)
    return value


def string(body: dict[str, Any], name: str, where: str | None = None) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad(f"'{where or name}' must be a string, got {type_name(value)}", where or name)
    return value


def boolean(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise bad(f"'{name}' must be true or false, got {type_name(value)}", name)
    return value


def fetchable_url(url: str) -> bool:
    """Whether ``url`` is an http(s) URL with a host, or a data: URL with its comma (``file:``,
    ``ftp:`` and the like name nothing an upstream should fetch)."""
    scheme, colon, rest = url.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in ("http", "https", "data"):
        return False
    if scheme == "data":
        return "," in rest
    try:
        return bool(urlsplit(url).hostname)
    except ValueError:  # a malformed host, e.g. an unclosed IPv6 bracket
        return False

"""Generate a JSON value that satisfies a (simple) JSON Schema.

Used for tool-call arguments and structured output. Supports what tools and response formats use in practice:
``type`` (also a list, and Gemini's upper-case names), ``properties`` (all of them are filled, so ``required`` is
always met), ``items``/``prefixItems``/``minItems``, ``enum``/``const``, ``anyOf``/``oneOf`` (first branch),
``allOf`` (merged), local ``$ref`` (``#/$defs/...``, ``#/definitions/...``), ``minimum``/``maximum``,
``minLength``, ``default``/``examples`` and ``format`` for strings. Anything else yields ``"text"``.
"""

from __future__ import annotations

from typing import Any

_MAX_DEPTH = 12

_STRING_FORMATS: dict[str, str] = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def value_for_schema(schema: Any) -> Any:
    """A deterministic value valid for ``schema`` where the schema is simple enough to satisfy by construction."""
    root = schema if isinstance(schema, dict) else {}
    return _value(root, root, 0)


def _value(schema: dict[str, Any], root: dict[str, Any], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return None
    if "$ref" in schema:
        return _value(_resolve(schema["$ref"], root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            # Prefer a non-null branch so optional fields still carry a value.
            chosen = next((b for b in branches if isinstance(b, dict) and b.get("type") != "null"), branches[0])
            return _value(chosen if isinstance(chosen, dict) else {}, root, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            if isinstance(part, dict):
                part = _resolve(part["$ref"], root) if "$ref" in part else part
                merged = _merge(merged, part)
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return _value(_merge(merged, rest), root, depth + 1)
    kind = _type_of(schema)
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: _value(sub if isinstance(sub, dict) else {}, root, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list) and prefix:
            return [_value(p if isinstance(p, dict) else {}, root, depth + 1) for p in prefix]
        items = schema.get("items")
        count = max(1, int(schema.get("minItems", 1)))
        return [_value(items if isinstance(items, dict) else {}, root, depth + 1) for _ in range(count)]
    if kind in ("number", "integer"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema)


def _type_of(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if isinstance(k, str) and k.lower() != "null"), "null")
    if isinstance(kind, str):
        return kind.lower()
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    value: float = 1
    minimum = schema.get("minimum", schema.get("exclusiveMinimum"))
    maximum = schema.get("maximum", schema.get("exclusiveMaximum"))
    if isinstance(minimum, (int, float)) and value <= minimum:
        value = minimum + (1 if "exclusiveMinimum" in schema else 0)
    if isinstance(maximum, (int, float)) and value >= maximum:
        value = maximum - (1 if "exclusiveMaximum" in schema else 0)
    return int(value) if integer else value


def _string(schema: dict[str, Any]) -> str:
    for key in ("default", "examples"):
        sample = schema.get(key)
        if isinstance(sample, list) and sample and isinstance(sample[0], str):
            return sample[0]
        if isinstance(sample, str):
            return sample
    fmt = schema.get("format")
    text = _STRING_FORMATS.get(fmt, "text") if isinstance(fmt, str) else "text"
    min_length = schema.get("minLength")
    if isinstance(min_length, int) and len(text) < min_length:
        text = text + "x" * (min_length - len(text))
    return text


def _resolve(ref: Any, root: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return {}
    node: Any = root
    for part in ref[2:].split("/"):
        if not isinstance(node, dict):
            return {}
        node = node.get(part.replace("~1", "/").replace("~0", "~"))
    return node if isinstance(node, dict) else {}


def _merge(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    merged = dict(left)
    for key, value in right.items():
        if key == "properties" and isinstance(value, dict):
            merged["properties"] = {**merged.get("properties", {}), **value}
        elif key == "required" and isinstance(value, list):
            merged["required"] = [*merged.get("required", []), *value]
        else:
            merged[key] = value
    return merged

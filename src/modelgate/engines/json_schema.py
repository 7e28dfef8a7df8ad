"""Structured output of local models: the JSON Schemas a grammar can hold a model to, and the check
of the complete answer against its schema.

The llamacpp engine turns a request's schema into a grammar with llama-cpp-python's converter
(``llama_cpp.llama_grammar.json_schema_to_gbnf``), which constrains decoding token by token. That
converter honours part of JSON Schema and passes over the rest without a word: ``minimum``,
``uniqueItems``, ``format: email``, ``allOf``, a ``properties`` beside ``anyOf``... A request
whose schema says such a thing would come back with output the grammar never held to it, so
``grammar_schema`` refuses it (``UnsupportedSchema``, a 400 naming the keyword) before anything is
generated, and gives the schema as the converter is to read it (annotations left out, "any value"
spelled as it understands it).

The grammar holds the shape, but an answer can still miss the schema: cut short at ``max_tokens``
or at a stop string, or matching two branches of a ``oneOf``. ``violation`` checks the complete
answer against the schema, for the same keywords, and says which constraint failed and where.
It needs nothing beyond the standard library, so the gateway checks answers without the
``jsonschema`` package, which is a dependency of the tests only.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import Any

# Keywords that describe and constrain nothing.
ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "$schema", "$id",
                         "deprecated", "readOnly", "writeOnly"})
TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
# "Any JSON value", as the converter understands it (it reads an empty schema as any object).
ANY_VALUE: dict[str, Any] = {"type": ["object", "array", "string", "number", "boolean", "null"]}
DATE_FORMATS = ("date", "time", "date-time")
_UUID = re.compile(r"^uuid[1-5]?$")


class UnsupportedSchema(ValueError):
    """A schema the grammar cannot hold a model to; ``keyword`` is the one it would pass over."""

    def __init__(self, message: str, keyword: str | None) -> None:
        super().__init__(message)
        self.keyword = keyword


def grammar_schema(schema: Any) -> dict[str, Any]:
    """``schema`` as the grammar converter is to read it; ``UnsupportedSchema`` for a keyword it
    would not enforce."""
    if not isinstance(schema, dict):
        raise UnsupportedSchema("the schema must be a JSON object", None)
    out = _clean(schema, "#", schema)
    if not isinstance(out, dict):  # pragma: no cover - the root is an object
        raise UnsupportedSchema("the schema must be a JSON object", None)
    return out


def _where(at: str) -> str:
    return "the schema" if at == "#" else f"the schema at {at}"


def _refuse(at: str, keyword: str, why: str = "", shown: str | None = None) -> UnsupportedSchema:
    return UnsupportedSchema(
        f"{_where(at)} uses '{shown or keyword}'{why}, which a local model's grammar cannot enforce; the grammar "
        "holds to type, properties, required, additionalProperties, items, prefixItems, minItems, maxItems, "
        "enum, const, anyOf, oneOf, $ref/$defs, pattern, minLength, maxLength and format "
        "date, time, date-time and uuid", keyword)


def _clean(node: Any, at: str, root: dict[str, Any]) -> Any:
    if node is True:
        return dict(ANY_VALUE)
    if not isinstance(node, dict):
        raise UnsupportedSchema(f"{_where(at)} must be a schema (a JSON object), not {node!r}", None)
    keys = {k for k in node if k not in ANNOTATIONS}
    out: dict[str, Any] = {}
    for container in ("$defs", "definitions"):
        if container in keys:
            defs = node[container]
            if not isinstance(defs, dict):
                raise UnsupportedSchema(f"{_where(at)}: '{container}' must be an object of schemas", container)
            out[container] = {name: _clean(sub, f"{at}/{container}/{name}", root) for name, sub in defs.items()}
            keys.discard(container)
    kind = node.get("type")
    if "allOf" in keys:
        raise _refuse(at, "allOf")
    kinds = kind if isinstance(kind, list) else [] if kind is None else [kind]
    if (not kinds and isinstance(kind, list)) or not all(isinstance(t, str) and t in TYPES for t in kinds):
        raise UnsupportedSchema(f"{_where(at)}: type {kind!r} is not a JSON Schema type ({', '.join(TYPES)})",
                                "type")
    if node.get("additionalProperties") is True and "properties" not in keys:
        keys.discard("additionalProperties")  # what JSON Schema assumes anyway
    allowed, main, build = _branch(node, keys, kind, at, root)
    for key in sorted(keys - allowed):
        shown = f"format: {node[key]}" if key == "format" else None
        raise _refuse(at, key, f" beside '{main}'" if main else "", shown)
    out.update(build())
    return out


Build = Callable[[], dict[str, Any]]


def _branch(node: dict[str, Any], keys: set[str], kind: Any, at: str,
            root: dict[str, Any]) -> tuple[set[str], str | None, Build]:
    """The keywords the converter honours in ``node`` (it reads one branch of them, chosen in this
    order), the keyword that chose the branch, and how to build the node it is to read."""
    def same(*names: str) -> Build:
        return lambda: {k: node[k] for k in names if k in node}

    if "$ref" in keys:
        _resolve(node["$ref"], at, root)
        return {"$ref"}, "$ref", same("$ref")
    if "oneOf" in keys or "anyOf" in keys:
        name = "oneOf" if "oneOf" in keys else "anyOf"
        options = node[name]
        if not isinstance(options, list) or not options:
            raise UnsupportedSchema(f"{_where(at)}: '{name}' must be a non-empty list of schemas", name)
        return {name}, name, lambda: {name: [_nonempty(_clean(s, f"{at}/{name}/{i}", root))
                                             for i, s in enumerate(options)]}
    if isinstance(kind, list):
        return {"type"}, "type", same("type")
    if "const" in keys:
        return {"const", "type"}, "const", same("const", "type")
    if "enum" in keys:
        if not isinstance(node["enum"], list) or not node["enum"]:
            raise UnsupportedSchema(f"{_where(at)}: 'enum' must be a non-empty list", "enum")
        return {"enum", "type"}, "enum", same("enum", "type")
    if kind in (None, "object") and ("properties" in keys or "additionalProperties" in keys):
        allowed = {"type", "properties", "required", "additionalProperties"}
        return allowed, "properties" if "properties" in keys else None, lambda: _object(node, at, root)
    if kind in (None, "array") and ("items" in keys or "prefixItems" in keys):
        items = node.get("items")
        if isinstance(items, list):  # the older spelling of a tuple
            return {"type", "items"}, "items", lambda: {"type": "array", "items": _tuple(items, f"{at}/items", root)}
        if "prefixItems" in keys:
            # Exactly the listed items: what items: false beside them says.
            allowed = {"type", "prefixItems"} | ({"items"} if items is False else set())
            prefix = node["prefixItems"]
            return allowed, "prefixItems", lambda: {"type": "array",
                                                    "prefixItems": _tuple(prefix, f"{at}/prefixItems", root)}
        if items is False:
            raise _refuse(at, "items", shown="items: false")
        return {"type", "items", "minItems", "maxItems"}, "items", lambda: {
            **same("type", "minItems", "maxItems")(), "items": _nonempty(_clean(items, f"{at}/items", root))}
    if kind in (None, "string") and "pattern" in keys:
        _pattern(node["pattern"], at)
        return {"type", "pattern"}, "pattern", same("type", "pattern")
    fmt = node.get("format")
    if kind in (None, "string") and isinstance(fmt, str) and (_UUID.match(fmt) or fmt in DATE_FORMATS):
        return {"type", "format"}, "format", same("type", "format")
    if kind == "string" and ("minLength" in keys or "maxLength" in keys):
        return {"type", "minLength", "maxLength"}, None, same("type", "minLength", "maxLength")
    if not keys:
        return set(), None, lambda: dict(ANY_VALUE)
    return {"type"} if kind is not None else set(), None, same("type")


def _object(node: dict[str, Any], at: str, root: dict[str, Any]) -> dict[str, Any]:
    properties = node.get("properties", {})
    if not isinstance(properties, dict):
        raise UnsupportedSchema(f"{_where(at)}: 'properties' must be an object of schemas", "properties")
    required = node.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise UnsupportedSchema(f"{_where(at)}: 'required' must be a list of property names", "required")
    for name in required:
        if name not in properties:
            raise UnsupportedSchema(f"{_where(at)}: 'required' names '{name}', which 'properties' does not define; "
                                    "a local model's grammar writes only the properties it defines", "required")
    out: dict[str, Any] = {"type": "object",
                           "properties": {k: _nonempty(_clean(v, f"{at}/properties/{k}", root))
                                          for k, v in properties.items()}}
    if required:
        out["required"] = list(required)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out["additionalProperties"] = _nonempty(_clean(extra, f"{at}/additionalProperties", root))
    elif extra is not None:
        out["additionalProperties"] = bool(extra)
    return out


def _tuple(items: Any, at: str, root: dict[str, Any]) -> list[Any]:
    if not isinstance(items, list) or not items:
        raise UnsupportedSchema(f"{_where(at)} must be a non-empty list of schemas", at.rsplit("/", 1)[-1])
    return [_nonempty(_clean(s, f"{at}/{i}", root)) for i, s in enumerate(items)]


def _nonempty(node: Any) -> Any:
    """The converter reads an empty schema as "an object"; where it means "anything", say so."""
    return dict(ANY_VALUE) if node == {} else node


def _pattern(pattern: Any, at: str) -> None:
    if not isinstance(pattern, str):
        raise UnsupportedSchema(f"{_where(at)}: 'pattern' must be a string", "pattern")
    if not (pattern.startswith("^") and pattern.endswith("$")):
        raise _refuse(at, "pattern", " not anchored with ^ and $", f"pattern: {pattern}")
    if re.search(r"\(\?[=!<]", pattern):
        raise _refuse(at, "pattern", " with a lookaround", f"pattern: {pattern}")
    try:
        re.compile(pattern)
    except re.error as error:
        raise UnsupportedSchema(f"{_where(at)}: 'pattern' {pattern!r} is not a regular expression: {error}",
                                "pattern") from None


def _resolve(ref: Any, at: str, root: dict[str, Any]) -> Any:
    """The schema a local ``$ref`` (``#/$defs/Name``) points to."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise UnsupportedSchema(f"{_where(at)}: '$ref' {ref!r} is not a reference into the schema itself "
                                "(#/$defs/...); a local model's schema cannot fetch others", "$ref")
    target: Any = root
    for part in ref[2:].split("/") if ref != "#" else []:
        if "~" in part or not isinstance(target, dict) or part not in target:
            raise UnsupportedSchema(f"{_where(at)}: '$ref' {ref!r} points to nothing in the schema", "$ref")
        target = target[part]
    return target


# ---- the answer against the schema ----


def violation(value: Any, schema: Any, root: Any = None, at: str = "$") -> str | None:
    """Why ``value`` (parsed JSON) is not valid JSON of ``schema``, naming where and the keyword;
    None where it is. Keywords outside what ``grammar_schema`` accepts are not checked."""
    root = schema if root is None else root
    if schema is True or schema is None:
        return None
    if schema is False:
        return f"{at}: the schema allows no value here"
    if not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        try:
            target = _resolve(schema["$ref"], at, root)
        except UnsupportedSchema as error:
            return f"{at}: {error}"
        return violation(value, target, root, at)
    for name in ("anyOf", "oneOf"):
        options = schema.get(name)
        if isinstance(options, list):
            failures = [violation(value, option, root, at) for option in options]
            matched = failures.count(None)
            if name == "anyOf" and not matched:
                return f"{at}: {_show(value)} matches none of the {len(options)} schemas of anyOf ({failures[0]})"
            if name == "oneOf" and matched != 1:
                said = "none" if not matched else f"{matched}"
                return f"{at}: {_show(value)} matches {said} of the schemas of oneOf, not exactly one"
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_is(value, k) for k in kinds):
            return f"{at}: {_show(value)} is not of type {' or '.join(map(str, kinds))} (type)"
    if "const" in schema and not _equal(value, schema["const"]):
        return f"{at}: {_show(value)} is not {_show(schema['const'])} (const)"
    if isinstance(schema.get("enum"), list) and not any(_equal(value, v) for v in schema["enum"]):
        return f"{at}: {_show(value)} is not one of {_show(schema['enum'])} (enum)"
    if isinstance(value, dict):
        return _object_violation(value, schema, root, at)
    if isinstance(value, list):
        return _array_violation(value, schema, root, at)
    if isinstance(value, str):
        return _string_violation(value, schema, at)
    return None


def _object_violation(value: dict[str, Any], schema: dict[str, Any], root: Any, at: str) -> str | None:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    for name in schema.get("required", ()):
        if name not in value:
            return f"{at}: the required property '{name}' is missing (required)"
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        where = f"{at}.{name}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else f"{at}[{_show(name)}]"
        if name in properties:
            found = violation(item, properties[name], root, where)
        elif extra is False:
            found = f"{at}: the property '{name}' is not one the schema allows (additionalProperties)"
        else:
            found = violation(item, extra, root, where)
        if found:
            return found
    return None


def _array_violation(value: list[Any], schema: dict[str, Any], root: Any, at: str) -> str | None:
    least, most = schema.get("minItems"), schema.get("maxItems")
    if isinstance(least, int) and len(value) < least:
        return f"{at}: {len(value)} items, fewer than minItems {least}"
    if isinstance(most, int) and len(value) > most:
        return f"{at}: {len(value)} items, more than maxItems {most}"
    items = schema.get("items")
    prefix = schema.get("prefixItems", items if isinstance(items, list) else None)
    rest = None if isinstance(items, list) else items
    for index, item in enumerate(value):
        if isinstance(prefix, list) and index < len(prefix):
            found = violation(item, prefix[index], root, f"{at}[{index}]")
        elif isinstance(prefix, list) and rest is False:
            return f"{at}: {len(value)} items, more than the {len(prefix)} the schema lists (prefixItems)"
        else:
            found = violation(item, rest, root, f"{at}[{index}]")
        if found:
            return found
    return None


def _string_violation(value: str, schema: dict[str, Any], at: str) -> str | None:
    least, most = schema.get("minLength"), schema.get("maxLength")
    if isinstance(least, int) and len(value) < least:
        return f"{at}: {_show(value)} is shorter than minLength {least}"
    if isinstance(most, int) and len(value) > most:
        return f"{at}: {_show(value)} is longer than maxLength {most}"
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            matched = re.search(pattern, value) is not None
        except re.error:
            matched = True
        if not matched:
            return f"{at}: {_show(value)} does not match the pattern {pattern!r} (pattern)"
    fmt = schema.get("format")
    if isinstance(fmt, str) and not _formatted(value, fmt):
        return f"{at}: {_show(value)} is not a {fmt} (format)"
    return None


_FORMATS: dict[str, re.Pattern[str]] = {
    "date": re.compile(r"\d{4}-\d{2}-\d{2}"),
    "time": re.compile(r"\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?"),
    "uuid": re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
}


def _formatted(value: str, fmt: str) -> bool:
    if fmt == "date-time":
        date, sep, time = value.partition("T")
        return bool(sep) and _formatted(date, "date") and _formatted(time, "time")
    pattern = _FORMATS.get("uuid" if _UUID.match(fmt) else fmt)
    if pattern is None:
        return True  # a format no grammar writes is not checked
    if not pattern.fullmatch(value):
        return False
    if fmt == "date":
        try:
            datetime.date.fromisoformat(value)
        except ValueError:
            return False
    return True


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    expected = {"string": str, "boolean": bool, "object": dict, "array": list}.get(kind)
    if kind == "null":
        return value is None
    return expected is not None and isinstance(value, expected)


def _equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: ``true`` is not ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, str) else '"' + value + '"'
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""Validating Responses API bodies and events against the OpenAI spec, its unions read as the API reads them.

The spec's item unions are ``oneOf`` lists discriminated by ``type`` (its ``discriminator`` keyword, which
JSON Schema does not read), and some branches overlap: a user message with a list of content parts is both
an ``EasyInputMessage`` and an ``InputMessage``. So ``oneOf`` is read here as "at least one branch": a value
must still match some branch of every union it is in.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema._keywords import anyOf

from tests.openai_spec import OpenAISpec

_Discriminated = validators.extend(Draft202012Validator, {"oneOf": anyOf})


def by_type(spec: OpenAISpec, union: str, instance: Any) -> str:
    """The branch of ``union`` (a list of schemas discriminated by ``type``) that names ``instance``'s type."""
    node = spec.components["schemas"][union]
    for branch in node.get("anyOf") or node.get("oneOf") or ():
        name = branch.get("$ref", "").rsplit("/", 1)[-1]
        kinds = spec.components["schemas"].get(name, {}).get("properties", {}).get("type", {}).get("enum", ())
        if isinstance(instance, dict) and instance.get("type") in kinds:
            return str(name)
    raise AssertionError(f"{union} of the OpenAI spec has no branch of type {instance.get('type')!r}")


def check(spec: OpenAISpec, schema: str, instance: Any) -> None:
    """Raise AssertionError listing where ``instance`` does not match ``schema`` of the spec (an event is
    checked against the branch of ``ResponseStreamEvent`` its type names, so that a mismatch says where)."""
    if schema == "ResponseStreamEvent":
        schema = by_type(spec, schema, instance)
    validator = _Discriminated({"$ref": f"#/components/schemas/{schema}", "components": spec.components})
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        details = "\n".join(f"  at {list(e.path)}: {e.message[:300]}" for e in errors[:10])
        raise AssertionError(f"does not match {schema} of the OpenAI spec:\n{details}")

"""Validating what our OpenAI surface returns against the official OpenAI OpenAPI spec.

The spec is not part of this repository: it is found at $OPENAI_OPENAPI_SPEC or at
../shared/specs/openai-openapi.yaml beside the checkout. Without it these checks fail under
CI=true and skip elsewhere, saying where to get the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

SPEC_HINT = ("the official OpenAI OpenAPI spec (openai/openai-openapi, openapi.yaml): set OPENAI_OPENAPI_SPEC "
             "to its path or place it at ../shared/specs/openai-openapi.yaml beside the checkout")


def spec_path() -> Path | None:
    explicit = os.environ.get("OPENAI_OPENAPI_SPEC")
    if explicit:
        return Path(explicit)
    candidate = Path(__file__).resolve().parents[1].parent / "shared" / "specs" / "openai-openapi.yaml"
    return candidate if candidate.exists() else None


def _nullable_to_schema(node: Any) -> Any:
    """The spec is OpenAPI 3.1 but still says `nullable: true` in places; make that JSON Schema."""
    if isinstance(node, dict):
        node = {k: _nullable_to_schema(v) for k, v in node.items()}
        if node.pop("nullable", False):
            return {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_nullable_to_schema(v) for v in node]
    return node


class OpenAISpec:
    def __init__(self, document: dict[str, Any]) -> None:
        self.components = _nullable_to_schema(document["components"])
        self._validators: dict[str, Draft202012Validator] = {}
        self._event_schemas: dict[str, str] | None = None

    def validator(self, schema: str) -> Draft202012Validator:
        if schema not in self._validators:
            root = {"$ref": f"#/components/schemas/{schema}", "components": self.components}
            self._validators[schema] = Draft202012Validator(root)
        return self._validators[schema]

    def stream_event_schema(self, event_type: str) -> str:
        """The component of ``ResponseStreamEvent`` for a Responses stream event of ``event_type``
        (validating against the union itself says only that no branch matched)."""
        if self._event_schemas is None:
            schemas = self.components["schemas"]
            self._event_schemas = {}
            for branch in schemas["ResponseStreamEvent"]["anyOf"]:
                name = branch["$ref"].rsplit("/", 1)[-1]
                for kind in schemas[name].get("properties", {}).get("type", {}).get("enum", []):
                    self._event_schemas[kind] = name
        if event_type not in self._event_schemas:
            raise AssertionError(f"{event_type!r} is not a Responses stream event of the OpenAI spec")
        return self._event_schemas[event_type]

    def validate_stream_event(self, event: dict[str, Any]) -> None:
        self.validate(self.stream_event_schema(str(event.get("type"))), event)

    def validate(self, schema: str, instance: Any) -> None:
        errors = sorted(self.validator(schema).iter_errors(instance), key=lambda e: list(e.path))
        if errors:
            details = "\n".join(f"  at {list(e.path)}: {e.message[:300]}" for e in errors[:10])
            raise AssertionError(f"response does not match {schema} of the OpenAI spec:\n{details}")


def load_spec() -> OpenAISpec:
    path = spec_path()
    if path is None or not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"missing {SPEC_HINT}")
        pytest.skip(f"needs {SPEC_HINT}")
    with path.open("rb") as handle:
        return OpenAISpec(yaml.load(handle, Loader=yaml.CSafeLoader))

"""The built-in model catalog: facts about well-known models, kept as data in ``models.yaml``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from modelgate.catalog.facts import ModelFacts

__all__ = ["Catalog", "CatalogEntry", "ModelFacts", "facts_from_mapping"]


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    publisher: str
    model: str
    facts: ModelFacts


class Catalog:
    """Model id → facts. Looked up once per target at start-up, never on the request path."""

    def __init__(self, entries: dict[str, CatalogEntry]) -> None:
        self._entries = entries

    @classmethod
    def builtin(cls) -> Catalog:
        """The catalog shipped in the package (read once per process: it never changes)."""
        return _builtin()

    @classmethod
    def from_mapping(cls, data: dict[str, dict[str, dict[str, Any]]]) -> Catalog:
        entries: dict[str, CatalogEntry] = {}
        for publisher, models in data.items():
            for model, facts in models.items():
                entries[model] = CatalogEntry(publisher, model, facts_from_mapping(facts))
        return cls(entries)

    def get(self, model: str) -> CatalogEntry | None:
        return self._entries.get(model)

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[CatalogEntry]:
        """Every model, by publisher then model id."""
        return sorted(self._entries.values(), key=lambda e: (e.publisher, e.model))


def facts_from_mapping(data: dict[str, Any]) -> ModelFacts:
    return ModelFacts(
        context_window=data.get("context_window"),
        max_output_tokens=data.get("max_output_tokens"),
        input_price=data.get("input_price"),
        output_price=data.get("output_price"),
        cached_input_price=data.get("cached_input_price"),
        cache_write_price=data.get("cache_write_price"),
        capabilities=tuple(data.get("capabilities", ())),
        mode=data.get("mode", "chat"),
    )


@cache
def _builtin() -> Catalog:
    text = resources.files(__package__).joinpath("models.yaml").read_text(encoding="utf-8")
    return Catalog.from_mapping(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))

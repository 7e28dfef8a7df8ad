"""Simulator configuration: per-model behaviour and the server-wide API key.

A YAML file looks like::

    api_key: sk-sim            # omit to accept any non-empty key
    defaults:                  # applied to every model not listed under models
      latency_ms: 0
    models:
      deepseek-reasoner:
        reasoning: true
        reasoning_field: reasoning_content
        require_reasoning_echo: true
      slow-model:
        ttft_ms: 200
        chunk_ms: 20
      flaky-model:
        fault: "status=503"

Models that are not listed get ``defaults``; a model named in ``reasoning_models`` (default:
:data:`DEFAULT_REASONING_MODELS`) gets ``reasoning: true`` unless its own entry says otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from modelgate.simulator.replies import scripted_tool_call

ReasoningField = Literal["reasoning_content", "reasoning"]

# Models that think by default, so a bare simulator behaves like the real providers for these names.
DEFAULT_REASONING_MODELS: tuple[str, ...] = (
    "deepseek-reasoner",
    "grok-3-mini",
    "o3-mini",
    "o4-mini",
    "claude-sonnet-4-5",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
)


@dataclass(frozen=True)
class ModelSpec:
    """How the simulator behaves for one model name."""

    reasoning: bool = False
    reasoning_field: ReasoningField = "reasoning_content"
    require_reasoning_echo: bool = False
    embedding_dimensions: int = 8
    latency_ms: int = 0
    ttft_ms: int = 0
    chunk_ms: int = 0
    fault: str | None = None
    context_window: int = 128_000
    # Chat completions (OpenAI format) answer with this text, whatever the prompt: a scripted model.
    reply: str | None = None
    # A scripted model that knows some answers: the reply of the first key found in the last user
    # message (else ``reply``, else the usual simulated reply). Models that know different things
    # make evaluations whose right result is known. A reply ``TOOL:name:{json}`` is that tool call.
    answers: dict[str, str] = field(default_factory=dict)
    # Chat completions (OpenAI format) answer as a harm classifier asked with a rubric would: the
    # severities of the last user message as JSON (simulator/moderations.py).
    judge: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: ModelSpec | None = None) -> ModelSpec:
        """Build a spec from YAML/JSON data, starting from ``base`` for the fields it leaves out."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model setting(s) {sorted(unknown)}; valid ones are {sorted(known)}")
        if data.get("reasoning_field", "reasoning_content") not in ("reasoning_content", "reasoning"):
            raise ValueError("reasoning_field must be 'reasoning_content' or 'reasoning'")
        for text in [data.get("reply"), *(data.get("answers") or {}).values()]:
            if isinstance(text, str):
                scripted_tool_call(text)  # a malformed TOOL: reply fails at load, not on the first request
        return dataclasses.replace(base or cls(), **data)


@dataclass
class SimConfig:
    """Top-level simulator settings."""

    api_key: str | None = None
    defaults: ModelSpec = field(default_factory=ModelSpec)
    models: dict[str, ModelSpec] = field(default_factory=dict)
    reasoning_models: tuple[str, ...] = DEFAULT_REASONING_MODELS

    def model(self, name: str) -> ModelSpec:
        """The effective spec for ``name``: its own entry, else the defaults (thinking if it is a reasoning model)."""
        spec = self.models.get(name)
        if spec is not None:
            return spec
        if name in self.reasoning_models:
            return dataclasses.replace(self.defaults, reasoning=True)
        return self.defaults

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimConfig:
        """Build a config from parsed YAML/JSON; unknown keys are errors so typos do not pass silently."""
        allowed = {"api_key", "defaults", "models", "reasoning_models"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown simulator setting(s) {sorted(unknown)}; valid ones are {sorted(allowed)}")
        defaults = ModelSpec.from_dict(data.get("defaults") or {})
        reasoning_models = tuple(data.get("reasoning_models", DEFAULT_REASONING_MODELS))
        models: dict[str, ModelSpec] = {}
        for name, entry in (data.get("models") or {}).items():
            entry = dict(entry or {})
            # A listed reasoning model keeps thinking unless its entry turns it off explicitly.
            entry.setdefault("reasoning", name in reasoning_models or defaults.reasoning)
            models[str(name)] = ModelSpec.from_dict(entry, base=defaults)
        api_key = data.get("api_key")
        return cls(
            api_key=None if api_key is None else str(api_key),
            defaults=defaults,
            models=models,
            reasoning_models=reasoning_models,
        )

    @classmethod
    def from_file(cls, path: str | Path) -> SimConfig:
        """Load a YAML (or JSON) config file."""
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the simulator config must be a mapping at the top level")
        return cls.from_dict(data)

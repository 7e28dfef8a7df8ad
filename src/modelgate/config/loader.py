"""Reads the YAML config file into ``Settings``, checking every key before the server starts.

Every problem found is reported at once, each naming its key and the fix. ``${VAR}`` references
are expanded from the environment given (env.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from modelgate.catalog import Catalog
from modelgate.config.env import expand_env, protect_references
from modelgate.config.fields import Reader, shape_of
from modelgate.config.settings import Settings

__all__ = ["ConfigError", "load_settings", "parse_settings"]


class ConfigError(Exception):
    """The config file cannot be used; the message lists every problem and its fix."""


def load_settings(path: str | Path, env: Mapping[str, str], catalog: Catalog | None = None) -> Settings:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    protected, references = protect_references(text)
    try:
        data = yaml.safe_load(protected)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return parse_settings(data or {}, env, catalog, source=str(path), references=references)


def parse_settings(
    data: Any, env: Mapping[str, str], catalog: Catalog | None = None, source: str = "config",
    references: list[str] | None = None,
) -> Settings:
    """Settings from a parsed document; ``references`` are those ``protect_references`` swapped out."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with providers: and deployments:")
    reader = Reader(env, catalog or Catalog.builtin())
    data = expand_env(data, env, "", reader.fail, references)
    settings = shape_of(Settings).read(reader, data, "")
    if reader.problems or settings is None:
        raise ConfigError(f"{source} has {len(reader.problems)} problem(s):\n  " + "\n  ".join(reader.problems))
    return settings

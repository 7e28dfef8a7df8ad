"""``${VAR}`` references in the config file, expanded from the environment given to the loader.

Strings may hold ``${VAR}`` (the variable must be set) or ``${VAR:-default}``; ``$$`` is a
literal ``$``.

References are swapped for placeholders before the YAML is parsed, so that ``{api_key: ${KEY}}``
in a flow mapping parses, and are expanded afterwards, so that a value with YAML's special
characters in it cannot change the document's structure. A value that is one reference alone
takes the type its text has in YAML (``timeout: ${TIMEOUT:-30}`` is a number).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PLACEHOLDER = re.compile(r"__modelgate_ref_(\d+)__")

Fail = Callable[[str, str], None]
"""Reports a problem: (key path, problem)."""


def protect_references(text: str) -> tuple[str, list[str]]:
    """Swap every ``${...}`` or ``$$`` in the file's text for a placeholder YAML reads as plain text."""
    references: list[str] = []

    def swap(match: re.Match[str]) -> str:
        references.append(match.group(0))
        return f"__modelgate_ref_{len(references) - 1}__"

    return _VAR.sub(swap, text), references


def _typed(text: str) -> Any:
    """A lone reference's value as YAML would type it: a number or a boolean, else the text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def expand_env(value: Any, env: Mapping[str, str], key: str, fail: Fail,
               references: list[str] | None = None) -> Any:
    """Expand ``${VAR}`` references (or their placeholders) in every string of a parsed document."""
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            fail(key, f"environment variable {name} is not set; export {name}=... "
                      f"or give a default as ${{{name}:-value}}")
            return ""

        if references is not None and _PLACEHOLDER.search(value):
            whole = _PLACEHOLDER.fullmatch(value)
            value = _PLACEHOLDER.sub(lambda m: references[int(m.group(1))], value)
            expanded = _VAR.sub(substitute, value)
            return _typed(expanded) if whole else expanded
        return _VAR.sub(substitute, value)
    if isinstance(value, dict):
        return {k: expand_env(v, env, f"{key}.{k}" if key else str(k), fail, references)
                for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, f"{key}[{i}]", fail, references) for i, v in enumerate(value)]
    return value

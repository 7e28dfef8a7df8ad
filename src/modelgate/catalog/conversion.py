"""What the converters of model folders to GGUF share: their error, the precisions they write,
and reading a folder's JSON files (untrusted: read up to a size limit, a problem named by file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

__all__ = ["ConversionError", "Precision", "json_list", "json_object", "positive", "read_json"]

Precision = Literal["f16", "f32"]
MAX_JSON_BYTES = 64 * 1024 * 1024  # tokenizer.json of a large vocabulary runs to tens of megabytes


class ConversionError(ValueError):
    """The folder cannot be converted; the message names what is missing or not supported."""


def positive(config: dict[str, Any], key: str, folder: Path) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConversionError(f"{folder}/config.json has no {key} (a positive whole number)")
    return value


def read_json(path: Path) -> Any:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise ConversionError(f"{path} is missing") from None
    except OSError as exc:
        raise ConversionError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_JSON_BYTES:
        raise ConversionError(f"{path} is over {MAX_JSON_BYTES // (1024 * 1024)} MiB")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ConversionError(f"{path} is not valid JSON: {exc}") from None


def json_object(path: Path) -> dict[str, Any]:
    value = read_json(path)
    if not isinstance(value, dict):
        raise ConversionError(f"{path} is not a JSON object")
    return value


def json_list(path: Path) -> list[Any]:
    value = read_json(path)
    if not isinstance(value, list):
        raise ConversionError(f"{path} is not a JSON list")
    return value


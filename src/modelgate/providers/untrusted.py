"""Values from an upstream, made safe before anything else reads them.

An upstream is not trusted: its headers, error text and the fields of its answers may be
malformed, absurdly large, or (when it echoes what it was sent) hold the provider's own key. The
adapters read every such value through these functions:

* ``retry_after``: ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date) as a finite
  number of seconds from 0 to ``MAX_RETRY_AFTER_S``; anything else (``nan``, ``1e400``,
  ``not-a-date``, a negative number) is ignored.
* ``count``: a token count as an int from 0 to ``MAX_COUNT``; ``index``: a choice or tool call
  index from 0 below ``MAX_INDEX``; anything else is 0.
* ``label``: a model name, stop reason or id as a short single line of text (no control
  characters); ``string`` / ``text``: a piece of answer text as a string; ``json_text``: tool call
  arguments as JSON text; ``mapping`` / ``items``: a JSON object or array, or an empty one.
* ``Masker``: error text with anything that looks like a credential masked (the provider's own
  configured key and header values exactly, and the shapes of common keys and tokens), cut to
  ``MAX_ERROR_CHARS``.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC
from typing import Any

import orjson

MAX_RETRY_AFTER_S = 3600.0  # a longer wait is taken as this one
MAX_COUNT = 100_000_000  # tokens in one answer: far beyond any context window
MAX_INDEX = 1024  # choices (OpenAI allows n <= 128) and tool calls of one answer
MAX_LABEL_CHARS = 256  # a model name, an id, a stop reason
MAX_ERROR_CHARS = 1000  # an upstream's error message as clients and logs see it
MASK = "***"
MIN_SECRET_CHARS = 6  # configured values shorter than this are not masked (they would mask common text)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Error text keeps its line breaks and tabs; every other control character goes.
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_TOKEN = r"[A-Za-z0-9+/=_.~-]"
_SECRET_SHAPES = re.compile(
    "|".join([
        r"\bsk-[A-Za-z0-9_-]{8,}",  # OpenAI (sk-proj-...), Anthropic (sk-ant-...), DeepSeek and others
        r"\bAIza[0-9A-Za-z_-]{20,}",  # Google API keys
        r"\b(?:xai|gsk|hf|ghp|gho|ghu|ghs|github_pat|glpat)[-_][A-Za-z0-9_]{20,}",
        r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key ids
        r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",  # JWTs
    ]))
_AUTH_SCHEME = re.compile(rf"(?i)\b(bearer|basic)(\s+){_TOKEN}+")
# A long token with a digit in it after a word that names a credential: "api-key: 0a1b...",
# "Incorrect API key provided: abc123...", "token=...".
_AFTER_KEY_WORD = re.compile(
    r"(?i)\b((?:x-)?(?:goog-)?api[-_ ]?key|access[-_ ]?key|secret(?:[-_ ]?key)?|token|password|passwd"
    r"|authorization|credentials?|key)\b(\W{0,3}(?:provided|given|is|was|value)?\W{0,3})"
    rf"(?={_TOKEN}*\d){_TOKEN}{{12,}}")


def seconds(value: Any, cap: float = MAX_RETRY_AFTER_S) -> float | None:
    """``value`` as seconds from 0 to ``cap``; None for anything that is not a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    if not math.isfinite(number) or number < 0:
        return None
    return min(number, cap)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (ValueError, OverflowError):
        return None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), from 0
    to ``MAX_RETRY_AFTER_S``; None where neither holds a usable value."""
    value = headers.get("retry-after-ms")
    if value:
        number = _number(value)
        wait = seconds(number / 1000.0 if number is not None else None)
        if wait is not None:
            return wait
    value = headers.get("retry-after")
    if not value or len(value) > 64:
        return None
    number = _number(value)
    if number is not None:
        return seconds(number)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # "-0000": UTC, with no claim about the local zone
    try:
        return seconds(max(when.timestamp() - time.time(), 0.0))
    except (OverflowError, OSError, ValueError):
        return None


def count(value: Any) -> int:
    """A token count: an int from 0 to ``MAX_COUNT`` (a whole float is taken; anything else is 0)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return min(max(value, 0), MAX_COUNT)
    if isinstance(value, float) and math.isfinite(value) and value > 0:
        return min(int(value), MAX_COUNT)
    return 0


def index(value: Any) -> int:
    """A choice or tool call index from 0 below ``MAX_INDEX``; 0 for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_INDEX:
        return value
    return 0


def label(value: Any, limit: int = MAX_LABEL_CHARS) -> str:
    """A name or id as one short line: a string without control characters, at most ``limit``
    characters; "" for anything that is not a string."""
    if not isinstance(value, str):
        return ""
    name: str = value
    if not (name.isprintable() and len(name) <= limit):
        name = _CONTROL.sub("", name[:limit * 4])[:limit]
    return name


def optional_label(value: Any, limit: int = MAX_LABEL_CHARS) -> str | None:
    """``label``, or None where it comes out empty."""
    return label(value, limit) or None


def string(value: Any) -> str:
    """``value`` where it is a string, else ""."""
    return value if isinstance(value, str) else ""


def text(value: Any) -> str:
    """A piece of answer text: a string as it is, the texts of a list of parts joined, else ""."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(string(part.get("text")) for part in value if isinstance(part, dict))
    return ""


def json_text(value: Any) -> str:
    """Tool call arguments: a string as it is; an object or array as its JSON; else ""."""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return ""


def mapping(value: Any) -> dict[str, Any]:
    """``value`` where it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def items(value: Any) -> list[Any]:
    """``value`` where it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []


class Masker:
    """Masks credentials in an upstream's error text and cuts it to ``MAX_ERROR_CHARS``.

    ``secrets``: values masked wherever they appear (a provider's api_key and configured header
    values); those shorter than ``MIN_SECRET_CHARS`` are left alone.
    """

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so that a value containing another is masked whole.
        self._secrets = sorted({s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_CHARS},
                               key=len, reverse=True)

    def __call__(self, message: str, limit: int = MAX_ERROR_CHARS) -> str:
        # Masked on a window beyond the limit, so that a secret across the cut is masked before it.
        window = message[:limit * 2]
        cut = len(message) > len(window)
        for secret in self._secrets:
            if secret in window:
                window = window.replace(secret, MASK)
        window = _CONTROL_IN_TEXT.sub("", window)
        window = _SECRET_SHAPES.sub(MASK, window)
        window = _AUTH_SCHEME.sub(lambda m: f"{m[1]}{m[2]}{MASK}", window)
        window = _AFTER_KEY_WORD.sub(lambda m: f"{m[1]}{m[2]}{MASK}", window)
        if len(window) > limit or cut:
            window = window[:limit - 1] + "…"
        return window

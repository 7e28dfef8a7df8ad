"""The simulator's one token estimator, shared by every API it serves.

Real tokenizers differ per provider; the simulator needs a rule that is cheap, deterministic and easy for a test
to recompute by hand, so that usage numbers can be asserted exactly. The rule:

* ``count_tokens(text)`` = number of matches of the regex ``\\w+|[^\\w\\s]`` — every run of word characters is one
  token and every other non-space character is one token. ``"Hello, world!"`` → 4.
* A prompt costs ``MESSAGE_OVERHEAD_TOKENS`` (3) per message — the system prompt counts as one message when
  present — plus ``count_tokens`` of the message's text, where a message's text is all of its text parts, the
  name and JSON arguments of each tool call it makes and the content of each tool result it carries, joined
  with spaces (see :func:`message_tokens`). Each offered tool adds ``count_tokens`` of its name, description and
  JSON schema (:func:`tool_tokens`). Non-text parts (images, audio, files) and reasoning echoed back
  (``reasoning_content``, Anthropic ``thinking`` blocks, Gemini ``thought`` parts) cost nothing.
* Completion tokens = ``count_tokens`` of the generated text (for tool calls, of the name and JSON arguments),
  plus ``count_tokens`` of the reasoning text, which is also reported separately as reasoning tokens.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

MESSAGE_OVERHEAD_TOKENS = 3

# Compiled once per call site via the re module cache; kept as a pattern string so nothing runs at import time.
_TOKEN_PATTERN = r"\w+|[^\w\s]"


def count_tokens(text: str) -> int:
    """Number of simulated tokens in ``text`` (regex ``\\w+|[^\\w\\s]`` matches)."""
    return sum(1 for _ in re.finditer(_TOKEN_PATTERN, text))


def message_tokens(text: str) -> int:
    """Prompt cost of one message (or system prompt) whose flattened text is ``text``."""
    return MESSAGE_OVERHEAD_TOKENS + count_tokens(text)


def tool_tokens(name: str, description: str, schema: Any) -> int:
    """Prompt cost of one offered tool."""
    return count_tokens(f"{name} {description} {canonical_json(schema)}")


def truncate_to_tokens(text: str, limit: int) -> str:
    """The longest prefix of ``text`` holding at most ``limit`` tokens, cut right after the last kept token."""
    if limit <= 0:
        return ""
    for index, match in enumerate(re.finditer(_TOKEN_PATTERN, text)):
        if index + 1 == limit:
            return text[: match.end()]
    return text


def split_words(text: str) -> list[str]:
    """Split ``text`` into stream deltas of one word each, keeping the separating spaces so they re-join exactly."""
    return re.findall(r"\S+\s*|\s+", text)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys: the text the simulator counts and hashes for structured values."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()

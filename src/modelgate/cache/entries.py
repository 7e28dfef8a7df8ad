"""A cached answer: the canonical events of one whole answer, with what answered, as bytes.

Stored once and replayed to any surface: each renders the events in its own format, streamed or
folded, as it would a fresh answer; a replayed stream comes in the chunks the upstream sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from modelgate.schema.events import Event, Finish, ReasoningDelta, Start, TextDelta, ToolCallDelta, Usage

VERSION = 1


@dataclass(slots=True)
class Entry:
    provider: str | None
    model: str | None
    events: list[Event]

    @property
    def usage(self) -> Usage | None:
        return next((e for e in reversed(self.events) if isinstance(e, Usage)), None)


class Recording:
    """The events of an answer as they go by, and whether the answer is whole and may be kept."""

    def __init__(self, choices: int) -> None:
        self.events: list[Event] = []
        self.choices = choices
        self.finished: set[int] = set()
        self.filtered = False  # a choice ended by a content filter: not kept

    def add(self, event: Event) -> None:
        if isinstance(event, Finish):
            self.finished.add(event.choice)
            if event.reason == "content_filter":
                self.filtered = True
        self.events.append(event)

    @property
    def whole(self) -> bool:
        """Every choice finished, none by a content filter."""
        return not self.filtered and len(self.finished) >= self.choices


def encode(entry: Entry) -> bytes:
    return orjson.dumps([VERSION, entry.provider, entry.model, [_event(e) for e in entry.events]])


def decode(data: bytes) -> Entry | None:
    """The entry ``data`` holds; None for what this version cannot read (a later one's, damage)."""
    try:
        version, provider, model, events = orjson.loads(data)
        if version != VERSION:
            return None
        return Entry(provider, model, [_from(e) for e in events])
    except (ValueError, TypeError, KeyError, IndexError):
        return None


def _event(event: Event) -> list[Any]:
    if isinstance(event, TextDelta):
        return ["t", event.text, event.choice]
    if isinstance(event, Start):
        return ["s", event.model]
    if isinstance(event, ToolCallDelta):
        return ["c", event.index, event.id, event.name, event.arguments, event.signature, event.origin, event.choice]
    if isinstance(event, ReasoningDelta):
        return ["r", event.text, event.signature, event.redacted, event.origin, event.block_start, event.choice,
                event.id]
    if isinstance(event, Usage):
        return ["u", event.input_tokens, event.output_tokens, event.cached_input_tokens, event.cache_write_tokens,
                event.reasoning_tokens]
    if isinstance(event, Finish):
        return ["f", event.reason, event.choice, event.native_reason, event.stop_sequence]
    raise TypeError(f"a {type(event).__name__} is not part of a chat answer")


def _from(item: list[Any]) -> Event:
    kind = item[0]
    if kind == "t":
        return TextDelta(item[1], item[2])
    if kind == "s":
        return Start(item[1])  # a replay has no upstream response id of its own
    if kind == "c":
        return ToolCallDelta(item[1], item[2], item[3], item[4], item[5], item[6], item[7])
    if kind == "r":
        return ReasoningDelta(item[1], item[2], item[3], item[4], item[5], item[6], item[7])
    if kind == "u":
        return Usage(item[1], item[2], item[3], item[4], item[5])
    if kind == "f":
        return Finish(item[1], item[2], item[3], item[4])
    raise KeyError(kind)

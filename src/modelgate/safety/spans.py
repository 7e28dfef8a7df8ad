"""What a check finds in a text: spans, and text with spans replaced."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class Span(NamedTuple):
    """``text[start:end]`` is a finding; ``label`` says what it is (``email``, a blocklist's name)."""

    start: int
    end: int
    label: str


def without_overlaps(spans: Iterable[Span]) -> list[Span]:
    """The spans in order, each overlapping one dropped: the earlier wins, then the longer."""
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, s.start - s.end)):
        if not kept or span.start >= kept[-1].end:
            kept.append(span)
    return kept


def replaced(text: str, spans: list[Span], placeholders: dict[str, str]) -> str:
    """``text`` with each span (in order, not overlapping) replaced by its label's placeholder."""
    if not spans:
        return text
    pieces: list[str] = []
    at = 0
    for span in spans:
        pieces.append(text[at:span.start])
        pieces.append(placeholders[span.label])
        at = span.end
    pieces.append(text[at:])
    return "".join(pieces)

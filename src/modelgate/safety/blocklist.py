"""Blocklists: terms matched whole-word, whatever their case and accents, and regular expressions.

Terms are compared on a folded copy of the text: decomposed (NFKD), combining marks dropped,
case-folded, so that "Café" in a list matches "CAFE" and "café". The folded copy keeps, for each
of its characters, the position of the character it came from, so that a finding is reported on
the original text. ASCII text, the common case, folds by ``lower()`` alone with the same positions.
Terms of several words match across any run of whitespace, or a hyphen ("internal only" is
"internal-only" too). Patterns are Python regular
expressions matched on the text as it is (``(?i)`` makes one case-insensitive).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from modelgate.safety.spans import Span, without_overlaps


def fold(text: str) -> tuple[str, list[int] | None]:
    """``text`` without case or accents, and the original position of each of its characters
    (None: the same positions, for ASCII text)."""
    if text.isascii():
        return text.lower(), None
    pieces: list[str] = []
    positions: list[int] = []
    for index, char in enumerate(text):
        if char.isascii():
            pieces.append(char.lower())
            positions.append(index)
            continue
        folded = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)).casefold()
        pieces.append(folded)
        positions.extend([index] * len(folded))
    return "".join(pieces), positions


def _starts_word(text: str, start: int) -> bool:
    """Whether nothing of a word comes right before ``start``."""
    if start == 0:
        return True
    before = text[start - 1]
    return not (before.isalnum() or before == "_")


@dataclass(frozen=True, slots=True)
class Entries:
    """One source of a blocklist check: a named list, or the terms written in the policy."""

    name: str
    terms: Sequence[str] = ()
    patterns: Sequence[str] = ()


class BlocklistFinder:
    """Finds the terms and patterns of one or more lists; each finding is labelled with its list's name."""

    __slots__ = ("_patterns", "_terms")

    def __init__(self, sources: Sequence[Entries]) -> None:
        self._terms: list[tuple[re.Pattern[str], str]] = []
        self._patterns: list[tuple[re.Pattern[str], str]] = []
        for source in sources:
            terms = sorted({fold(t.strip())[0] for t in source.terms if t.strip()}, key=len, reverse=True)
            if terms:
                # A hyphen is no longer than the one space the window allows for (config/safety.py).
                alternatives = "|".join(r"(?:\s+|-)".join(map(re.escape, t.split())) for t in terms)
                # The word boundary before a term is checked on each match (``_starts_word``): a
                # lookbehind in front would keep the expression engine from skipping ahead to the
                # terms' first letters, and triple the time of a scan.
                self._terms.append((re.compile(rf"(?:{alternatives})(?!\w)"), source.name))
            self._patterns.extend((re.compile(p), source.name) for p in source.patterns)

    def find(self, text: str) -> list[Span]:
        spans: list[Span] = []
        if self._terms:
            folded, positions = fold(text)
            for pattern, name in self._terms:
                for match in pattern.finditer(folded):
                    if not _starts_word(folded, match.start()):
                        continue
                    if positions is None:
                        spans.append(Span(match.start(), match.end(), name))
                    else:
                        spans.append(Span(positions[match.start()], positions[match.end() - 1] + 1, name))
        for pattern, name in self._patterns:
            spans.extend(Span(m.start(), m.end(), name) for m in pattern.finditer(text) if m.end() > m.start())
        return without_overlaps(spans) if len(spans) > 1 else spans

"""Effort → budget mapping and the streaming ``<think>`` tag splitter."""

from __future__ import annotations

import pytest

from modelgate.providers.thinking import (
    ANTHROPIC_EFFORT_BUDGETS,
    GEMINI_EFFORT_BUDGETS,
    ThinkTagSplitter,
    thinking_budget,
)
from modelgate.schema.events import ReasoningDelta, TextDelta


def split(chunks: list[str]) -> tuple[str, str, list[TextDelta | ReasoningDelta]]:
    """(reasoning, text, events) of a content stream cut into ``chunks``."""
    splitter = ThinkTagSplitter()
    events = [e for chunk in chunks for e in splitter.feed(chunk)] + splitter.flush()
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    return reasoning, text, events


def every_cut(content: str) -> list[list[str]]:
    """The content cut at every position into two chunks, and into single characters."""
    return [[content[:i], content[i:]] for i in range(len(content) + 1)] + [list(content)]


def test_budget_from_effort_or_explicit() -> None:
    assert thinking_budget(None, None, ANTHROPIC_EFFORT_BUDGETS) is None
    assert thinking_budget("none", None, ANTHROPIC_EFFORT_BUDGETS) == 0
    assert thinking_budget("high", None, ANTHROPIC_EFFORT_BUDGETS) == 16384
    assert thinking_budget("high", None, GEMINI_EFFORT_BUDGETS) == 24576
    assert thinking_budget("high", 2000, GEMINI_EFFORT_BUDGETS) == 2000
    assert thinking_budget("turbo", None, GEMINI_EFFORT_BUDGETS) == GEMINI_EFFORT_BUDGETS["medium"]


@pytest.mark.parametrize("chunks", every_cut("<think>\nLet me add: 2+2=4.\n</think>\n\nThe answer is 4."))
def test_think_block_split_across_any_chunk_boundary(chunks: list[str]) -> None:
    reasoning, text, events = split(chunks)
    assert (reasoning, text) == ("Let me add: 2+2=4.", "The answer is 4.")
    starts = [e.block_start for e in events if isinstance(e, ReasoningDelta)]
    assert starts[0] and not any(starts[1:])
    # Reasoning comes first, and nothing is emitted empty.
    kinds = [type(e) for e in events]
    assert kinds == sorted(kinds, key=lambda k: k is TextDelta) and all(e.text for e in events)


def test_pieces_are_released_as_they_arrive() -> None:
    splitter = ThinkTagSplitter(choice=2)
    assert splitter.feed("<think>step one") == [ReasoningDelta(text="step one", block_start=True, choice=2)]
    assert splitter.feed(", step two</thi") == [ReasoningDelta(text=", step two", choice=2)]
    assert splitter.feed("nk>Done") == [TextDelta("Done", 2)]
    assert splitter.feed(" now") == [TextDelta(" now", 2)]
    assert splitter.flush() == []


@pytest.mark.parametrize("chunks", every_cut("  The <think> tag is what R1 writes."))
def test_content_that_does_not_open_with_a_tag_is_text(chunks: list[str]) -> None:
    assert split(chunks)[:2] == ("", "  The <think> tag is what R1 writes.")


def test_unfinished_thoughts_are_reasoning_and_partial_tags_are_kept() -> None:
    assert split(["<think>I was cut off by max_tok", "ens  "])[:2] == ("I was cut off by max_tokens", "")
    assert split(["<thi"])[:2] == ("", "<thi")
    assert split(["\n\n"])[:2] == ("", "\n\n")
    assert split(["<think></think>", "Answer"])[:2] == ("", "Answer")

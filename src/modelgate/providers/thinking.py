"""Reasoning helpers shared by the native adapters and the pipeline.

* ``thinking_budget`` turns OpenAI's ``reasoning_effort`` (or an explicit budget) into a token
  budget, the unit Anthropic (``thinking.budget_tokens``) and Gemini (``thinkingBudget``) speak.
* ``ThinkTagSplitter`` splits the ``<think>...</think>`` prefix that open reasoning models
  (DeepSeek R1, Qwen3, QwQ served without a reasoning parser) write into their content into
  reasoning and answer, one streamed piece at a time.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelgate.schema.events import ReasoningDelta, TextDelta

# Budgets per effort, after LiteLLM's constants for Anthropic and Google's own mapping of
# reasoning_effort on Gemini's OpenAI-compatible endpoint (ai.google.dev/gemini-api/docs/openai).
ANTHROPIC_EFFORT_BUDGETS: Mapping[str, int] = {
    "minimal": 1024, "low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768, "max": 63999,
}
GEMINI_EFFORT_BUDGETS: Mapping[str, int] = {
    "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768, "max": 32768,
}


def thinking_budget(effort: str | None, budget: int | None, budgets: Mapping[str, int]) -> int | None:
    """The thinking budget a request asks for: ``None`` when it asks nothing, 0 for no thinking.

    An explicit budget wins over an effort. Efforts this table does not know yet (the list keeps
    growing) get the budget of "medium" rather than an error.
    """
    if budget is not None:
        return max(budget, 0)
    if effort is None:
        return None
    if effort == "none":
        return 0
    return budgets.get(effort, budgets["medium"])


_OPEN = "<think>"
_CLOSE = "</think>"


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is the start of ``tag`` (a tag cut by a chunk)."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ThinkTagSplitter:
    """Splits one choice's streamed content into reasoning and answer at ``<think>`` tags.

    Only a think block that opens the content counts (after leading whitespace), as vLLM's
    ``deepseek_r1`` and ``qwen3`` reasoning parsers do: a ``<think>`` later in an answer is text
    the model wrote about tags. Tags cut across chunk boundaries are held back until the next
    chunk says what they are. The whitespace around the reasoning (the newlines after
    ``<think>``, before ``</think>`` and after it) is trimmed.
    """

    __slots__ = ("_choice", "_held", "_started", "_state")

    def __init__(self, choice: int = 0) -> None:
        self._choice = choice
        # "start": nothing but whitespace seen yet; "thinking": inside <think>; "after": just
        # past </think>, trimming whitespace; "answer": everything else is text.
        self._state = "start"
        self._held = ""
        self._started = False  # a ReasoningDelta has been emitted (the block has begun)

    def feed(self, text: str) -> list[TextDelta | ReasoningDelta]:
        """The events for the next piece of content."""
        out: list[TextDelta | ReasoningDelta] = []
        buffer = self._held + text
        self._held = ""
        while buffer:
            if self._state == "answer":
                out.append(TextDelta(buffer, self._choice))
                break
            if self._state == "start":
                stripped = buffer.lstrip()
                if stripped.startswith(_OPEN):
                    self._state = "thinking"
                    buffer = stripped[len(_OPEN):]
                elif not stripped or _OPEN.startswith(stripped):
                    self._held = buffer  # whitespace, or the start of a tag: wait for more
                    break
                else:
                    self._state = "answer"
            elif self._state == "thinking":
                if not self._started:
                    buffer = buffer.lstrip()
                    if not buffer:
                        break
                end = buffer.find(_CLOSE)
                if end >= 0:
                    self._reasoning(buffer[:end].rstrip(), out)
                    self._state = "after"
                    buffer = buffer[end + len(_CLOSE):]
                    continue
                keep = _partial_suffix(buffer, _CLOSE)
                body = buffer[:len(buffer) - keep]
                visible = body.rstrip()  # hold trailing whitespace: it may precede </think>
                self._held = body[len(visible):] + buffer[len(buffer) - keep:]
                self._reasoning(visible, out)
                break
            else:  # "after"
                buffer = buffer.lstrip()
                if buffer:
                    self._state = "answer"
        return out

    def flush(self) -> list[TextDelta | ReasoningDelta]:
        """The events for what is still held when the choice ends."""
        held, self._held = self._held, ""
        out: list[TextDelta | ReasoningDelta] = []
        if not held:
            return out
        if self._state == "thinking":
            # The model stopped inside its thoughts (max tokens): what it wrote is reasoning.
            self._reasoning(held.rstrip(), out)
        elif self._state == "start":
            out.append(TextDelta(held, self._choice))
        return out

    def _reasoning(self, text: str, out: list[TextDelta | ReasoningDelta]) -> None:
        if text:
            out.append(ReasoningDelta(text=text, block_start=not self._started, choice=self._choice))
            self._started = True

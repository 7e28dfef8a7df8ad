"""Deterministic replies: one generator behind every API the simulator speaks.

Each API module turns its wire request into a :class:`Prompt` and renders the :class:`Reply` this module
derives from it, so text, tool calls, reasoning, truncation and usage behave the same on every surface.
Replies depend only on the request: identical requests get identical replies, different ones differ.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from modelgate.simulator.schema_values import value_for_schema
from modelgate.simulator.tokens import canonical_json, count_tokens, truncate_to_tokens

ToolMode = Literal["auto", "none", "required"]
Finish = Literal["stop", "length", "tool_calls", "stop_sequence", "safety"]

_EXTRA_SENTENCES: tuple[str, ...] = (
    "This answer is deterministic.",
    "Nothing here came from a real model.",
    "The simulator keeps replies short.",
    "Identical requests get identical replies.",
    "Usage numbers follow the documented estimator.",
    "Every provider format gets the same words.",
    "Streams arrive one word at a time.",
    "Ask again with different words for a different reply.",
)

_PROMPT_WORDS = 12


@dataclass(frozen=True)
class ToolSpec:
    """One function tool the caller offers."""

    name: str
    description: str = ""
    schema: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prompt:
    """The API-neutral view of a generation request."""

    model: str
    last_user_text: str
    fingerprint: bytes
    prompt_tokens: int
    tool_results: list[str] = field(default_factory=list)
    tools: list[ToolSpec] = field(default_factory=list)
    tool_mode: ToolMode = "auto"
    forced_tool: str | None = None
    parallel_tools: bool = True
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    json_schema: dict[str, Any] | None = None
    json_mode: bool = False
    reasoning: bool = False
    safety: bool = False


@dataclass(frozen=True)
class ToolCall:
    """A tool call the simulated model makes; the API layer gives it an id in its own format."""

    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return orjson.dumps(self.arguments).decode()


@dataclass
class Reply:
    """What the simulated model produced."""

    text: str
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish: Finish = "stop"
    stop_sequence: str | None = None

    @property
    def reasoning_tokens(self) -> int:
        return count_tokens(self.reasoning)

    @property
    def completion_tokens(self) -> int:
        """Tokens of text, tool calls (name + JSON arguments) and reasoning, per the documented estimator."""
        calls = sum(count_tokens(f"{c.name} {canonical_json(c.arguments)}") for c in self.tool_calls)
        return count_tokens(self.text) + calls + self.reasoning_tokens


TOOL_MARKER = "TOOL:"


def scripted(text: str) -> Reply:
    """A scripted model's reply: its text, or the tool call a ``TOOL:name:{json arguments}`` text
    stands for (a scripted model answers a tool-call item of an evaluation this way)."""
    call = scripted_tool_call(text)
    if call is None:
        return Reply(text=text)
    return Reply(text="", tool_calls=[call], finish="tool_calls")


def scripted_tool_call(text: str) -> ToolCall | None:
    """The call ``TOOL:name:{json}`` stands for; None for other text. Raises ValueError where the
    marker is there but what follows is not a name and a JSON object."""
    if not text.startswith(TOOL_MARKER):
        return None
    name, colon, arguments = text[len(TOOL_MARKER):].partition(":")
    try:
        value = orjson.loads(arguments) if colon and name else None
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise ValueError(f"{text[:80]!r}: a scripted tool call is TOOL:NAME:{{JSON object of arguments}}")
    return ToolCall(name=name, arguments=value)


def fingerprint(body: dict[str, Any], *ignored: str) -> bytes:
    """Hash of a request body without transport-only keys, so stream and non-stream requests match."""
    kept = {k: v for k, v in body.items() if k not in ignored}
    return hashlib.sha256(canonical_json(kept).encode()).digest()


def generate_reply(prompt: Prompt, index: int = 0) -> Reply:
    """The reply to ``prompt``; ``index`` > 0 gives the alternative choices of an ``n > 1`` request."""
    if prompt.safety:
        return Reply(text="", finish="safety")
    reasoning = _reasoning_text(prompt) if prompt.reasoning else ""
    calls = _tool_calls(prompt)
    if calls:
        return Reply(text="", reasoning=_clip_reasoning(reasoning, prompt), tool_calls=calls, finish="tool_calls")
    return _finish_text(prompt, _answer_text(prompt, index), reasoning)


def _answer_text(prompt: Prompt, index: int) -> str:
    if prompt.json_schema is not None:
        return orjson.dumps(value_for_schema(prompt.json_schema)).decode()
    extra = _EXTRA_SENTENCES[(prompt.fingerprint[0] + index) % len(_EXTRA_SENTENCES)]
    if index >= len(_EXTRA_SENTENCES):
        extra = f"{extra} (choice {index + 1})"
    if prompt.tool_results:
        result = _first_words(" ".join(prompt.tool_results), 20)
        text = f"Simulated reply from {prompt.model} after the tool returned: {result}. {extra}"
    else:
        text = f"Simulated reply from {prompt.model} to: {_first_words(prompt.last_user_text, _PROMPT_WORDS)}. {extra}"
    if prompt.json_mode:
        return orjson.dumps({"reply": text}).decode()
    return text


def _reasoning_text(prompt: Prompt) -> str:
    if prompt.tool_results:
        return f"The tool returned {_first_words(' '.join(prompt.tool_results), 8)}. I should answer with it."
    topic = _first_words(prompt.last_user_text, 8) or "an empty message"
    plan = "call a tool" if prompt.tools and prompt.tool_mode != "none" and not prompt.tool_results else "answer"
    return f"The user wrote about {topic}. I should {plan} briefly and deterministically."


def _tool_calls(prompt: Prompt) -> list[ToolCall]:
    if not prompt.tools or prompt.tool_mode == "none" or prompt.tool_results:
        return []
    if prompt.forced_tool is not None:
        chosen = [t for t in prompt.tools if t.name == prompt.forced_tool][:1] or prompt.tools[:1]
    elif "parallel" in prompt.last_user_text.lower() and prompt.parallel_tools and len(prompt.tools) >= 2:
        chosen = prompt.tools[:2]
    else:
        chosen = prompt.tools[:1]
    return [ToolCall(name=t.name, arguments=_arguments(t)) for t in chosen]


def _arguments(tool: ToolSpec) -> dict[str, Any]:
    value = value_for_schema(tool.schema)
    return value if isinstance(value, dict) else {}


def _clip_reasoning(reasoning: str, prompt: Prompt) -> str:
    if prompt.max_tokens is None:
        return reasoning
    return truncate_to_tokens(reasoning, prompt.max_tokens)


def _finish_text(prompt: Prompt, text: str, reasoning: str) -> Reply:
    """Apply stop sequences, then the token budget shared by reasoning and text (reasoning is spent first)."""
    stop_sequence: str | None = None
    cut_at = len(text)
    for candidate in prompt.stop:
        position = text.find(candidate) if candidate else -1
        if 0 <= position < cut_at:
            cut_at, stop_sequence = position, candidate
    text = text[:cut_at]
    if prompt.max_tokens is not None:
        reasoning = truncate_to_tokens(reasoning, prompt.max_tokens)
        budget = prompt.max_tokens - count_tokens(reasoning)
        limited = truncate_to_tokens(text, budget)
        if limited != text:
            return Reply(text=limited, reasoning=reasoning, finish="length")
    if stop_sequence is not None:
        return Reply(text=text, reasoning=reasoning, finish="stop_sequence", stop_sequence=stop_sequence)
    return Reply(text=text, reasoning=reasoning, finish="stop")


def _first_words(text: str, count: int) -> str:
    words = text.split()
    clipped = " ".join(words[:count])
    return clipped.rstrip(".!?,;:")

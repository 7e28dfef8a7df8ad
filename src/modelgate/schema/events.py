"""The closed set of stream events every provider yields and every surface renders.

A provider adapter turns its upstream's answer, streamed or not, into these events; a surface
turns them into its own wire format. A non-streaming response is the same events folded
(``fold_events``), so each adapter and each surface has a single code path.

``choice`` is the index of the completion the event belongs to (OpenAI ``n`` > 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


@dataclass(slots=True)
class Start:
    """First event of every response: what answered."""

    model: str  # the upstream model that actually answered
    response_id: str | None = None


@dataclass(slots=True)
class TextDelta:
    text: str
    choice: int = 0


@dataclass(slots=True)
class ReasoningDelta:
    """A piece of reasoning text, or of the opaque state that goes with it.

    A new reasoning block begins when ``block_start`` is set; its signature usually arrives last,
    in a delta of its own (Anthropic ``signature_delta``). ``redacted`` carries a whole
    redacted-thinking block.
    """

    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    origin: str | None = None
    block_start: bool = False
    choice: int = 0
    id: str | None = None  # the issuer's id of the block (OpenAI Responses "rs_...")


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of a tool call. ``index`` is the tool call's ordinal within the choice.

    The first fragment of a call carries ``id`` and ``name``; later ones only argument text.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    signature: str | None = None  # Gemini thought signature on the function call
    origin: str | None = None
    choice: int = 0


@dataclass(slots=True)
class Usage:
    """Token counts in OpenAI's sense: ``input_tokens`` includes cached and cache-write tokens."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0  # part of output_tokens


@dataclass(slots=True)
class Finish:
    reason: FinishReason
    choice: int = 0
    # The provider's own word, where it says more than ``reason`` (e.g. "end_turn", "SAFETY").
    native_reason: str | None = None
    stop_sequence: str | None = None


@dataclass(slots=True)
class Embeddings:
    """The vectors of an embeddings call, floats or base64 little-endian float32 strings."""

    vectors: list[list[float] | str]


@dataclass(slots=True)
class ModerationResult:
    """One input of a moderations call judged: its score (0..1) per category, and the categories
    flagged, in OpenAI's category names (``hate``, ``self-harm/intent``, ...)."""

    scores: dict[str, float]
    flagged: dict[str, bool] = field(default_factory=dict)


@dataclass(slots=True)
class ModerationScores:
    """The answer of a moderations call: a result for each input, in order."""

    results: list[ModerationResult]


Event = Start | TextDelta | ReasoningDelta | ToolCallDelta | Usage | Finish | Embeddings | ModerationScores


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str
    signature: str | None = None
    origin: str | None = None


@dataclass(slots=True)
class ReasoningBlock:
    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    origin: str | None = None
    id: str | None = None


@dataclass(slots=True)
class Choice:
    index: int
    text: str = ""
    reasoning: list[ReasoningBlock] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    native_reason: str | None = None
    stop_sequence: str | None = None

    @property
    def reasoning_text(self) -> str:
        return "".join(block.text for block in self.reasoning)


@dataclass(slots=True)
class ChatResult:
    """A whole response: the events of one answer, folded."""

    model: str = ""
    response_id: str | None = None
    choices: list[Choice] = field(default_factory=list)
    usage: Usage | None = None
    vectors: list[list[float] | str] | None = None  # an embeddings call's answer
    moderations: list[ModerationResult] | None = None  # a moderations call's answer


class ResultBuilder:
    """Folds events into a ``ChatResult`` one at a time (also used to watch a stream go by)."""

    __slots__ = ("_choices", "result")

    def __init__(self) -> None:
        self.result = ChatResult()
        self._choices: dict[int, Choice] = {}

    def _choice(self, index: int) -> Choice:
        choice = self._choices.get(index)
        if choice is None:
            choice = self._choices[index] = Choice(index=index)
        return choice

    def add(self, event: Event) -> None:
        if isinstance(event, TextDelta):
            choice = self._choice(event.choice)
            choice.text += event.text
        elif isinstance(event, ToolCallDelta):
            calls = self._choice(event.choice).tool_calls
            while len(calls) <= event.index:
                calls.append(ToolCall(id="", name="", arguments=""))
            call = calls[event.index]
            if event.id:
                call.id = event.id
            if event.name:
                call.name += event.name
            call.arguments += event.arguments
            if event.signature:
                call.signature = event.signature
            if event.origin:
                call.origin = event.origin
        elif isinstance(event, ReasoningDelta):
            blocks = self._choice(event.choice).reasoning
            if event.block_start or not blocks or event.redacted is not None:
                blocks.append(ReasoningBlock(origin=event.origin))
            block = blocks[-1]
            block.text += event.text
            if event.signature:
                block.signature = (block.signature or "") + event.signature
            if event.redacted is not None:
                block.redacted = event.redacted
            if event.origin:
                block.origin = event.origin
            if event.id:
                block.id = event.id
        elif isinstance(event, Usage):
            self.result.usage = event
        elif isinstance(event, Finish):
            choice = self._choice(event.choice)
            choice.finish_reason = event.reason
            choice.native_reason = event.native_reason
            choice.stop_sequence = event.stop_sequence
        elif isinstance(event, Embeddings):
            self.result.vectors = event.vectors
        elif isinstance(event, ModerationScores):
            self.result.moderations = event.results
        elif isinstance(event, Start):
            self.result.model = event.model
            self.result.response_id = event.response_id

    def finish(self) -> ChatResult:
        self.result.choices = [self._choices[i] for i in sorted(self._choices)] or [Choice(index=0)]
        return self.result


def fold_events(events: list[Event]) -> ChatResult:
    builder = ResultBuilder()
    for event in events:
        builder.add(event)
    return builder.finish()

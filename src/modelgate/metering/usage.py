"""What a call used: the upstream's own count when it sent one, an estimate when it did not.

A stream cut by the upstream or by a client that went away never gets its usage chunk, yet the
provider bills for what it generated. Such a call is counted as its estimated input plus the
output it streamed (four characters a token, as ``schema.tokens`` estimates), so that cutting a
stream is no way around a budget. A call that no upstream accepted (no ``Start`` event) used
nothing.
"""

from __future__ import annotations

import time

from modelgate.schema.events import Event, Finish, ReasoningDelta, Start, TextDelta, ToolCallDelta, Usage
from modelgate.schema.request import ChatRequest, EmbeddingRequest, ModerationRequest
from modelgate.schema.tokens import bound_input_tokens, estimate_input_tokens, estimate_text_tokens, utf8_length
from modelgate.storage.bounds import MAX_TOKENS, bounded_int

_COUNTS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")


def estimate_request_tokens(request: ChatRequest | EmbeddingRequest | ModerationRequest) -> int:
    """Estimated input tokens of a chat, embeddings or moderations request."""
    if isinstance(request, ChatRequest):
        return estimate_input_tokens(request)
    total = 0
    for item in request.input:
        # Token arrays are already tokens; strings are estimated.
        total += estimate_text_tokens(item) if isinstance(item, str) else len(item)
    return total


def bound_request_tokens(request: ChatRequest | EmbeddingRequest | ModerationRequest) -> int:
    """Input tokens no provider counts more of for a chat, embeddings or moderations request (what
    budgets reserve)."""
    if isinstance(request, ChatRequest):
        return bound_input_tokens(request)
    total = 0
    for item in request.input:
        # Token arrays are exact; a string is at most its UTF-8 bytes (and the end-of-text token).
        total += utf8_length(item) + 1 if isinstance(item, str) else len(item)
    return total


def bounded_usage(usage: Usage) -> Usage:
    """``usage`` with each count a whole number from 0 to ``MAX_TOKENS`` (an upstream may report
    anything: a string, a float, a number past any column); ``usage`` itself when it already is."""
    for name in _COUNTS:
        value = getattr(usage, name)
        if type(value) is not int or not 0 <= value <= MAX_TOKENS:
            return Usage(**{name: bounded_int(getattr(usage, name), MAX_TOKENS) for name in _COUNTS})
    return usage


class UsageWatch:
    """Watches the events of one call go by: the usage reported, the output streamed, the first
    token, the upstream's response id and finish reasons; and where ``output`` is a list, keeps
    the answer's text and tool-call deltas in it (for a span that records content)."""

    __slots__ = ("accepted", "finish_reasons", "first_token", "output", "output_chars", "response_id", "usage")

    def __init__(self, output: list[TextDelta | ToolCallDelta] | None = None) -> None:
        self.usage: Usage | None = None
        self.accepted = False  # an upstream answered (Start)
        self.output_chars = 0
        self.first_token: float | None = None  # time.monotonic() of the first content event
        self.response_id: str | None = None
        self.finish_reasons: tuple[str, ...] = ()
        self.output = output

    def observe(self, event: Event) -> None:
        # Ordered by how often each event comes: text deltas are most of a stream.
        if isinstance(event, TextDelta | ReasoningDelta):
            self.output_chars += len(event.text)
            if self.first_token is None:
                self.first_token = time.monotonic()
            if self.output is not None and isinstance(event, TextDelta):
                self.output.append(event)
        elif isinstance(event, ToolCallDelta):
            self.output_chars += len(event.arguments) + len(event.name or "")
            if self.first_token is None:
                self.first_token = time.monotonic()
            if self.output is not None:
                self.output.append(event)
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, Finish):
            self.finish_reasons += (event.reason,)
        elif isinstance(event, Start):
            self.accepted = True
            self.response_id = event.response_id

    def final(self, estimated_input: int) -> Usage:
        """The usage to account: reported, else estimated from what went by, else nothing."""
        if self.usage is not None:
            return self.usage
        if not self.accepted:
            return Usage()
        return Usage(input_tokens=estimated_input,
                     output_tokens=(self.output_chars + 3) // 4)

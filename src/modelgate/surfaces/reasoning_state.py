"""Reasoning state sealed by the gateway, and opened again whichever format brings it back.

The Responses surface hands its clients each reasoning item's state as a sealed token in
``encrypted_content``: everything an upstream needs back on the next turn, whoever issued it. That
is the reasoning block's text (Anthropic verifies it against the signature; DeepSeek wants it back
as is), its opaque state (Anthropic's thinking signature or redacted data, Gemini's thought
signature, OpenAI's own encrypted content) with its issuer and item id, and Gemini's thought
signatures of the turn's function calls by call id, which the Responses wire has no place for.
Clients see a token that they can neither read nor forge.

A client that switches format carries the token where that format keeps opaque state: a Chat
Completions ``thinking_blocks[].signature`` or a Messages thinking block's ``signature``.
``restore_reasoning`` puts the state back in its place before the call runs, so the upstream
gets what it issued, never the token. A signature that is not a token of this gateway (an
Anthropic or Gemini signature sent back as issued) is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelgate.schema.events import ReasoningBlock
from modelgate.schema.request import ChatRequest, Message, Part, ReasoningPart, ToolCallPart
from modelgate.surfaces.base import Sealer


@dataclass(slots=True, kw_only=True)
class ReasoningState:
    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    origin: str | None = None
    id: str | None = None  # the issuer's item id (an upstream's "rs_...")
    calls: dict[str, str] = field(default_factory=dict)  # call id → thought signature

    @classmethod
    def of_block(cls, block: ReasoningBlock) -> ReasoningState:
        return cls(text=block.text, signature=block.signature, redacted=block.redacted, origin=block.origin,
                   id=block.id)

    @classmethod
    def open(cls, token: str, sealer: Sealer) -> ReasoningState | None:
        """The state a token of this gateway carries; None for anything else."""
        payload = sealer.open(token)
        return None if payload is None else cls.from_payload(payload)

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"origin": self.origin, "text": self.text}
        if self.signature is not None:
            payload["signature"] = self.signature
        if self.redacted is not None:
            payload["redacted"] = self.redacted
        if self.id is not None:
            payload["id"] = self.id
        if self.calls:
            payload["calls"] = self.calls
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ReasoningState:
        calls = payload.get("calls")
        return cls(text=_text(payload.get("text")) or "", signature=_text(payload.get("signature")),
                   redacted=_text(payload.get("redacted")), origin=_text(payload.get("origin")),
                   id=_text(payload.get("id")),
                   calls={k: v for k, v in calls.items() if isinstance(v, str)} if isinstance(calls, dict) else {})

    def part(self) -> ReasoningPart | None:
        """The reasoning block to send back; None where the item carried only call signatures."""
        if not self.text and self.signature is None and self.redacted is None:
            return None
        return ReasoningPart(text=self.text, signature=self.signature, redacted=self.redacted, origin=self.origin,
                             id=self.id)


def restore_reasoning(request: ChatRequest, sealer: Sealer) -> None:
    """Replace each reasoning part whose signature is a token of this gateway by the state it
    carries, and put the token's Gemini call signatures back on the function calls of the same
    message. Only assistant messages with a signed reasoning part are looked at twice: a request
    without one costs one pass over its messages."""
    for message in request.messages:
        if message.role == "assistant":
            for part in message.content:
                if isinstance(part, ReasoningPart) and part.signature:
                    _restore(message, sealer)
                    break


def _restore(message: Message, sealer: Sealer) -> None:
    content: list[Part] = []
    calls: dict[str, tuple[str, str | None]] = {}  # call id → (thought signature, its issuer)
    for part in message.content:
        state = (ReasoningState.open(part.signature, sealer)
                 if isinstance(part, ReasoningPart) and part.signature else None)
        if state is None:
            content.append(part)
            continue
        for call_id, signature in state.calls.items():
            calls[call_id] = (signature, state.origin)
        restored = state.part()
        if restored is not None:
            content.append(restored)
    if calls:
        for part in content:
            if isinstance(part, ToolCallPart) and part.id in calls:
                part.signature, part.origin = calls[part.id]
    message.content = content


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None

"""What a reasoning item's ``encrypted_content`` carries, sealed by the gateway.

Everything an upstream needs back on the next turn, whoever issued it: the reasoning block's
text (Anthropic verifies it against the signature; DeepSeek wants it back as is), its opaque
state (Anthropic's thinking signature or redacted data, Gemini's thought signature, OpenAI's own
encrypted content) with its issuer and item id, and Gemini's thought signatures of the turn's
function calls by call id, which the Responses wire has no place for. Clients see a token that
they can neither read nor forge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelgate.schema.events import ReasoningBlock
from modelgate.schema.request import ReasoningPart


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


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None

"""Anthropic Messages responses: the ``message`` object and the exact SSE event sequence of a stream.

Pure functions; shapes follow the anthropic SDK types (protocols.md §3.3-3.4).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelgate.simulator.anthropic_messages import THINKING, PromptUsage, redacted_data
from modelgate.simulator.replies import Finish, Reply
from modelgate.simulator.state import Signer
from modelgate.simulator.tokens import split_words

STOP_REASONS: dict[Finish, str] = {
    "stop": "end_turn",
    "stop_sequence": "stop_sequence",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "safety": "refusal",
}
_JSON_FRAGMENT = 10


@dataclass
class MessageParts:
    """Everything needed to render one reply, in both the whole-message and the streamed form."""

    model: str
    reply: Reply
    usage: PromptUsage
    blocks: list[dict[str, Any]]
    message_id: str = field(default_factory=lambda: f"msg_01{uuid.uuid4().hex[:22]}")


def build_blocks(reply: Reply, signer: Signer, *, redact: bool) -> list[dict[str, Any]]:
    """The response content blocks; thinking blocks carry an HMAC signature the simulator later verifies."""
    blocks: list[dict[str, Any]] = []
    if reply.reasoning:
        blocks.append(
            {"type": "thinking", "thinking": reply.reasoning, "signature": signer.sign(THINKING, reply.reasoning)}
        )
        if redact:
            blocks.append({"type": "redacted_thinking", "data": redacted_data(signer, secrets.token_hex(16))})
    if reply.text:
        blocks.append({"type": "text", "text": reply.text, "citations": None})
    for call in reply.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": f"toolu_01{uuid.uuid4().hex[:22]}", "name": call.name, "input": call.arguments}
        )
    return blocks


def usage_object(parts: MessageParts, output_tokens: int) -> dict[str, Any]:
    usage = parts.usage
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_creation,
        "cache_read_input_tokens": usage.cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.cache_creation if usage.cache_ttl == "5m" else 0,
            "ephemeral_1h_input_tokens": usage.cache_creation if usage.cache_ttl == "1h" else 0,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def render_message(parts: MessageParts) -> dict[str, Any]:
    reply = parts.reply
    return {
        "id": parts.message_id,
        "type": "message",
        "role": "assistant",
        "model": parts.model,
        "content": parts.blocks,
        "stop_reason": STOP_REASONS[reply.finish],
        "stop_sequence": reply.stop_sequence,
        "usage": usage_object(parts, reply.completion_tokens),
    }


def _event(data: dict[str, Any]) -> bytes:
    return b"event: " + str(data["type"]).encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def render_events(parts: MessageParts) -> list[bytes]:
    """message_start, per block start/deltas/stop (a ping after the first start), message_delta, message_stop."""
    start = render_message(parts)
    start.update(content=[], stop_reason=None, stop_sequence=None, usage=usage_object(parts, 1))
    frames = [_event({"type": "message_start", "message": start})]
    for index, block in enumerate(parts.blocks):
        block_frames = _block_events(index, block)
        if index == 0:
            # Anthropic sends its first keep-alive right after the first content_block_start.
            block_frames.insert(1, _event({"type": "ping"}))
        frames.extend(block_frames)
    if not parts.blocks:
        frames.append(_event({"type": "ping"}))
    reply = parts.reply
    frames.append(
        _event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": STOP_REASONS[reply.finish], "stop_sequence": reply.stop_sequence},
                "usage": {
                    "input_tokens": parts.usage.input_tokens,
                    "cache_creation_input_tokens": parts.usage.cache_creation,
                    "cache_read_input_tokens": parts.usage.cache_read,
                    "output_tokens": reply.completion_tokens,
                },
            }
        )
    )
    frames.append(_event({"type": "message_stop"}))
    return frames


def _block_events(index: int, block: dict[str, Any]) -> list[bytes]:
    kind = block["type"]

    def delta(payload: dict[str, Any]) -> bytes:
        return _event({"type": "content_block_delta", "index": index, "delta": payload})

    frames: list[bytes] = []
    if kind == "thinking":
        frames.append(
            _event(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                }
            )
        )
        frames.extend(delta({"type": "thinking_delta", "thinking": w}) for w in split_words(block["thinking"]))
        # The signature arrives whole, just before the block stops.
        frames.append(delta({"type": "signature_delta", "signature": block["signature"]}))
    elif kind == "redacted_thinking":
        frames.append(_event({"type": "content_block_start", "index": index, "content_block": block}))
    elif kind == "text":
        frames.append(
            _event(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": "", "citations": None},
                }
            )
        )
        frames.extend(delta({"type": "text_delta", "text": w}) for w in split_words(block["text"]))
    elif kind == "tool_use":
        frames.append(_event({"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}}))
        arguments = orjson.dumps(block["input"]).decode()
        fragments = [""] + [arguments[i : i + _JSON_FRAGMENT] for i in range(0, len(arguments), _JSON_FRAGMENT)]
        frames.extend(delta({"type": "input_json_delta", "partial_json": f}) for f in fragments)
    frames.append(_event({"type": "content_block_stop", "index": index}))
    return frames

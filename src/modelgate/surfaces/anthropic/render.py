"""Canonical events → Anthropic's message stream events, message bodies and error bodies.

``MessageRenderer`` turns the events of one answer into Anthropic's stream events in order
(protocols.md §3.4): ``message_start``, ``ping``, per content block ``content_block_start`` /
``content_block_delta`` / ``content_block_stop`` (block indexes count every block, a tool call's
index is mapped from ``ToolCallDelta.index``), ``message_delta`` and ``message_stop``. A
non-streaming answer is the same events folded by ``fold_message``, so both keep the order in which
thinking, text and tool calls arrived.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelgate.http.sse import sse_event
from modelgate.schema.errors import GatewayError, UpstreamMalformed
from modelgate.schema.events import (
    Event,
    Finish,
    FinishReason,
    ReasoningDelta,
    Start,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from modelgate.schema.tokens import CHARS_PER_TOKEN
from modelgate.surfaces.anthropic.parse import join_signature

STOP_REASONS: dict[FinishReason, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
# An Anthropic upstream's own stop reason passes through as it came (types/stop_reason.py).
NATIVE_STOP_REASONS = frozenset({
    "end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal",
    "model_context_window_exceeded",
})
ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 413: "request_too_large", 415: "invalid_request_error",
    429: "rate_limit_error", 503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status (docs.claude.com/en/api/errors)."""
    known = ERROR_TYPES.get(status)
    if known is not None:
        return known
    return "invalid_request_error" if status < 500 else "api_error"


# Codes that Anthropic's error objects name in ``error.details.error_code`` (the SDK raises its
# typed errors by them, and the thread helper replays a conversation on thread_not_found).
DETAILED_CODES = frozenset({"thread_not_found", "thread_fingerprint_mismatch"})


def error_body(error: GatewayError, request_id: str) -> bytes:
    detail: dict[str, Any] = {"type": error_type(error.status), "message": error.message}
    if error.code in DETAILED_CODES:
        detail["details"] = {"error_code": error.code}
    return orjson.dumps({"type": "error", "error": detail, "request_id": request_id})


def stream_error(error: GatewayError, request_id: str) -> bytes:
    """The ``event: error`` that ends a stream which failed after it started."""
    kind = "overloaded_error" if error.status in (429, 503, 529) else "api_error"
    payload = {"type": "error", "error": {"type": kind, "message": error.message}, "request_id": request_id}
    return sse_event("error", orjson.dumps(payload))


def usage_body(usage: Usage) -> dict[str, int]:
    """Anthropic's usage: ``input_tokens`` excludes cache reads and writes, which OpenAI's includes."""
    cached = usage.cached_input_tokens + usage.cache_write_tokens
    return {
        "input_tokens": max(usage.input_tokens - cached, 0),
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
    }


class MessageRenderer:
    """Renders the events of one answer as Anthropic stream events (dicts, not yet framed).

    ``message_start`` waits for the first content event, so that a ``Usage`` an upstream reports
    up front (Anthropic's own) gives it the real input count; otherwise it carries
    ``input_estimate`` and ``message_delta`` brings the real numbers, which clients take as
    cumulative. With ``show_reasoning`` false thinking text is dropped, but a signature still
    gets its (empty) thinking block, as with Anthropic's ``display: "omitted"``.
    """

    __slots__ = ("_block", "_chars", "_finish", "_input_estimate", "_message_id", "_model", "_next",
                 "_open", "_reasoning_break", "_reasoning_id", "_show_reasoning", "_signature", "_started",
                 "_tools", "_usage")

    def __init__(self, message_id: str, model: str, show_reasoning: bool, input_estimate: int = 0) -> None:
        self._message_id = message_id
        self._model = model
        self._show_reasoning = show_reasoning
        self._input_estimate = input_estimate
        self._started = False
        self._next = 0  # index of the next content block
        self._open: str | None = None  # type of the open block
        self._block = 0  # index of the open block
        self._signature = ""  # of the open thinking block, sent just before it stops
        self._reasoning_break = False  # the next reasoning starts a new thinking block
        self._reasoning_id: str | None = None  # the issuer's id of the reasoning block (an "rs_...")
        self._tools: dict[int, int] = {}  # canonical tool call index -> block index
        self._usage: Usage | None = None
        self._finish: Finish | None = None
        self._chars = 0  # of output, for an estimate when the upstream reports no usage

    def render(self, event: Event) -> list[dict[str, Any]]:
        if isinstance(event, Start):
            self._model = event.model or self._model
            return []
        if isinstance(event, Usage):
            self._usage = event
            return []
        if getattr(event, "choice", 0) != 0:
            return []  # the Messages API has one answer per request
        out = [] if self._started else self._message_start()
        if isinstance(event, TextDelta):
            if event.text:
                if self._open != "text":
                    self._start_block(out, {"type": "text", "text": ""})
                out.append(self._delta({"type": "text_delta", "text": event.text}))
                self._chars += len(event.text)
        elif isinstance(event, ReasoningDelta):
            self._reasoning(event, out)
        elif isinstance(event, ToolCallDelta):
            self._tool_call(event, out)
        elif isinstance(event, Finish):
            self._finish = event
        return out

    def finish(self) -> list[dict[str, Any]]:
        """What follows the last event: the open block's stop, ``message_delta``, ``message_stop``."""
        out = [] if self._started else self._message_start()
        self._close(out)
        usage = (usage_body(self._usage) if self._usage is not None else
                 {"input_tokens": self._input_estimate, "output_tokens": -(-self._chars // CHARS_PER_TOKEN)})
        finish = self._finish
        stop_sequence = finish.stop_sequence if finish is not None else None
        out.append({"type": "message_delta",
                    "delta": {"stop_reason": self._stop_reason(), "stop_sequence": stop_sequence,
                              "stop_details": None},
                    "usage": usage})
        out.append({"type": "message_stop"})
        return out

    def _stop_reason(self) -> str:
        finish = self._finish
        if finish is None:
            return "tool_use" if self._tools else "end_turn"
        if finish.native_reason in NATIVE_STOP_REASONS:
            return finish.native_reason
        if finish.reason == "stop":
            if finish.stop_sequence is not None:
                return "stop_sequence"
            # Some OpenAI-compatible servers (Ollama) say "stop" after tool calls; clients run
            # tools on "tool_use".
            return "tool_use" if self._tools else "end_turn"
        return STOP_REASONS[finish.reason]

    def _message_start(self) -> list[dict[str, Any]]:
        self._started = True
        usage = (usage_body(self._usage) if self._usage is not None else
                 {"input_tokens": self._input_estimate, "output_tokens": 0,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
        message: dict[str, Any] = {
            "id": self._message_id, "type": "message", "role": "assistant", "model": self._model,
            "content": [], "stop_reason": None, "stop_sequence": None, "stop_details": None, "usage": usage}
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def _start_block(self, out: list[dict[str, Any]], block: dict[str, Any]) -> int:
        self._close(out)
        index = self._block = self._next
        self._next += 1
        self._open = block["type"]
        out.append({"type": "content_block_start", "index": index, "content_block": block})
        return index

    def _close(self, out: list[dict[str, Any]]) -> None:
        if self._open is None:
            return
        if self._signature:
            out.append(self._delta({"type": "signature_delta", "signature": self._signature}))
            self._signature = ""
        out.append({"type": "content_block_stop", "index": self._block})
        self._open = None

    def _delta(self, delta: dict[str, Any], index: int | None = None) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": self._block if index is None else index, "delta": delta}

    def _reasoning(self, event: ReasoningDelta, out: list[dict[str, Any]]) -> None:
        if event.redacted is not None:
            self._start_block(out, {"type": "redacted_thinking", "data": event.redacted})
            self._close(out)
            return
        if event.block_start:
            self._reasoning_break = True
            self._reasoning_id = None
        if event.id:
            self._reasoning_id = event.id  # it comes with the block's start, its signature later
        text = event.text if self._show_reasoning else ""
        if not text and not event.signature:
            return
        if self._open != "thinking" or self._reasoning_break:
            self._start_block(out, {"type": "thinking", "thinking": "", "signature": ""})
            self._reasoning_break = False
        if text:
            out.append(self._delta({"type": "thinking_delta", "thinking": text}))
            self._chars += len(text)
        if event.signature:
            # Clients keep only the last signature_delta of a block: send it whole at the end.
            self._signature += (event.signature if self._signature
                                else join_signature(event.signature, event.origin, item_id=self._reasoning_id))

    def _tool_call(self, event: ToolCallDelta, out: list[dict[str, Any]]) -> None:
        index = self._tools.get(event.index)
        if index is None:
            if event.signature:
                # A Gemini thought signature on the call rides on an empty thinking block before it.
                self._start_block(out, {"type": "thinking", "thinking": "",
                                        "signature": join_signature(event.signature, event.origin, on_call=True)})
            index = self._tools[event.index] = self._start_block(out, {
                "type": "tool_use", "id": event.id or f"toolu_{self._message_id[4:]}_{event.index}",
                "name": event.name or "", "input": {}})
        if event.arguments:
            out.append(self._delta({"type": "input_json_delta", "partial_json": event.arguments}, index))
            self._chars += len(event.arguments)


def fold_message(events: list[dict[str, Any]], provider: str) -> dict[str, Any]:
    """The whole ``message`` object that a list of stream events describes."""
    message: dict[str, Any] = {}
    arguments: dict[int, str] = {}
    for event in events:
        kind = event["type"]
        if kind == "message_start":
            message = dict(event["message"], content=[])
        elif kind == "content_block_start":
            message["content"].append(dict(event["content_block"]))
        elif kind == "content_block_delta":
            block, delta = message["content"][event["index"]], event["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            elif delta["type"] == "input_json_delta":
                arguments[event["index"]] = arguments.get(event["index"], "") + delta["partial_json"]
        elif kind == "message_delta":
            message.update(event["delta"])
            message["usage"] = {**message["usage"], **event["usage"]}
    for index, text in arguments.items():
        message["content"][index]["input"] = _tool_input(text, provider)
    return message


def _tool_input(text: str, provider: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        # Anthropic's tool_use.input is an object; a call whose arguments are not one cannot be given.
        raise UpstreamMalformed(f"provider '{provider}' returned tool call arguments that are not a JSON object: "
                                f"{text[:200]!r}", provider=provider)
    return value

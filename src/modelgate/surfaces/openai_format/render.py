"""Canonical events and results → OpenAI's chat completion, chunk, embedding and error bodies."""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from typing import Any

import orjson

from modelgate.schema.errors import (
    AuthenticationFailed,
    BudgetExceeded,
    Conflict,
    ContentFiltered,
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    RateLimited,
    UnsupportedMediaType,
    UpstreamError,
    UpstreamMalformed,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from modelgate.schema.events import (
    ChatResult,
    Event,
    Finish,
    ReasoningDelta,
    Start,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from modelgate.schema.verdicts import SafetyReport
from modelgate.surfaces.openai_format.content_filter import choice_filter_results, inner_error, prompt_filter_results


def thinking_block(text: str, signature: str | None, redacted: str | None, origin: str | None,
                   item_id: str | None = None) -> dict[str, Any]:
    """A reasoning block with the opaque state its provider needs back, in the ``thinking_blocks``
    shape OpenAI-format clients of Claude models already know; ``provider`` marks blocks that
    are not Anthropic's (Gemini's signatures on text), and ``id`` carries the issuer's item id
    where it has one (an OpenAI Responses reasoning item, which goes back only with its id)."""
    block: dict[str, Any] = ({"type": "redacted_thinking", "data": redacted} if redacted is not None
                             else {"type": "thinking", "thinking": text, "signature": signature or ""})
    if origin and origin != "anthropic":
        block["provider"] = origin
    if item_id:
        block["id"] = item_id
    return block


def tool_call_body(call_id: str, name: str, arguments: str, signature: str | None) -> dict[str, Any]:
    call: dict[str, Any] = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    if signature:
        # Where Google's own OpenAI-compatible endpoint puts a Gemini thought signature.
        call["extra_content"] = {"google": {"thought_signature": signature}}
    return call


def usage_body(usage: Usage) -> dict[str, Any]:
    prompt_details: dict[str, int] = {"cached_tokens": usage.cached_input_tokens}
    if usage.cache_write_tokens:
        prompt_details["cache_write_tokens"] = usage.cache_write_tokens
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


# OpenAI's error type for each of the gateway's errors (the most specific class wins).
ERROR_TYPES: tuple[tuple[type[GatewayError], str], ...] = (
    (UpstreamUnreachable, "upstream_unreachable"),
    (UpstreamTimeout, "upstream_timeout"),
    (UpstreamMalformed, "upstream_error"),
    (BudgetExceeded, "insufficient_quota"),
    (RateLimited, "rate_limit_error"),
    (AuthenticationFailed, "authentication_error"),
    (PermissionDenied, "permission_error"),
    (UnsupportedMediaType, "invalid_request_error"),
    (InvalidRequest, "invalid_request_error"),
    (NotFound, "invalid_request_error"),
    (MethodNotAllowed, "invalid_request_error"),
    (Conflict, "invalid_request_error"),
)


def error_type(error: GatewayError) -> str:
    """OpenAI's ``type`` for ``error``: an upstream's own type where it named one, else by class,
    else by status."""
    if isinstance(error, UpstreamError) and error.upstream_type:
        return error.upstream_type
    for kind, name in ERROR_TYPES:
        if isinstance(error, kind):
            return name
    return type_for_status(error.status)


def type_for_status(status: int) -> str:
    """OpenAI's error type for an HTTP status."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    if status < 500:
        return "invalid_request_error"
    return "server_error"


def error_object(error: GatewayError) -> dict[str, Any]:
    body: dict[str, Any] = {"message": error.message, "type": error_type(error), "param": error.param,
                            "code": error.code}
    if isinstance(error, ContentFiltered):
        body["innererror"] = inner_error(error)
    return body


def error_body(error: GatewayError) -> bytes:
    return orjson.dumps({"error": error_object(error)})


def completion_body(result: ChatResult, response_id: str, created: int, show_reasoning: bool,
                    safety: SafetyReport | None = None) -> bytes:
    """The chat completion; with a content policy, Azure's filter results of the prompt and of
    each choice (content_filter.py)."""
    choices = []
    for choice in result.choices:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": choice.text if choice.text or not choice.tool_calls else None,
            "refusal": None,
            "annotations": [],
        }
        if show_reasoning and choice.reasoning_text:
            message["reasoning_content"] = choice.reasoning_text
        blocks = [thinking_block(b.text, b.signature, b.redacted, b.origin, b.id) for b in choice.reasoning
                  if b.signature or b.redacted is not None]
        if show_reasoning and blocks:
            message["thinking_blocks"] = blocks
        if choice.tool_calls:
            message["tool_calls"] = [tool_call_body(call.id, call.name, call.arguments, call.signature)
                                     for call in choice.tool_calls]
        rendered: dict[str, Any] = {"index": choice.index, "message": message, "logprobs": None,
                                    "finish_reason": choice.finish_reason or "stop"}
        filtered = choice_filter_results(safety, choice.index)
        if filtered is not None:
            rendered["content_filter_results"] = filtered
        choices.append(rendered)
    body: dict[str, Any] = {
        "id": response_id, "object": "chat.completion", "created": created,
        "model": result.model, "choices": choices,
    }
    prompt_results = prompt_filter_results(safety)
    if prompt_results is not None:
        body["prompt_filter_results"] = prompt_results
    if result.usage is not None:
        body["usage"] = usage_body(result.usage)
    return orjson.dumps(body)


class ChunkRenderer:
    """Renders the events of one stream as ``chat.completion.chunk`` payloads (without framing)."""

    __slots__ = ("_announced", "_base", "_blocks", "_include_usage", "_safety", "_show_reasoning", "usage")

    def __init__(self, response_id: str, created: int, include_usage: bool, show_reasoning: bool,
                 safety: Callable[[], SafetyReport | None] = lambda: None) -> None:
        self._base: dict[str, Any] = {"id": response_id, "object": "chat.completion.chunk",
                                      "created": created, "model": ""}
        self._include_usage = include_usage
        self._show_reasoning = show_reasoning
        self._announced: set[int] = set()
        # Per choice: how many reasoning blocks were sent whole, and the text and issuer's id of
        # the open one.
        self._blocks: dict[int, tuple[int, str, str | None]] = {}
        self.usage: Usage | None = None
        # The call's content-policy verdicts, once its chain has run: the prompt's filter results
        # go on the first chunk, each choice's on its last (Azure sends the prompt's in a chunk
        # with no choices, which some clients cannot read).
        self._safety = safety

    def _chunk(self, choice: int, delta: dict[str, Any], finish: str | None = None,
               extra: dict[str, Any] | None = None, choice_extra: dict[str, Any] | None = None) -> bytes:
        chunk = dict(self._base)
        chunk["choices"] = [{"index": choice, "delta": delta, "logprobs": None, "finish_reason": finish,
                             **(choice_extra or {})}]
        if self._include_usage:
            chunk["usage"] = None
        if extra:
            chunk.update(extra)
        return orjson.dumps(chunk)

    def render(self, event: Event) -> list[bytes]:
        if isinstance(event, Start):
            self._base["model"] = event.model
            return []
        if isinstance(event, Usage):
            self.usage = event  # sent last, in a chunk of its own (OpenAI's include_usage)
            return []
        out: list[bytes] = []
        choice = event.choice if isinstance(event, (TextDelta, ReasoningDelta, ToolCallDelta, Finish)) else 0
        if choice not in self._announced:
            prompt_results = None if self._announced else prompt_filter_results(self._safety())
            self._announced.add(choice)
            out.append(self._chunk(choice, {"role": "assistant", "content": ""},
                                   extra={"prompt_filter_results": prompt_results} if prompt_results else None))
        if isinstance(event, TextDelta):
            out.append(self._chunk(choice, {"content": event.text}))
        elif isinstance(event, ReasoningDelta):
            if self._show_reasoning:
                out.extend(self._reasoning(choice, event))
        elif isinstance(event, ToolCallDelta):
            call: dict[str, Any] = {"index": event.index}
            if event.id is not None:
                call.update(tool_call_body(event.id, event.name or "", event.arguments, event.signature))
            else:
                call["function"] = {"arguments": event.arguments}
                if event.signature:
                    call["extra_content"] = {"google": {"thought_signature": event.signature}}
            out.append(self._chunk(choice, {"tool_calls": [call]}))
        elif isinstance(event, Finish):
            filtered = choice_filter_results(self._safety(), event.choice)
            out.append(self._chunk(choice, {}, event.reason,
                                   choice_extra={"content_filter_results": filtered} if filtered else None))
        return out

    def _reasoning(self, choice: int, event: ReasoningDelta) -> list[bytes]:
        """Reasoning text as ``reasoning_content`` deltas; a block that carries opaque state is
        also sent whole, once, as a ``thinking_blocks`` entry with its ``index``, so that clients
        which accumulate deltas (the openai SDK merges list entries by index) end up with each
        block's full text beside its signature."""
        out: list[bytes] = []
        sent, text, item_id = self._blocks.get(choice, (0, "", None))
        if event.block_start:
            text, item_id = "", None
        if event.id:
            item_id = event.id  # it comes with the block's start, its signature later
        if event.text:
            text += event.text
            out.append(self._chunk(choice, {"reasoning_content": event.text}))
        if event.signature or event.redacted is not None:
            block = thinking_block(text, event.signature, event.redacted, event.origin, item_id)
            block["index"] = sent
            out.append(self._chunk(choice, {"thinking_blocks": [block]}))
            sent, text, item_id = sent + 1, "", None
        self._blocks[choice] = (sent, text, item_id)
        return out

    def closing(self) -> list[bytes]:
        """What follows the last event: the usage chunk, when the client asked for it."""
        if self._include_usage and self.usage is not None:
            chunk = dict(self._base)
            chunk["choices"] = []
            chunk["usage"] = usage_body(self.usage)
            return [orjson.dumps(chunk)]
        return []


def embeddings_body(result: ChatResult, encoding: str) -> bytes:
    data = []
    for index, vector in enumerate(result.vectors or ()):
        data.append({"object": "embedding", "index": index, "embedding": encode_vector(vector, encoding)})
    usage = result.usage or Usage()
    return orjson.dumps({"object": "list", "data": data, "model": result.model,
                         "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens}})


def encode_vector(vector: list[float] | str, encoding: str) -> list[float] | str:
    """Give a vector in the encoding the client asked for, converting only when needed."""
    if encoding == "base64":
        if isinstance(vector, str):
            return vector
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    if isinstance(vector, str):
        raw = base64.b64decode(vector)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return vector

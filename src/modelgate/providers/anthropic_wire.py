"""Pure translation between the canonical schema and Anthropic's Messages API.

No I/O here: fixtures of recorded upstream bytes test these functions directly. The pitfalls
this module handles are numbered after protocols.md §7 (e.g. "§7.2" = role alternation). The
answer's values are read through ``untrusted``: counts bounded, names and ids single lines.
Wire types: anthropics/anthropic-sdk-python ``src/anthropic/types``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

import orjson

from modelgate.providers.thinking import ANTHROPIC_EFFORT_BUDGETS, thinking_budget
from modelgate.providers.untrusted import count, items, label, mapping, optional_label, string
from modelgate.schema.errors import InvalidRequest, UpstreamError
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
from modelgate.schema.request import (
    AnthropicPassthrough,
    ChatRequest,
    ImagePart,
    Message,
    Part,
    ReasoningPart,
    TextPart,
    ToolCallPart,
)

ORIGIN = "anthropic"
DEFAULT_MAX_TOKENS = 4096  # max_tokens is required; used when neither client nor catalog says
MIN_THINKING_BUDGET = 1024  # "budget_tokens: must be >= 1024 and < max_tokens"

STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    # A server-tool loop paused; the client sends the turn back to continue it (§7.6).
    "pause_turn": "stop",
    # The context window filled up mid-answer: the answer was cut short, as with max_tokens.
    "model_context_window_exceeded": "length",
}
# Error types → HTTP status, for errors that arrive inside a 200 stream (docs: api/errors).
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_NOT_ID = re.compile(r"[^a-zA-Z0-9_-]")


def anthropic_tool_id(call_id: str) -> str:
    """Map a tool call id onto Anthropic's ``^[a-zA-Z0-9_-]+$`` (§7.3).

    Deterministic, and a hash of the original keeps ids that differ only in replaced
    characters (``functions.Bash:0`` and ``functions_Bash_0``) apart.
    """
    if _TOOL_ID.fullmatch(call_id):
        return call_id
    digest = hashlib.sha256(call_id.encode()).hexdigest()[:10]
    cleaned = _NOT_ID.sub("_", call_id)[:48]
    return f"{cleaned}_{digest}" if cleaned else f"toolu_{digest}"


class _ToolIds:
    """Tool ids of one conversation: sanitised, and unique across it ("tool_use ids must be
    unique"), as upstreams without ids (Gemini's ``call_0``) repeat them turn after turn."""

    __slots__ = ("_current", "_used")

    def __init__(self) -> None:
        self._used: set[str] = set()
        self._current: dict[str, str] = {}

    def for_call(self, call_id: str) -> str:
        base = new = anthropic_tool_id(call_id)
        n = 2
        while new in self._used:
            new, n = f"{base}_{n}", n + 1
        self._used.add(new)
        self._current[call_id] = new
        return new

    def for_result(self, call_id: str) -> str:
        """The id of the latest call with this id: a tool result answers the turn before it."""
        return self._current.get(call_id) or anthropic_tool_id(call_id)


# ---------------------------------------------------------------------------------------------
# canonical request → Messages API body


def _image_block(part: ImagePart) -> dict[str, Any]:
    if part.is_data_url:
        media_type, data = part.split_data_url()
        source: dict[str, Any] = {"type": "base64", "media_type": media_type, "data": data}
    else:
        # URL sources are forwarded as such: fetching and inlining them inflates the request
        # past the 5 MB image limit (BerriAI/litellm#12899).
        source = {"type": "url", "url": part.url}
    block: dict[str, Any] = {"type": "image", "source": source}
    if part.cache_control:
        block["cache_control"] = part.cache_control
    return block


def _text_block(part: TextPart) -> dict[str, Any] | None:
    if not part.text:  # "text content blocks must be non-empty" (§7.9)
        return None
    block: dict[str, Any] = {"type": "text", "text": part.text}
    if part.cache_control:
        block["cache_control"] = part.cache_control
    return block


def _content_blocks(parts: list[Part]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            block = _text_block(part)
            if block is not None:
                blocks.append(block)
        elif isinstance(part, ImagePart):
            blocks.append(_image_block(part))
    return blocks


def _tool_input(arguments: str) -> dict[str, Any]:
    """``tool_use.input`` is an object where OpenAI carries a JSON string (§7.4)."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        # A call cut short by max_tokens carries broken JSON; Anthropic would reject the whole
        # conversation for it, so the call is replayed without arguments.
        return {}
    return value if isinstance(value, dict) else {"value": value}


def _assistant_blocks(message: Message, ids: _ToolIds) -> list[dict[str, Any]]:
    thinking: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, ReasoningPart):
            # Signatures are bound to their issuer: only Anthropic's own blocks go back (§7.13).
            if part.origin != ORIGIN:
                continue
            if part.redacted is not None:
                thinking.append({"type": "redacted_thinking", "data": part.redacted})
            elif part.signature:
                thinking.append({"type": "thinking", "thinking": part.text, "signature": part.signature})
        elif isinstance(part, ToolCallPart):
            rest.append({"type": "tool_use", "id": ids.for_call(part.id), "name": part.name,
                         "input": _tool_input(part.arguments)})
        elif isinstance(part, TextPart):
            block = _text_block(part)
            if block is not None:
                rest.append(block)
    # The turn must open with its thinking blocks, in their original order (§7.13).
    return thinking + rest


def _tool_result_block(message: Message, ids: _ToolIds) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": ids.for_result(message.tool_call_id or "")}
    for part in message.content:
        # A cache breakpoint on an empty part marks the result block itself.
        if isinstance(part, TextPart) and not part.text and part.cache_control:
            block["cache_control"] = part.cache_control
    content = _content_blocks(message.content)
    if content and all(b["type"] == "text" and "cache_control" not in b for b in content):
        block["content"] = "".join(b["text"] for b in content)
    elif content:
        block["content"] = content
    if message.is_error:
        block["is_error"] = True
    return block


def _system(messages: list[Message]) -> str | list[dict[str, Any]] | None:
    """System and developer messages, wherever they stand, hoisted into ``system`` (§7.1)."""
    parts = [p for m in messages if m.role in ("system", "developer")
             for p in m.content if isinstance(p, TextPart) and p.text]
    if not parts:
        return None
    if len(parts) == 1 and not parts[0].cache_control:
        return parts[0].text
    # Blocks keep their cache_control markers and their boundaries (langchain-aws#556).
    return [block for p in parts if (block := _text_block(p)) is not None]


def messages_to_anthropic(messages: list[Message]) -> list[dict[str, Any]]:
    """The ``messages`` array: consecutive same-role turns merged and tool results first (§7.2)."""
    ids = _ToolIds()
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role in ("system", "developer"):
            continue
        if message.role == "assistant":
            role, blocks = "assistant", _assistant_blocks(message, ids)
        elif message.role == "tool":
            role, blocks = "user", [_tool_result_block(message, ids)]
        else:
            role, blocks = "user", _content_blocks(message.content)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        blocks = turn["content"]
        if turn["role"] == "user":
            # All tool_result blocks answering a turn lead the next user message.
            turn["content"] = ([b for b in blocks if b["type"] == "tool_result"]
                               + [b for b in blocks if b["type"] != "tool_result"])
        else:
            turn["content"] = ([b for b in blocks if b["type"] in ("thinking", "redacted_thinking")]
                               + [b for b in blocks if b["type"] not in ("thinking", "redacted_thinking")])
    return turns


def _passthrough(request: ChatRequest) -> AnthropicPassthrough | None:
    """What the request carries for Anthropic upstreams only (a client that spoke Anthropic's format)."""
    passthrough = request.passthrough
    return passthrough if isinstance(passthrough, AnthropicPassthrough) else None


def _tools(request: ChatRequest, passthrough: AnthropicPassthrough | None) -> list[dict[str, Any]]:
    tools = []
    for tool in request.tools:
        schema = dict(tool.parameters or {})
        # input_schema must be an object schema; an absent one means "no arguments" (§7.4).
        schema.setdefault("type", "object")
        if schema["type"] == "object":
            schema.setdefault("properties", {})
        out: dict[str, Any] = {"name": tool.name, "input_schema": schema}
        if tool.description:
            out["description"] = tool.description
        if tool.cache_control:
            out["cache_control"] = tool.cache_control
        # OpenAI clients (the Agents SDK) set strict on every tool; Anthropic's own OpenAI
        # compatibility layer ignores it, and so does this one: only Anthropic's strict tool use
        # (the pass-through's) is sent.
        strict = passthrough.tool_strict.get(tool.name) if passthrough is not None else None
        if strict is not None:
            out["strict"] = strict
        tools.append(out)
    return tools


def _tool_choice(request: ChatRequest, thinking: bool) -> dict[str, Any] | None:
    if not request.tools:
        return None  # Anthropic accepts tool_choice only beside tools
    choice = request.tool_choice
    mode = choice.mode if choice is not None else None
    if mode == "none":
        return {"type": "none"}
    out: dict[str, Any] | None = None
    if mode == "required":
        out = {"type": "any"}
    elif mode == "named" and choice is not None:
        out = {"type": "tool", "name": choice.name}
    elif mode == "auto":
        out = {"type": "auto"}
    if thinking and out is not None and out["type"] != "auto":
        # "Thinking may not be enabled when tool_choice forces tool use" (§7.5).
        out = {"type": "auto"}
    if request.parallel_tool_calls is False:
        out = out or {"type": "auto"}
        out["disable_parallel_tool_use"] = True  # the inverse flag rides on tool_choice
    return out


def _loop_lost_its_thinking(messages: list[dict[str, Any]]) -> bool:
    """Whether the tool loop in progress has a last assistant turn without its thinking blocks.

    With thinking on, Anthropic requires that turn to open with them (§7.13). OpenAI Chat clients
    have no field to send them back in, so such a request is answered without thinking rather
    than refused.
    """
    for index in range(len(messages) - 1, -1, -1):
        turn = messages[index]
        if turn["role"] != "assistant":
            continue
        blocks = turn["content"]
        in_loop = index + 1 < len(messages) and any(b["type"] == "tool_use" for b in blocks)
        return in_loop and blocks[0]["type"] not in ("thinking", "redacted_thinking")
    return False


def _limits(
    request: ChatRequest, passthrough: AnthropicPassthrough | None, max_output_tokens: int | None,
) -> tuple[int, int]:
    """(max_tokens, thinking budget or 0) within Anthropic's rule budget < max_tokens (§7.7)."""
    # An effort given as Anthropic's output_config.effort is not a thinking setting there: it is
    # sent as such, and only a budget (thinking.budget_tokens) turns thinking on.
    native_effort = passthrough is not None and passthrough.effort is not None
    effort = None if native_effort else request.reasoning_effort
    budget = thinking_budget(effort, request.reasoning_budget, ANTHROPIC_EFFORT_BUDGETS) or 0
    if budget:
        budget = max(budget, MIN_THINKING_BUDGET)
    # max_tokens 0 is valid: "populate the prompt cache without generating". Above the model's
    # output limit it is capped there (Anthropic refuses more), as the budget stage may have set it
    # for the dearest target of a group, not for this one.
    limit = request.max_tokens if request.max_tokens is not None else max_output_tokens
    if limit is not None and max_output_tokens:
        limit = min(limit, max_output_tokens)
    if limit is None:
        # Every model that thinks writes well past the budget; leave room for the answer.
        return (budget + DEFAULT_MAX_TOKENS if budget else DEFAULT_MAX_TOKENS), budget
    if budget >= limit:
        # OpenAI's max_completion_tokens counts reasoning too, as Anthropic's max_tokens does:
        # the thinking shrinks to fit, and is left out when not even the minimum fits.
        budget = limit - 1 if limit - 1 >= MIN_THINKING_BUDGET else 0
    return limit, budget


def request_to_anthropic(
    request: ChatRequest, model: str, max_output_tokens: int | None, params: dict[str, Any],
) -> dict[str, Any]:
    """The ``POST /v1/messages`` body for ``request``.

    ``max_output_tokens`` is the model's output limit from the catalog, used as ``max_tokens``
    when the client gives none; ``params`` are the deployment's fields, merged last.
    """
    if request.n is not None and request.n > 1:
        raise InvalidRequest("Anthropic models answer one choice per request; set n to 1 or leave it out",
                             param="n", code="unsupported_value")
    messages = messages_to_anthropic(request.messages)
    if not messages:
        raise InvalidRequest("Anthropic needs at least one user message beside the system prompt",
                             param="messages", code="invalid_value")
    passthrough = _passthrough(request)
    max_tokens, budget = _limits(request, passthrough, max_output_tokens)
    explicit = passthrough.thinking if passthrough is not None else None
    derived = budget > 0 and explicit is None and not _loop_lost_its_thinking(messages)
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
    system = _system(request.messages)
    if system is not None:
        body["system"] = system
    if request.stream:
        body["stream"] = True
    if derived:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    # Thinking rules out temperature changes and a top_p below 0.95 ("Feature compatibility" in
    # the extended-thinking docs): they are dropped where thinking comes from the canonical
    # fields; a thinking object passed through whole (adaptive, display) keeps the client's own.
    if request.temperature is not None and not derived:
        body["temperature"] = min(request.temperature, 1.0)  # OpenAI's range is 0..2, Anthropic's 0..1
    if request.top_p is not None and (not derived or request.top_p >= 0.95):
        body["top_p"] = request.top_p
    stops = [s for s in request.stop if s.strip()]  # whitespace-only stops are rejected (§7.6)
    if stops:
        body["stop_sequences"] = stops
    if request.tools:
        body["tools"] = _tools(request, passthrough)
    tool_choice = _tool_choice(request, derived)
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    output_config: dict[str, Any] = {}
    fmt = request.response_format
    beta_format = passthrough is not None and "output_format" in passthrough.fields
    if fmt is not None and fmt.type == "json_schema" and fmt.schema is not None and not beta_format:
        # Native structured outputs (§7.14); json_object has no Anthropic equivalent. A client's
        # beta output_format goes as it came (with its anthropic-beta header), not beside it.
        output_config["format"] = {"type": "json_schema", "schema": fmt.schema}
    if passthrough is not None and passthrough.effort is not None:
        output_config["effort"] = passthrough.effort  # where that client put it
    if output_config:
        body["output_config"] = output_config
    if request.user:
        body["metadata"] = {"user_id": request.user}
    if passthrough is not None:
        # Fields of Anthropic's own format the canonical request has no slot for
        # (metadata, top_k, container, service_tier, cache_control, thinking, ...).
        for key, value in passthrough.fields.items():
            if key == "output_config" and isinstance(value, dict) and "output_config" in body:
                body["output_config"] = {**body["output_config"], **value}
            else:
                body[key] = value
    body.update(params)
    return body


# What count_tokens takes of a Messages body (protocols.md §3.6): no max_tokens, stream or sampling.
COUNT_TOKENS_FIELDS = frozenset({
    "model", "messages", "system", "tools", "tool_choice", "thinking", "output_config", "output_format",
    "mcp_servers", "cache_control", "context_management",
})


def count_tokens_body(request: ChatRequest, model: str, params: dict[str, Any]) -> dict[str, Any]:
    """The ``POST /v1/messages/count_tokens`` body for ``request``: its Messages body, less what
    only a generation takes."""
    body = request_to_anthropic(request, model, None, params)
    return {key: value for key, value in body.items() if key in COUNT_TOKENS_FIELDS}


def request_headers(request: ChatRequest, configured: dict[str, str]) -> dict[str, str]:
    """Per-request headers: the pass-through's, with the client's ``anthropic-beta`` list joined
    to the configured one (``configured`` has lower-case names)."""
    passthrough = _passthrough(request)
    if passthrough is None or not passthrough.headers:
        return {}
    headers = {name.lower(): value for name, value in passthrough.headers.items()}
    beta, mine = headers.get("anthropic-beta"), configured.get("anthropic-beta")
    if beta and mine:
        headers["anthropic-beta"] = f"{mine},{beta}"
    return headers


# ---------------------------------------------------------------------------------------------
# Messages API answers → canonical events


def usage_from_anthropic(usage: dict[str, Any]) -> Usage:
    """OpenAI's sense of usage (§7.12): Anthropic's input_tokens exclude cache reads and writes."""
    plain = count(usage.get("input_tokens"))
    read = count(usage.get("cache_read_input_tokens"))
    written = count(usage.get("cache_creation_input_tokens"))
    details = mapping(usage.get("output_tokens_details"))
    return Usage(input_tokens=plain + read + written, output_tokens=count(usage.get("output_tokens")),
                 cached_input_tokens=read, cache_write_tokens=written,
                 reasoning_tokens=count(details.get("thinking_tokens")))


def error_from_anthropic(body: Any) -> tuple[str, str | None]:
    """(message, Anthropic error type) of ``{"type":"error","error":{type,message}}``."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        etype = error.get("type")
        return str(error.get("message") or etype or ""), str(etype) if etype else None
    if isinstance(error, str):
        return error, None
    return str(body)[:500], None


def status_error(provider: str, status: int, body: Any, retry_after: float | None) -> UpstreamError:
    """The ``UpstreamError`` for an HTTP error answer; 529 stays 529 (retryable, as ≥ 500)."""
    message, etype = error_from_anthropic(body)
    return UpstreamError(f"provider '{provider}' answered {status}: {message}", provider=provider,
                         status=status, code=etype,
                         retry_after=retry_after)


class MessageDecoder:
    """Turns the events of one Messages stream (or one whole message) into canonical events.

    Anthropic numbers content blocks across text, thinking and tool_use; tool-call deltas are
    renumbered to the tool call's ordinal (§7.10). Usage comes in two halves: input in
    ``message_start``, cumulative counts in ``message_delta`` (§7.11).
    """

    __slots__ = ("_blocks", "_done", "_json_seen", "_provider", "_tools", "_usage")

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._blocks: dict[int, int | str] = {}  # block index → tool ordinal, or the block type
        self._json_seen: set[int] = set()
        self._tools = 0
        self._usage: dict[str, Any] = {}
        self._done = False

    @property
    def done(self) -> bool:
        """``message_stop`` arrived: the message is complete."""
        return self._done

    def decode(self, kind: str, data: dict[str, Any]) -> list[Event]:
        handler = self._handlers.get(kind)
        return handler(self, data) if handler else []  # ping and unknown future events

    def _message_start(self, data: dict[str, Any]) -> list[Event]:
        message = mapping(data.get("message"))
        self._usage.update({k: v for k, v in mapping(message.get("usage")).items() if v is not None})
        return [Start(model=label(message.get("model")), response_id=optional_label(message.get("id")))]

    def _block_start(self, data: dict[str, Any]) -> list[Event]:
        index = _block_index(data)
        block = mapping(data.get("content_block"))
        kind = block.get("type")
        if kind == "text":
            self._blocks[index] = "text"
            text = string(block.get("text"))
            return [TextDelta(text)] if text else []
        if kind == "thinking":
            self._blocks[index] = "thinking"
            # A whole message carries text and signature in the block; a stream sends them as
            # deltas after an empty start.
            return [ReasoningDelta(text=string(block.get("thinking")), signature=string(block.get("signature")) or None,
                                   origin=ORIGIN, block_start=True)]
        if kind == "redacted_thinking":
            self._blocks[index] = "redacted_thinking"
            return [ReasoningDelta(redacted=string(block.get("data")), origin=ORIGIN, block_start=True)]
        if kind == "tool_use":
            ordinal = self._blocks[index] = self._tools
            self._tools += 1
            given = block.get("input")
            arguments = orjson.dumps(given).decode() if given else ""
            if arguments:
                self._json_seen.add(index)
            return [ToolCallDelta(index=ordinal, id=optional_label(block.get("id")),
                                  name=optional_label(block.get("name")), arguments=arguments, origin=ORIGIN)]
        return []  # server tools and their results have no canonical form

    def _block_delta(self, data: dict[str, Any]) -> list[Event]:
        # Once per piece of every stream: the text delta takes the short way through the checks.
        delta = data.get("delta")
        if delta.__class__ is not dict:
            return []
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return [TextDelta(text)] if text and text.__class__ is str else []
        index = _block_index(data)
        if kind == "thinking_delta":
            return [ReasoningDelta(text=string(delta.get("thinking")), origin=ORIGIN)]
        if kind == "signature_delta":
            # The signature arrives alone, just before the block stops (§7.13).
            return [ReasoningDelta(signature=string(delta.get("signature")), origin=ORIGIN)]
        if kind == "input_json_delta":
            ordinal = self._blocks.get(index)
            fragment = string(delta.get("partial_json"))
            if not isinstance(ordinal, int) or not fragment:
                return []
            self._json_seen.add(index)
            return [ToolCallDelta(index=ordinal, arguments=fragment)]
        return []  # citations_delta and later additions

    def _block_stop(self, data: dict[str, Any]) -> list[Event]:
        index = _block_index(data)
        ordinal = self._blocks.get(index)
        if isinstance(ordinal, int) and index not in self._json_seen:
            return [ToolCallDelta(index=ordinal, arguments="{}")]  # a call without arguments
        return []

    def _message_delta(self, data: dict[str, Any]) -> list[Event]:
        delta = mapping(data.get("delta"))
        # Counts here are cumulative and replace those of message_start that they restate.
        self._usage.update({k: v for k, v in mapping(data.get("usage")).items() if v is not None})
        native = label(delta.get("stop_reason"))
        events: list[Event] = []
        if native:
            stop_sequence = delta.get("stop_sequence")
            events.append(Finish(STOP_REASONS.get(native, "stop"), native_reason=native,
                                 stop_sequence=stop_sequence if isinstance(stop_sequence, str) else None))
        events.append(usage_from_anthropic(self._usage))
        return events

    def _message_stop(self, data: dict[str, Any]) -> list[Event]:
        self._done = True
        return []

    def _error(self, data: dict[str, Any]) -> list[Event]:
        # "errors may occur after returning 200" (§3.4): an overloaded_error keeps its 529.
        message, etype = error_from_anthropic(data)
        status = ERROR_STATUS.get(etype or "", 502)
        raise UpstreamError(f"provider '{self._provider}' failed mid-stream: {message}",
                            provider=self._provider, status=status,
                            code=etype)

    _handlers: dict[str, Callable[[MessageDecoder, dict[str, Any]], list[Event]]] = {
        "message_start": _message_start,
        "content_block_start": _block_start,
        "content_block_delta": _block_delta,
        "content_block_stop": _block_stop,
        "message_delta": _message_delta,
        "message_stop": _message_stop,
        "error": _error,
    }


def _block_index(data: dict[str, Any]) -> int:
    """A content block's index, as the key its later events name it by."""
    index = data.get("index")
    return index if isinstance(index, int) else 0


def events_from_message(body: dict[str, Any], provider: str) -> list[Event]:
    """The events of a whole (non-streaming) message: replayed as the stream that would carry
    it, so both paths share one decoder."""
    decoder = MessageDecoder(provider)
    events = decoder.decode("message_start", {"message": {**body, "content": []}})
    for index, block in enumerate(items(body.get("content"))):
        events += decoder.decode("content_block_start", {"index": index, "content_block": block})
        events += decoder.decode("content_block_stop", {"index": index})
    events += decoder.decode("message_delta", {
        "delta": {"stop_reason": body.get("stop_reason"), "stop_sequence": body.get("stop_sequence")},
        "usage": {}})
    events += decoder.decode("message_stop", {})
    return events

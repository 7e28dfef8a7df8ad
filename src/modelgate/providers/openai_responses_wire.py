"""Pure translation between the canonical schema and OpenAI's Responses API (``POST /responses``),
from the gateway's side as a client of an upstream that speaks it: OpenAI, Azure OpenAI's v1 API,
xAI. A target takes this path when its config says ``api: responses``.

The gateway keeps the conversation itself, so every request is stateless upstream: ``store`` is
false and ``include`` asks for ``reasoning.encrypted_content``. A reasoning item comes back as a
canonical reasoning block (``origin`` "openai", ``id`` the item's ``rs_...``, ``signature`` its
encrypted content, ``text`` its summary) and goes out again, whole, on the next turn; reasoning of
other issuers is not sent. Wire shapes: the OpenAI spec's ``CreateResponse``, ``Response`` and
``ResponseStreamEvent`` (protocols.md §1.6). No I/O here; the answer's values are read through
``untrusted``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from modelgate.catalog.facts import ModelFacts
from modelgate.providers.openai_wire import effort_for_budget
from modelgate.providers.untrusted import (
    MAX_INDEX,
    count,
    items,
    json_text,
    label,
    mapping,
    optional_label,
    string,
)
from modelgate.schema.errors import InvalidRequest, UpstreamError
from modelgate.schema.events import Event, Finish, FinishReason, ReasoningDelta, Start, TextDelta, ToolCallDelta, Usage
from modelgate.schema.request import (
    ChatRequest,
    ImagePart,
    Message,
    OpenAIPassthrough,
    ReasoningPart,
    ResponsesPassthrough,
    TextPart,
    ToolCallPart,
)

ORIGIN = "openai"
# "max_output_tokens: integer below minimum value. Expected a value >= 16": a smaller limit (a
# client's one-token ping) is raised to it rather than refused.
MIN_OUTPUT_TOKENS = 16
MAX_CALL_ID_CHARS = 64  # function_call_output.call_id
ENCRYPTED_REASONING = "reasoning.encrypted_content"
# Fields that ask the upstream to keep or fetch state, which the gateway keeps itself, and those
# the translation sets: a pass-through does not override them.
_NOT_PASSED = frozenset({"model", "input", "instructions", "tools", "stream", "store", "previous_response_id",
                         "conversation", "background"})
# Chat completions fields of an OpenAI-format client that mean the same in a Responses body.
_CHAT_FIELDS = ("service_tier", "prompt_cache_key", "prompt_cache_retention", "safety_identifier", "top_logprobs")
# Error codes of a failed response (ResponseErrorCode) → the status that stands for them.
_ERROR_STATUS = {"rate_limit_exceeded": 429, "server_error": 502, "vector_store_timeout": 504}
_INCOMPLETE: dict[str, FinishReason] = {"max_output_tokens": "length", "content_filter": "content_filter"}


def builtin_tools(request: ChatRequest) -> list[dict[str, Any]]:
    """The built-in tools (web_search, file_search, ...) a request carries: only a target that
    speaks the Responses API can take them."""
    passthrough = request.passthrough
    return passthrough.tools if isinstance(passthrough, ResponsesPassthrough) else []


def fit_call_id(call_id: str) -> str:
    """A tool call id within the 64 characters ``function_call_output.call_id`` takes;
    deterministic, so a call and the output answering it map alike."""
    if len(call_id) <= MAX_CALL_ID_CHARS:
        return call_id
    return f"call_{hashlib.sha256(call_id.encode()).hexdigest()[:40]}"


# ---------------------------------------------------------------------------------------------
# canonical request → Responses API body


def _input_content(message: Message) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            content.append({"type": "input_text", "text": part.text})
        elif isinstance(part, ImagePart):
            content.append({"type": "input_image", "image_url": part.url, "detail": part.detail or "auto"})
    return content


def _assistant_items(message: Message) -> list[dict[str, Any]]:
    """An assistant turn as output items, in its order: reasoning, text, function calls."""
    out: list[dict[str, Any]] = []
    texts: list[str] = []

    def flush() -> None:
        if texts:
            # A string, as the API's own examples send an assistant turn back: an output_text part
            # would need the message's msg_ id, which the canonical turn does not keep.
            out.append({"type": "message", "role": "assistant", "content": "".join(texts)})
            texts.clear()

    for part in message.content:
        if isinstance(part, TextPart):
            if part.text:
                texts.append(part.text)
            continue
        flush()
        if isinstance(part, ReasoningPart):
            # Encrypted content is bound to its issuer, and an item is only taken back whole.
            if part.origin == ORIGIN and part.signature and part.id:
                out.append({"type": "reasoning", "id": part.id,
                            "summary": [{"type": "summary_text", "text": part.text}] if part.text else [],
                            "encrypted_content": part.signature})
        elif isinstance(part, ToolCallPart):
            out.append({"type": "function_call", "call_id": fit_call_id(part.id), "name": part.name,
                        "arguments": part.arguments})
    flush()
    return out


def _tool_output(message: Message) -> dict[str, Any]:
    # Text alone is a string; with images, the parts (function_call_output takes both).
    images = any(isinstance(p, ImagePart) for p in message.content)
    output: str | list[dict[str, Any]] = _input_content(message) if images else message.text()
    return {"type": "function_call_output", "call_id": fit_call_id(message.tool_call_id or ""), "output": output}


def _instructions(messages: list[Message]) -> tuple[str | None, list[Message]]:
    """The leading system and developer messages as ``instructions``, and the rest."""
    lead = 0
    while lead < len(messages) and messages[lead].role in ("system", "developer"):
        lead += 1
    texts = [m.text() for m in messages[:lead] if m.text()]
    return ("\n\n".join(texts) if texts else None), messages[lead:]


def input_items(messages: list[Message]) -> list[dict[str, Any]]:
    """The ``input`` array for ``messages`` (system messages after the first turn stay in place)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "assistant":
            out += _assistant_items(message)
        elif message.role == "tool":
            out.append(_tool_output(message))
        else:
            out.append({"type": "message", "role": message.role, "content": _input_content(message)})
    return out


def _function_tools(request: ChatRequest) -> list[dict[str, Any]]:
    tools = []
    for tool in request.tools:
        out: dict[str, Any] = {"type": "function", "name": tool.name}
        if tool.description is not None:
            out["description"] = tool.description
        out["parameters"] = tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
        # The Responses API makes function tools strict unless told otherwise; chat completions and
        # the other formats do not, so a tool that does not say is sent as not strict.
        out["strict"] = bool(tool.strict)
        tools.append(out)
    return tools


def _text_format(request: ChatRequest) -> dict[str, Any] | None:
    fmt = request.response_format
    if fmt is None:
        return None
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    out: dict[str, Any] = {"type": "json_schema", "name": fmt.name or "response",
                           "schema": fmt.schema if fmt.schema is not None else {"type": "object"}}
    if fmt.description:
        out["description"] = fmt.description
    if fmt.strict is not None:
        out["strict"] = fmt.strict
    return out


def _refuse_unsupported(request: ChatRequest) -> None:
    if request.n is not None and request.n > 1:
        raise InvalidRequest("this deployment's upstream speaks the Responses API, which answers one choice per "
                             "request; set n to 1 or leave it out", param="n", code="unsupported_value")
    if request.stop:
        raise InvalidRequest("this deployment's upstream speaks the Responses API, which has no stop sequences; "
                             "leave stop out", param="stop", code="unsupported_value")


def request_to_responses(
    request: ChatRequest, model: str, params: dict[str, Any], facts: ModelFacts | None = None,
) -> dict[str, Any]:
    """The ``POST /responses`` body for ``model``; ``facts`` (the catalog's) cap the output and
    say whether the model reasons; ``params`` (the deployment's) are merged last.

    Canonical fields the Responses API has no slot for: ``seed``, ``presence_penalty`` and
    ``frequency_penalty`` are left out (sampling hints without an equivalent); ``n`` > 1 and
    ``stop`` are refused, as the answer would not be what was asked.
    """
    _refuse_unsupported(request)
    instructions, rest = _instructions(request.messages)
    body: dict[str, Any] = {"model": model, "input": input_items(rest)}
    if instructions is not None:
        body["instructions"] = instructions
    tools = _function_tools(request) + builtin_tools(request)
    if tools:
        body["tools"] = tools
    choice = request.tool_choice
    if choice is not None:
        body["tool_choice"] = {"type": "function", "name": choice.name} if choice.mode == "named" else choice.mode
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    text_format = _text_format(request)
    text: dict[str, Any] = {"format": text_format} if text_format is not None else {}
    reasoning: dict[str, Any] = {}
    effort = request.reasoning_effort
    if (effort is None and request.reasoning_budget is not None
            and facts is not None and "reasoning" in facts.capabilities):
        effort = effort_for_budget(request.reasoning_budget)
    if effort is not None:
        reasoning["effort"] = effort
    if request.max_tokens is not None:
        cap = facts.max_output_tokens if facts else None
        limit = min(request.max_tokens, cap) if cap else request.max_tokens
        body["max_output_tokens"] = max(limit, MIN_OUTPUT_TOKENS)
    for name in ("temperature", "top_p", "metadata", "user"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    include = [ENCRYPTED_REASONING]
    _add_passthrough(request, body, text, reasoning, include)
    if reasoning.get("effort") not in (None, "none"):
        # Without a summary a reasoning item carries no text; ask for one unless the client chose.
        reasoning.setdefault("summary", "auto")
    if reasoning:
        body["reasoning"] = reasoning
    if text:
        body["text"] = text
    body["store"] = False
    body["include"] = include
    if request.stream:
        body["stream"] = True
    body.update(params)
    return body


def _add_passthrough(request: ChatRequest, body: dict[str, Any], text: dict[str, Any], reasoning: dict[str, Any],
                     include: list[str]) -> None:
    """Add what the request's pass-through says to the body being built (and to its ``text``,
    ``reasoning`` and ``include``, filled in place): a field the translation sets wins."""
    passthrough = request.passthrough
    if isinstance(passthrough, OpenAIPassthrough):
        fields = passthrough.fields
        body.update({name: fields[name] for name in _CHAT_FIELDS if name in fields})
        if "verbosity" in fields:
            text.setdefault("verbosity", fields["verbosity"])
        return
    if not isinstance(passthrough, ResponsesPassthrough):
        return
    for key, value in passthrough.fields.items():
        if key in _NOT_PASSED:
            continue
        if key == "include" and isinstance(value, list):
            include += [v for v in value if v not in include]
        elif key in ("text", "reasoning") and isinstance(value, dict):
            nested = text if key == "text" else reasoning
            for name, inner in value.items():
                nested.setdefault(name, inner)
        else:
            body.setdefault(key, value)


def request_headers(request: ChatRequest) -> dict[str, str]:
    """The client's per-request headers for the upstream, from an OpenAI-format pass-through."""
    passthrough = request.passthrough
    if isinstance(passthrough, (OpenAIPassthrough, ResponsesPassthrough)):
        return passthrough.headers
    return {}


# ---------------------------------------------------------------------------------------------
# Responses API answers → canonical events


def usage_from_responses(usage: dict[str, Any]) -> Usage:
    """``ResponseUsage``: input_tokens include the cached ones, as canonical usage does."""
    details = mapping(usage.get("input_tokens_details"))
    output = mapping(usage.get("output_tokens_details"))
    return Usage(input_tokens=count(usage.get("input_tokens")), output_tokens=count(usage.get("output_tokens")),
                 cached_input_tokens=count(details.get("cached_tokens")),
                 cache_write_tokens=count(details.get("cache_write_tokens")),
                 reasoning_tokens=count(output.get("reasoning_tokens")))


def _summary_text(item: dict[str, Any]) -> str:
    """A reasoning item's text: its summary parts, or the raw reasoning text of open models."""
    summary = [string(mapping(part).get("text")) for part in items(item.get("summary"))]
    if any(summary):
        return "\n\n".join(s for s in summary if s)
    return "".join(string(mapping(part).get("text")) for part in items(item.get("content")))


def _message_text(item: dict[str, Any]) -> str:
    pieces = []
    for part in items(item.get("content")):
        part = mapping(part)
        kind = part.get("type")
        if kind == "output_text":
            pieces.append(string(part.get("text")))
        elif kind == "refusal":
            pieces.append(string(part.get("refusal")))
    return "".join(pieces)


def failure(provider: str, error: Any, what: str) -> UpstreamError:
    """The error for a failed response or an ``error`` event: ``error`` is its error object."""
    error = mapping(error)
    code = optional_label(error.get("code"))
    message = string(error.get("message")) or code or "no message"
    return UpstreamError(f"provider '{provider}' {what}: {message}", provider=provider,
                         status=_ERROR_STATUS.get(code or "", 502), upstream_type=optional_label(error.get("type")),
                         code=code, param=optional_label(error.get("param")))


def _finish(response: dict[str, Any], calls: int) -> Finish:
    status = label(response.get("status"))
    if status == "incomplete":
        reason = label(mapping(response.get("incomplete_details")).get("reason"))
        return Finish(_INCOMPLETE.get(reason, "length"), native_reason=reason or status)
    return Finish("tool_calls" if calls else "stop", native_reason=status or None)


class ResponseDecoder:
    """Turns the events of one Responses stream (or one whole response) into canonical events.

    Function calls are numbered in order of arrival (``ToolCallDelta.index``), their ``call_id`` is
    the canonical id; each reasoning item starts a reasoning block whose signature, the item's
    encrypted content, arrives with ``response.output_item.done``.
    """

    __slots__ = ("_arguments_seen", "_calls", "_done", "_provider", "_reasoned", "_summaries")

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._calls: dict[str, int] = {}  # function_call item id → tool call ordinal
        self._arguments_seen: set[str] = set()
        self._summaries: set[tuple[str, int]] = set()  # (reasoning item id, summary index) with text
        self._reasoned: set[str] = set()  # reasoning items whose text has been passed on
        self._done = False

    @property
    def done(self) -> bool:
        """``response.completed`` or ``response.incomplete`` arrived: the answer is whole."""
        return self._done

    def decode(self, kind: str, data: dict[str, Any]) -> list[Event]:
        # Once per event of every stream: text deltas take the short way.
        if kind == "response.output_text.delta":
            delta = data.get("delta")
            return [TextDelta(delta)] if delta and delta.__class__ is str else []
        handler = self._handlers.get(kind)
        return handler(self, data) if handler else []  # in_progress, *.done, built-in tool progress

    def _created(self, data: dict[str, Any]) -> list[Event]:
        response = mapping(data.get("response"))
        return [Start(model=label(response.get("model")), response_id=optional_label(response.get("id")))]

    def _item_added(self, data: dict[str, Any]) -> list[Event]:
        item = mapping(data.get("item"))
        kind = item.get("type")
        if kind == "reasoning":
            text = _summary_text(item)
            if text:
                self._reasoned.add(string(item.get("id")))
            return [ReasoningDelta(origin=ORIGIN, block_start=True, id=optional_label(item.get("id")), text=text,
                                   signature=string(item.get("encrypted_content")) or None)]
        if kind == "function_call":
            key = string(item.get("id")) or f"#{len(self._calls)}"
            if len(self._calls) >= MAX_INDEX:
                return []
            ordinal = self._calls[key] = len(self._calls)
            arguments = string(item.get("arguments"))
            if arguments:
                self._arguments_seen.add(key)
            return [ToolCallDelta(index=ordinal, id=optional_label(item.get("call_id")),
                                  name=optional_label(item.get("name")), arguments=arguments, origin=ORIGIN)]
        return []  # messages open empty; built-in tool calls have no canonical form

    def _item_done(self, data: dict[str, Any]) -> list[Event]:
        item = mapping(data.get("item"))
        kind = item.get("type")
        if kind == "reasoning":
            # The encrypted content comes with the finished item; its text streamed before it, or
            # (where no delta carried it) comes here too.
            signature = string(item.get("encrypted_content"))
            text = "" if string(item.get("id")) in self._reasoned else _summary_text(item)
            return [ReasoningDelta(text=text, signature=signature, origin=ORIGIN)] if signature or text else []
        if kind == "function_call":
            key = string(item.get("id"))
            ordinal = self._calls.get(key)
            arguments = string(item.get("arguments"))
            if ordinal is not None and key not in self._arguments_seen and arguments:
                self._arguments_seen.add(key)
                return [ToolCallDelta(index=ordinal, arguments=arguments)]
        return []

    def _arguments_delta(self, data: dict[str, Any]) -> list[Event]:
        key = string(data.get("item_id"))
        ordinal = self._calls.get(key)
        fragment = json_text(data.get("delta"))
        if ordinal is None or not fragment:
            return []
        self._arguments_seen.add(key)
        return [ToolCallDelta(index=ordinal, arguments=fragment)]

    def _summary_delta(self, data: dict[str, Any]) -> list[Event]:
        delta = string(data.get("delta"))
        if not delta:
            return []
        item = string(data.get("item_id"))
        where = (item, count(data.get("summary_index")))
        # Summary parts are separated as the whole response joins them (_summary_text).
        lead = "\n\n" if where not in self._summaries and item in self._reasoned else ""
        self._summaries.add(where)
        self._reasoned.add(item)
        return [ReasoningDelta(text=lead + delta, origin=ORIGIN)]

    def _reasoning_text_delta(self, data: dict[str, Any]) -> list[Event]:
        delta = string(data.get("delta"))
        if not delta:
            return []
        self._reasoned.add(string(data.get("item_id")))
        return [ReasoningDelta(text=delta, origin=ORIGIN)]

    def _refusal_delta(self, data: dict[str, Any]) -> list[Event]:
        delta = string(data.get("delta"))
        return [TextDelta(delta)] if delta else []

    def _finished(self, data: dict[str, Any]) -> list[Event]:
        self._done = True
        response = mapping(data.get("response"))
        events: list[Event] = [_finish(response, len(self._calls))]
        usage = response.get("usage")
        if isinstance(usage, dict):
            events.append(usage_from_responses(usage))
        return events

    def _failed(self, data: dict[str, Any]) -> list[Event]:
        raise failure(self._provider, mapping(data.get("response")).get("error"), "failed mid-stream")

    def _error(self, data: dict[str, Any]) -> list[Event]:
        raise failure(self._provider, data, "failed mid-stream")

    _handlers: dict[str, Callable[[ResponseDecoder, dict[str, Any]], list[Event]]] = {
        "response.created": _created,
        "response.output_item.added": _item_added,
        "response.output_item.done": _item_done,
        "response.function_call_arguments.delta": _arguments_delta,
        "response.reasoning_summary_text.delta": _summary_delta,
        "response.reasoning_text.delta": _reasoning_text_delta,
        "response.refusal.delta": _refusal_delta,
        "response.completed": _finished,
        "response.incomplete": _finished,
        "response.failed": _failed,
        "error": _error,
    }


def events_from_response(body: dict[str, Any], provider: str) -> list[Event]:
    """The events of a whole (non-streaming) response, in the order a stream would carry them."""
    if body.get("status") == "failed":
        raise failure(provider, body.get("error"), "failed")
    events: list[Event] = [Start(model=label(body.get("model")), response_id=optional_label(body.get("id")))]
    calls = 0
    for item in items(body.get("output")):
        item = mapping(item)
        kind = item.get("type")
        if kind == "reasoning":
            events.append(ReasoningDelta(text=_summary_text(item), origin=ORIGIN, block_start=True,
                                         signature=string(item.get("encrypted_content")) or None,
                                         id=optional_label(item.get("id"))))
        elif kind == "message":
            text = _message_text(item)
            if text:
                events.append(TextDelta(text))
        elif kind == "function_call" and calls < MAX_INDEX:
            events.append(ToolCallDelta(index=calls, id=optional_label(item.get("call_id")),
                                        name=optional_label(item.get("name")),
                                        arguments=json_text(item.get("arguments")), origin=ORIGIN))
            calls += 1
    events.append(_finish(body, calls))
    usage = body.get("usage")
    if isinstance(usage, dict):
        events.append(usage_from_responses(usage))
    return events

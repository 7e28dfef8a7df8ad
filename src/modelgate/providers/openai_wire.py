"""Pure translation between the canonical schema and OpenAI's chat completions wire format,
from the gateway's side as a client of an OpenAI-compatible upstream.

No I/O here: fixtures of recorded upstream bytes test these functions directly. The answer's
values are read through ``untrusted``: counts and indexes bounded, names and ids single lines.
"""

from __future__ import annotations

import hashlib
from typing import Any

from modelgate.catalog.facts import ModelFacts
from modelgate.providers.openai_profiles import OpenAIProfile
from modelgate.providers.untrusted import (
    MAX_INDEX,
    count,
    index,
    items,
    json_text,
    label,
    mapping,
    optional_label,
    text,
)
from modelgate.schema.events import Event, Finish, FinishReason, ReasoningDelta, Start, TextDelta, ToolCallDelta, Usage
from modelgate.schema.request import (
    ChatRequest,
    ImagePart,
    Message,
    OpenAIPassthrough,
    ReasoningPart,
    TextPart,
)

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "model_length": "length",  # Mistral
    "insufficient_system_resource": "length",  # DeepSeek: the answer was cut short
}
_ALNUM = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def fit_tool_call_id(call_id: str, length: int | None) -> str:
    """Map a tool call id onto an API that accepts only ``length`` letters and digits.

    Deterministic, so an assistant turn's call and the tool message answering it map alike.
    """
    if length is None or (len(call_id) == length and call_id.isalnum() and call_id.isascii()):
        return call_id
    digest = int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:8], "big")
    chars = []
    for _ in range(length):
        digest, rest = divmod(digest, len(_ALNUM))
        chars.append(_ALNUM[rest])
    return "".join(chars)


def _content(message: Message) -> str | list[dict[str, Any]] | None:
    parts = [p for p in message.content if isinstance(p, (TextPart, ImagePart))]
    if message.role == "tool":  # OpenAI tool messages take text only; images move (_move_tool_images)
        parts = [p for p in parts if isinstance(p, TextPart)]
    if not parts:
        return None
    if all(isinstance(p, TextPart) for p in parts):
        texts = [p.text for p in parts if isinstance(p, TextPart)]
        if len(texts) == 1:
            return texts[0]
        if message.role in ("system", "developer", "tool"):
            # Separate blocks (Anthropic's system blocks) must not run into each other; some
            # compatible servers take only a string for these roles.
            return "\n\n".join(texts)
        return [{"type": "text", "text": text} for text in texts]
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            out.append({"type": "text", "text": part.text})
        else:
            image: dict[str, Any] = {"url": part.url}
            if part.detail:
                image["detail"] = part.detail
            out.append({"type": "image_url", "image_url": image})
    return out


def message_to_openai(message: Message, profile: OpenAIProfile) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role}
    content = _content(message)
    if message.role == "assistant":
        calls = message.tool_calls()
        out["content"] = content
        if calls:
            out["tool_calls"] = [
                {"id": fit_tool_call_id(c.id, profile.tool_call_id_length), "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for c in calls
            ]
        if profile.echo_reasoning:
            reasoning = "".join(p.text for p in message.content if isinstance(p, ReasoningPart))
            if reasoning:
                out["reasoning_content"] = reasoning
    else:
        out["content"] = content if content is not None else ""
    if message.role == "tool":
        out["tool_call_id"] = fit_tool_call_id(message.tool_call_id or "", profile.tool_call_id_length)
    if message.name:
        out["name"] = message.name
    return out


def _messages(request: ChatRequest, profile: OpenAIProfile) -> list[dict[str, Any]]:
    """The messages in OpenAI's form. Images a tool returned (Anthropic allows them in tool
    results; OpenAI's tool messages are text only) follow the run of tool messages in a user
    message of their own, so that the model still sees them."""
    out: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    for message in request.messages:
        if images and message.role != "tool":
            out.append({"role": "user", "content": images})
            images = []
        out.append(message_to_openai(message, profile))
        if message.role == "tool":
            images.extend({"type": "image_url", "image_url": {"url": p.url}}
                          for p in message.content if isinstance(p, ImagePart))
    if images:
        out.append({"role": "user", "content": images})
    return out


def effort_for_budget(budget: int) -> str | None:
    """A thinking budget in tokens (Anthropic's budget_tokens) as OpenAI's reasoning_effort."""
    if budget <= 0:
        return None
    if budget <= 2048:
        return "low"
    return "medium" if budget <= 8192 else "high"


def request_to_openai(
    request: ChatRequest, model: str, profile: OpenAIProfile, params: dict[str, Any],
    facts: ModelFacts | None = None,
) -> dict[str, Any]:
    """The chat completions body for ``model``; ``facts`` (the catalog's) cap max_tokens at what
    the model can produce and say whether it reasons."""
    body: dict[str, Any] = {"model": model, "messages": _messages(request, profile)}
    if request.stream:
        body["stream"] = True
        if profile.stream_usage:
            # Always ask for usage: metering needs it whether or not the client asked.
            body["stream_options"] = {"include_usage": True}
    if request.max_tokens is not None:
        # Clients written for one model (Claude Code asks for 32000) must not fail on another.
        cap = facts.max_output_tokens if facts else None
        body[profile.max_tokens_field] = min(request.max_tokens, cap) if cap else request.max_tokens
    if request.seed is not None:
        body[profile.seed_field] = request.seed
    for name in ("temperature", "top_p", "n", "presence_penalty", "frequency_penalty",
                 "parallel_tool_calls", "reasoning_effort", "user", "metadata"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if (request.reasoning_effort is None and request.reasoning_budget is not None
            and facts is not None and "reasoning" in facts.capabilities):
        effort = effort_for_budget(request.reasoning_budget)
        if effort:
            body["reasoning_effort"] = effort
    if request.stop:
        body["stop"] = request.stop
    if request.tools:
        body["tools"] = [_tool(t.name, t.description, t.parameters, t.strict) for t in request.tools]
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}} if choice.mode == "named" else choice.mode)
    if request.response_format is not None:
        fmt = request.response_format
        if fmt.type == "json_schema":
            schema: dict[str, Any] = {"name": fmt.name or "response"}
            if fmt.description:
                schema["description"] = fmt.description
            if fmt.schema is not None:
                schema["schema"] = fmt.schema
            if fmt.strict is not None:
                schema["strict"] = fmt.strict
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        else:
            body["response_format"] = {"type": fmt.type}
    passthrough = request.passthrough
    if isinstance(passthrough, OpenAIPassthrough):
        for key, value in passthrough.fields.items():
            body.setdefault(key, value)
    if params:
        body.update(params)
    for name in profile.unsupported:
        body.pop(name, None)
    return body


def _tool(name: str, description: str | None, parameters: dict[str, Any] | None,
          strict: bool | None) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name}
    if description is not None:
        function["description"] = description
    if parameters is not None:
        function["parameters"] = parameters
    if strict is not None:
        function["strict"] = strict
    return {"type": "function", "function": function}


def usage_from_openai(usage: dict[str, Any]) -> Usage:
    prompt_details = mapping(usage.get("prompt_tokens_details"))
    completion_details = mapping(usage.get("completion_tokens_details"))
    # DeepSeek reports cache hits in prompt_cache_hit_tokens instead of prompt_tokens_details.
    cached = count(prompt_details.get("cached_tokens")) or count(usage.get("prompt_cache_hit_tokens"))
    return Usage(
        input_tokens=count(usage.get("prompt_tokens")),
        output_tokens=count(usage.get("completion_tokens")),
        cached_input_tokens=cached,
        cache_write_tokens=count(prompt_details.get("cache_write_tokens")),
        reasoning_tokens=count(completion_details.get("reasoning_tokens")),
    )


def _native(choice: dict[str, Any]) -> str:
    return label(choice.get("finish_reason"))


def _reasoning_of(obj: dict[str, Any]) -> str | None:
    # DeepSeek, xAI and older vLLM say reasoning_content; vLLM >= 0.11 and Ollama say reasoning.
    value = obj.get("reasoning_content")
    if value is None:
        value = obj.get("reasoning")
    return value if isinstance(value, str) else None


def finish_reason(native: str) -> FinishReason:
    return FINISH_REASONS.get(native, "stop")


class ChunkDecoder:
    """Turns the chunks of one OpenAI-compatible stream into canonical events."""

    __slots__ = ("_started",)

    def __init__(self) -> None:
        self._started = False

    def decode(self, chunk: dict[str, Any]) -> list[Event]:
        # Once per chunk of every stream: the common shapes take the short way through the checks.
        events: list[Event] = []
        choices = chunk.get("choices")
        if choices.__class__ is not list:
            choices = ()
        # Azure opens with a chunk of prompt filter results whose model and id are empty: the
        # stream's Start waits for a chunk that names them or carries choices.
        if not self._started and (chunk.get("model") or choices):
            self._started = True
            events.append(Start(model=label(chunk.get("model")), response_id=optional_label(chunk.get("id"))))
        for choice in choices:
            if choice.__class__ is not dict:
                continue
            at = choice.get("index", 0)
            if at.__class__ is not int or not 0 <= at < MAX_INDEX:
                at = index(at)
            delta = choice.get("delta")
            if delta and delta.__class__ is dict:
                reasoning = _reasoning_of(delta)
                if reasoning:
                    events.append(ReasoningDelta(text=reasoning, choice=at))
                content = delta.get("content")
                if content:
                    content = content if content.__class__ is str else text(content)
                    if content:
                        events.append(TextDelta(content, at))
                refusal = delta.get("refusal")
                if refusal:
                    refusal = text(refusal)
                    if refusal:
                        events.append(TextDelta(refusal, at))
                calls = delta.get("tool_calls")
                if calls:
                    events += _tool_call_deltas(calls, at)
            native = choice.get("finish_reason")
            if native:
                native = label(native)
                if native:
                    events.append(Finish(finish_reason(native), at, native_reason=native))
        usage = chunk.get("usage")
        if usage and usage.__class__ is dict:
            events.append(usage_from_openai(usage))
        return events


def _tool_call_deltas(calls: Any, choice: int) -> list[Event]:
    events: list[Event] = []
    for call in items(calls):
        call = mapping(call)
        function = mapping(call.get("function"))
        events.append(ToolCallDelta(
            index=index(call.get("index")), id=optional_label(call.get("id")),
            name=optional_label(function.get("name")), arguments=json_text(function.get("arguments")),
            choice=choice))
    return events


def events_from_response(body: dict[str, Any]) -> list[Event]:
    """The events of a whole (non-streaming) chat completion."""
    events: list[Event] = [Start(model=label(body.get("model")), response_id=optional_label(body.get("id")))]
    for choice in items(body.get("choices")):
        choice = mapping(choice)
        at = index(choice.get("index"))
        message = mapping(choice.get("message"))
        reasoning = _reasoning_of(message)
        if reasoning:
            events.append(ReasoningDelta(text=reasoning, choice=at))
        content = text(message.get("content"))  # some servers answer with content parts
        if content:
            events.append(TextDelta(content, at))
        refusal = text(message.get("refusal"))
        if refusal:
            events.append(TextDelta(refusal, at))
        for i, call in enumerate(items(message.get("tool_calls"))[:MAX_INDEX]):
            call = mapping(call)
            function = mapping(call.get("function"))
            events.append(ToolCallDelta(index=i, id=optional_label(call.get("id")),
                                        name=optional_label(function.get("name")),
                                        arguments=json_text(function.get("arguments")), choice=at))
        native = _native(choice)
        if native:
            events.append(Finish(finish_reason(native), at, native_reason=native))
    usage = body.get("usage")
    if usage and isinstance(usage, dict):
        events.append(usage_from_openai(usage))
    return events


def error_from_openai(body: Any) -> tuple[str, str | None, str | None, str | None]:
    """(message, type, code, param) from the error bodies OpenAI-compatible servers send.

    OpenAI wraps in {"error": {...}}; Mistral and older vLLM send the object flat; vLLM's code is
    an int; Gemini's compatibility endpoint wraps it in a list; Ollama sends {"error": "text"}.
    """
    if isinstance(body, list) and body:
        body = body[0]
    if not isinstance(body, dict):
        return (str(body)[:500], None, None, None)
    error = body.get("error", body)
    if isinstance(error, str):
        return (error, None, None, None)
    if not isinstance(error, dict):
        return (str(error)[:500], None, None, None)
    message = error.get("message") or error.get("detail") or ""
    code = error.get("code")
    etype = error.get("type") or error.get("status")
    return (
        str(message),
        str(etype) if etype is not None else None,
        str(code) if code is not None else None,
        str(error["param"]) if error.get("param") is not None else None,
    )

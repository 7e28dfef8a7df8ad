"""Pure translation between the canonical schema and Gemini's native ``generateContent`` API.

No I/O here. Wire shapes: googleapis/python-genai (``types.py``, and ``models.py``
``_GenerateContentParameters_to_mldev`` for the camelCase names); protocols.md §6.1. The answer's
values are read through ``untrusted``: counts and indexes bounded, names and ids single lines.
"""

from __future__ import annotations

import mimetypes
import re
from typing import Any

import orjson

from modelgate.providers.thinking import GEMINI_EFFORT_BUDGETS, thinking_budget
from modelgate.providers.untrusted import count, index, items, label, mapping, optional_label, string
from modelgate.schema.errors import InvalidRequest, UpstreamError, UpstreamMalformed
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
    ChatRequest,
    ImagePart,
    Message,
    ReasoningPart,
    TextPart,
    ToolCallPart,
)

ORIGIN = "gemini"

FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}
# Google's stand-in for the thought signature of a function call that Gemini did not make (history
# from another model): the first call of each step of the current turn needs a signature, or Gemini 3
# answers 400 (ai.google.dev/gemini-api/docs/thought-signatures, FAQ). It is sent only where the turn
# shows another issuer's state: a call that merely lost its signature must still be refused, as the
# stand-in would hide the loss and Gemini would carry on without its reasoning.
FOREIGN_CALL_SIGNATURE = "skip_thought_signature_validator"
# Older models give function calls no id; the gateway numbers them per response so that the
# tool messages answering them can be matched (and recognises its own ids on the way back).
_GENERATED_ID = re.compile(r"call_\d+")


def generated_call_id(ordinal: int) -> str:
    return f"call_{ordinal}"


# ---------------------------------------------------------------------------------------------
# canonical request → generateContent body


def _image_part(part: ImagePart) -> dict[str, Any]:
    if part.is_data_url:
        media_type, data = part.split_data_url()
        return {"inlineData": {"mimeType": media_type, "data": data}}
    # fileData needs a MIME type; Gemini reads http(s) URLs of the common image types.
    guessed = mimetypes.guess_type(part.url.split("?", 1)[0])[0]
    return {"fileData": {"mimeType": guessed or "image/jpeg", "fileUri": part.url}}


def _arguments(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}  # a call cut short by max tokens: replayed without its broken arguments
    return value if isinstance(value, dict) else {"value": value}


def _function_response(message: Message, name: str, call_id: str | None) -> dict[str, Any]:
    text = message.text()
    try:
        value: Any = orjson.loads(text) if text.strip() else None
    except orjson.JSONDecodeError:
        value = None
    # "Use 'output' key to specify function output and 'error' key to specify error details;
    # if neither is given the whole response is the output" (types.FunctionResponse.response).
    given = value if value is not None else text
    if message.is_error:
        response: dict[str, Any] = {"error": given}
    elif isinstance(value, dict):
        response = value
    else:
        response = {"output": given}
    out: dict[str, Any] = {"name": name, "response": response}
    if call_id is not None:
        out["id"] = call_id
    return {"functionResponse": out}


def _model_parts(message: Message, current_turn: bool) -> list[dict[str, Any]]:
    """A model turn's parts. In the current turn (since the last user message) the message's
    first call, one step's, gets ``FOREIGN_CALL_SIGNATURE`` where another provider made the turn."""
    parts: list[dict[str, Any]] = []
    signatures: list[str] = []
    first_call = True
    foreign = current_turn and any(isinstance(p, (ReasoningPart, ToolCallPart)) and p.origin not in (None, ORIGIN)
                                   for p in message.content)
    for part in message.content:
        if isinstance(part, ReasoningPart):
            # Thought summaries need not go back; their signatures must, and only to Gemini.
            if part.origin == ORIGIN and part.signature:
                signatures.append(part.signature)
        elif isinstance(part, TextPart):
            if part.text:
                parts.append({"text": part.text})
        elif isinstance(part, ImagePart):
            parts.append(_image_part(part))
        elif isinstance(part, ToolCallPart):
            call: dict[str, Any] = {"name": part.name, "args": _arguments(part.arguments)}
            if part.origin == ORIGIN and not _GENERATED_ID.fullmatch(part.id):
                call["id"] = part.id
            out: dict[str, Any] = {"functionCall": call}
            if part.origin == ORIGIN and part.signature:
                out["thoughtSignature"] = part.signature
            elif first_call and foreign:
                out["thoughtSignature"] = FOREIGN_CALL_SIGNATURE
            first_call = False
            parts.append(out)
    # A signature that came on a text part goes back on one: Gemini puts it on the last part of
    # an answer without function calls (ai.google.dev/gemini-api/docs/thought-signatures).
    for signature in reversed(signatures):
        target = next((p for p in reversed(parts) if "text" in p and "thoughtSignature" not in p), None)
        if target is None:
            parts.append({"text": "", "thoughtSignature": signature})
        else:
            target["thoughtSignature"] = signature
    return parts


def contents_to_gemini(messages: list[Message]) -> list[dict[str, Any]]:
    """``contents``: user and model turns, merged where roles repeat, tool results as
    ``functionResponse`` parts named after the call they answer."""
    calls: dict[str, ToolCallPart] = {}
    contents: list[dict[str, Any]] = []
    turn_start = max((i for i, m in enumerate(messages) if m.role == "user"), default=0)
    for i, message in enumerate(messages):
        if message.role in ("system", "developer"):
            continue
        if message.role == "assistant":
            role, parts = "model", _model_parts(message, current_turn=i > turn_start)
            calls.update((c.id, c) for c in message.tool_calls())
        elif message.role == "tool":
            call = calls.get(message.tool_call_id or "")
            name = call.name if call else message.name or message.tool_call_id or "tool"
            call_id = (call.id if call and call.origin == ORIGIN and not _GENERATED_ID.fullmatch(call.id)
                       else None)
            role, parts = "user", [_function_response(message, name, call_id)]
        else:
            role, parts = "user", []
            for part in message.content:
                if isinstance(part, TextPart) and part.text:
                    parts.append({"text": part.text})
                elif isinstance(part, ImagePart):
                    parts.append(_image_part(part))
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    for content in contents:
        if content["role"] == "user":  # the answers to a model turn's calls lead the next turn
            parts = content["parts"]
            content["parts"] = ([p for p in parts if "functionResponse" in p]
                                + [p for p in parts if "functionResponse" not in p])
    return contents


def least_thinking(model: str) -> dict[str, Any]:
    """The ``thinkingConfig`` for no thinking. Only Gemini 2.5 Flash and Flash-Lite can stop
    (``thinkingBudget: 0``); 2.5 Pro thinks at least 128 tokens, and Gemini 3 and later take a
    ``thinkingLevel``, at least "low" on Pro and "minimal" on the others
    (ai.google.dev/gemini-api/docs/thinking). Their function calls still carry signatures."""
    name = model.rsplit("/", 1)[-1]
    if name.startswith("gemini-2.5-pro"):
        return {"thinkingBudget": 128}
    generation = re.match(r"gemini-(\d+)", name)
    if generation is not None and int(generation.group(1)) >= 3:
        return {"thinkingLevel": "low" if "-pro" in name else "minimal"}
    return {"thinkingBudget": 0}


def _generation_config(request: ChatRequest, model: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for field, name in (("max_tokens", "maxOutputTokens"), ("temperature", "temperature"),
                        ("top_p", "topP"), ("n", "candidateCount"), ("seed", "seed"),
                        ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty")):
        value = getattr(request, field)
        if value is not None:
            config[name] = value
    if request.stop:
        config["stopSequences"] = request.stop
    fmt = request.response_format
    if fmt is not None and fmt.type in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        if fmt.type == "json_schema" and fmt.schema is not None:
            config["responseJsonSchema"] = fmt.schema
    budget = thinking_budget(request.reasoning_effort, request.reasoning_budget, GEMINI_EFFORT_BUDGETS)
    if budget == 0:
        config["thinkingConfig"] = least_thinking(model)
    elif budget is not None:
        config["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": True}
    return config


def _tool_config(request: ChatRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    if choice is None or not request.tools:
        return None
    if choice.mode == "named":
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [choice.name]}}
    mode = {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice.mode]
    return {"functionCallingConfig": {"mode": mode}}


def request_to_gemini(request: ChatRequest, params: dict[str, Any], model: str = "") -> dict[str, Any]:
    """The ``generateContent`` body for ``request``; the deployment's ``params`` are merged in
    last, one level deep (``generationConfig: {topK: 40}`` adds to the generated config)."""
    contents = contents_to_gemini(request.messages)
    if not contents:
        raise InvalidRequest("Gemini needs at least one user message beside the system instruction",
                             param="messages", code="invalid_value")
    body: dict[str, Any] = {"contents": contents}
    system = [{"text": p.text} for m in request.messages if m.role in ("system", "developer")
              for p in m.content if isinstance(p, TextPart) and p.text]
    if system:
        body["systemInstruction"] = {"parts": system}
    if request.tools:
        declarations = []
        for tool in request.tools:
            declaration: dict[str, Any] = {"name": tool.name}
            if tool.description:
                declaration["description"] = tool.description
            if tool.parameters:
                # Full JSON Schema; ``parameters`` takes only Google's OpenAPI subset.
                declaration["parametersJsonSchema"] = tool.parameters
            declarations.append(declaration)
        body["tools"] = [{"functionDeclarations": declarations}]
    tool_config = _tool_config(request)
    if tool_config is not None:
        body["toolConfig"] = tool_config
    config = _generation_config(request, model)
    if config:
        body["generationConfig"] = config
    for key, value in params.items():
        current = body.get(key)
        body[key] = {**current, **value} if isinstance(current, dict) and isinstance(value, dict) else value
    return body


# ---------------------------------------------------------------------------------------------
# GenerateContentResponse (one body, or each chunk of a stream) → canonical events


def usage_from_gemini(meta: dict[str, Any]) -> Usage:
    """Thoughts are counted apart from candidates; OpenAI counts them in the output."""
    thoughts = count(meta.get("thoughtsTokenCount"))
    prompt = count(meta.get("promptTokenCount")) + count(meta.get("toolUsePromptTokenCount"))
    return Usage(input_tokens=prompt, output_tokens=count(meta.get("candidatesTokenCount")) + thoughts,
                 cached_input_tokens=count(meta.get("cachedContentTokenCount")), reasoning_tokens=thoughts)


def error_from_gemini(body: Any) -> tuple[str, str | None, int | None]:
    """(message, status such as "RESOURCE_EXHAUSTED", numeric code) of a Gemini error body,
    ``{"error": {...}}`` or the same wrapped in a list."""
    if isinstance(body, list) and body:
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return str(body)[:500], None, None
    code = error.get("code")
    status = error.get("status")
    return (str(error.get("message") or status or ""), str(status) if status else None,
            code if isinstance(code, int) else None)


def status_error(provider: str, status: int, body: Any, retry_after: float | None) -> UpstreamError:
    message, gstatus, _ = error_from_gemini(body)
    return UpstreamError(f"provider '{provider}' answered {status}: {message}", provider=provider,
                         status=status, code=gstatus,
                         retry_after=retry_after)


class ResponseDecoder:
    """Turns the chunks of one ``streamGenerateContent`` stream (or one whole response) into
    canonical events. Usage is cumulative per chunk; the last one counts, yielded by ``end``."""

    __slots__ = ("_calls", "_finished", "_in_thought", "_provider", "_started", "_usage")

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._started = False
        self._calls: dict[int, int] = {}  # candidate → function calls so far
        self._in_thought: set[int] = set()  # candidates whose last part was a thought
        self._finished: set[int] = set()
        self._usage: dict[str, Any] | None = None

    def decode(self, chunk: dict[str, Any]) -> list[Event]:
        if "error" in chunk:
            message, gstatus, code = error_from_gemini(chunk)
            status = code if code is not None and 400 <= code <= 599 else 502
            raise UpstreamError(f"provider '{self._provider}' failed mid-stream: {message}",
                                provider=self._provider, status=status,
                                code=gstatus)
        events: list[Event] = []
        if not self._started:
            self._started = True
            events.append(Start(model=label(chunk.get("modelVersion")),
                                response_id=optional_label(chunk.get("responseId"))))
        candidates = items(chunk.get("candidates"))
        for candidate in candidates:
            candidate = mapping(candidate)
            choice = index(candidate.get("index"))
            for part in items(mapping(candidate.get("content")).get("parts")):
                self._part(mapping(part), choice, events)
            native = label(candidate.get("finishReason"))
            if native:
                reason = FINISH_REASONS.get(native, "stop")
                if reason == "stop" and self._calls.get(choice):
                    reason = "tool_calls"
                events.append(Finish(reason, choice, native_reason=native))
                self._finished.add(choice)
        block = label(mapping(chunk.get("promptFeedback")).get("blockReason"))
        if block and not candidates:  # the prompt itself was refused
            events.append(Finish("content_filter", 0, native_reason=block))
            self._finished.add(0)
        usage = chunk.get("usageMetadata")
        if usage and isinstance(usage, dict):
            self._usage = usage
        return events

    def _part(self, part: dict[str, Any], choice: int, events: list[Event]) -> None:
        signature = string(part.get("thoughtSignature")) or None
        call = part.get("functionCall")
        if call is not None:
            call = mapping(call)
            self._in_thought.discard(choice)
            ordinal = self._calls.get(choice, 0)
            self._calls[choice] = ordinal + 1
            events.append(ToolCallDelta(
                index=ordinal, id=optional_label(call.get("id")) or generated_call_id(ordinal),
                name=optional_label(call.get("name")), arguments=orjson.dumps(call.get("args") or {}).decode(),
                signature=signature, origin=ORIGIN, choice=choice))
            return
        text = string(part.get("text"))
        if part.get("thought"):
            events.append(ReasoningDelta(text=text or "", signature=signature, origin=ORIGIN,
                                         block_start=choice not in self._in_thought, choice=choice))
            # A signature closes its thought: a later one starts a block of its own, so that
            # signatures are never joined.
            if signature:
                self._in_thought.discard(choice)
            else:
                self._in_thought.add(choice)
            return
        self._in_thought.discard(choice)
        if signature:  # a signature on an answer part rides in a reasoning block of its own
            events.append(ReasoningDelta(signature=signature, origin=ORIGIN, block_start=True, choice=choice))
        if text:
            events.append(TextDelta(text, choice))

    def end(self) -> list[Event]:
        """The closing events; raises if the upstream never said it had finished."""
        if not self._finished:
            raise UpstreamMalformed(f"provider '{self._provider}' ended the stream before a finishReason",
                                    provider=self._provider, code="upstream_stream_cut")
        return [usage_from_gemini(self._usage)] if self._usage else []


def events_from_response(body: dict[str, Any], provider: str) -> list[Event]:
    """The events of a whole (non-streaming) response: one chunk, decoded as a stream's are."""
    decoder = ResponseDecoder(provider)
    return decoder.decode(body) + decoder.end()

"""Gemini ``generateContent``: request → :class:`Prompt`, thought-signature checks, reply → response chunks.

Pure translation (the signer and the set of signed calls are passed in). Wire names are camelCase as the REST API
and the google-genai SDK use them (protocols.md §6.1).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from modelgate.simulator.replies import Finish, Prompt, Reply, ToolMode, ToolSpec, fingerprint
from modelgate.simulator.state import BoundedSet, Signer
from modelgate.simulator.surface import SimError
from modelgate.simulator.tokens import canonical_json, message_tokens, split_words, tool_tokens

SIGNATURE = "gemini-thought-signature"
_DOCS = "https://ai.google.dev/gemini-api/docs/thought-signatures"
# What Google documents for a function call that Gemini did not make (history from another model, an
# injected call): the API takes it in place of a thought signature and skips the check.
SKIP_VALIDATOR = "skip_thought_signature_validator"
_FINISH: dict[Finish, str] = {
    "stop": "STOP",
    "stop_sequence": "STOP",
    "length": "MAX_TOKENS",
    "tool_calls": "STOP",
    "safety": "SAFETY",
}
_MODES: dict[str, ToolMode] = {"NONE": "none", "ANY": "required", "AUTO": "auto", "VALIDATED": "auto"}
_HARM_CATEGORIES = (
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
)


def get_field(obj: Any, name: str) -> Any:
    """``obj[name]`` for a camelCase wire name, also accepting snake_case: the API parses both, and the SDK
    sends some nested configs (e.g. ``thinkingConfig``) in snake_case."""
    if not isinstance(obj, dict):
        return None
    if name in obj:
        return obj[name]
    return obj.get(re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower())


def _parts(content: Any) -> list[dict[str, Any]]:
    parts = get_field(content, "parts")
    return [p for p in parts or [] if isinstance(p, dict)]


def _part_text(part: dict[str, Any]) -> str:
    if part.get("thought"):
        return ""  # earlier thoughts echoed back are not prompt text
    if "text" in part:
        return str(part["text"])
    call = get_field(part, "functionCall")
    if isinstance(call, dict):
        return f"{call.get('name', '')} {canonical_json(call.get('args') or {})}"
    response = get_field(part, "functionResponse")
    if isinstance(response, dict):
        return _response_text(response)
    return ""


def _response_text(function_response: dict[str, Any]) -> str:
    response = function_response.get("response")
    if isinstance(response, dict) and len(response) == 1:
        (only,) = response.values()
        if isinstance(only, str):
            return only
    return canonical_json(response)


def call_key(model: str, call: dict[str, Any]) -> str:
    return f"{model}\0{call.get('name', '')}\0{canonical_json(call.get('args') or {})}"


def signature_for(signer: Signer, key: str) -> str:
    return base64.urlsafe_b64encode(signer.digest(SIGNATURE, key)).decode()


def _signature_valid(signer: Signer, key: str, signature: Any) -> bool:
    if not isinstance(signature, str):
        return False
    try:
        raw = base64.urlsafe_b64decode(signature.replace("+", "-").replace("/", "_") + "=" * (-len(signature) % 4))
    except (binascii.Error, ValueError):
        return False
    return raw == signer.digest(SIGNATURE, key)


def _unsigned(key: str) -> str:
    """How the calls the simulator made without a signature are remembered beside the signed ones."""
    return f"unsigned:{key}"


def check_contents(
    body: dict[str, Any], model: str, signer: Signer, signed: BoundedSet, require_signatures: bool = False
) -> list[dict[str, Any]]:
    """Validate ``contents`` and the thought signatures of the current turn's function calls: the first
    call of each step needs one where the simulator signed it, and with ``require_signatures`` (Gemini 3,
    which the simulator's reasoning models stand for) whoever made it, unless the simulator made it
    while not thinking."""
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise SimError(400, "* GenerateContentRequest.contents: contents is not specified\n")
    for index, content in enumerate(contents):
        if not isinstance(content, dict) or content.get("role", "user") not in ("user", "model", "function"):
            raise SimError(400, f"Please use a valid role: user, model. (contents[{index}])")
        if not _parts(content):
            raise SimError(
                400, f"* GenerateContentRequest.contents[{index}].parts: contents.parts must not be empty.\n"
            )
    # The "current turn" starts after the last user content that carries text (not just function responses);
    # only its function calls must carry their signatures back.
    start = 0
    for index, content in enumerate(contents):
        if content.get("role", "user") == "user" and any("text" in p for p in _parts(content)):
            start = index
    for index in range(start, len(contents)):
        content = contents[index]
        if content.get("role") != "model":
            continue
        calls = [
            (position, p)
            for position, p in enumerate(_parts(content))
            if isinstance(get_field(p, "functionCall"), dict)
        ]
        for order, (position, part) in enumerate(calls):
            call = get_field(part, "functionCall")
            key = call_key(model, call)
            signature = get_field(part, "thoughtSignature")
            if signature == SKIP_VALIDATOR:
                continue
            if signature is not None and not _signature_valid(signer, key, signature):
                raise SimError(
                    400,
                    f"Thought signature is not valid (contents[{index}].parts[{position}]). "
                    f"Please refer to {_DOCS} for more details.",
                )
            # A call the model made itself while not thinking had no signature to carry (Gemini
            # 2.5 with thinkingBudget 0), so it needs none back.
            strict = require_signatures and _unsigned(key) not in signed
            if order == 0 and signature is None and (key in signed or strict):
                raise SimError(
                    400,
                    "Function call is missing a thought_signature in functionCall parts. This is required for "
                    "tools to work correctly, and missing thought_signature may lead to degraded model "
                    f"performance. Additional data, function call `default_api:{call.get('name')}`"
                    f" , position {index + 1}. Please refer to {_DOCS} for more details.",
                )
    return contents


def _declarations(body: dict[str, Any]) -> list[ToolSpec]:
    specs = []
    for tool in get_field(body, "tools") or []:
        for declaration in get_field(tool, "functionDeclarations") or []:
            schema = get_field(declaration, "parametersJsonSchema") or get_field(declaration, "parameters") or {}
            specs.append(
                ToolSpec(
                    name=str(declaration.get("name", "")),
                    description=str(declaration.get("description") or ""),
                    schema=schema,
                )
            )
    return specs


def prompt_tokens(body: dict[str, Any], contents: list[dict[str, Any]]) -> int:
    total = sum(message_tokens(" ".join(_part_text(p) for p in _parts(c))) for c in contents)
    system = get_field(body, "systemInstruction")
    if isinstance(system, dict) and _parts(system):
        total += message_tokens(" ".join(_part_text(p) for p in _parts(system)))
    return total + sum(tool_tokens(t.name, t.description, t.schema) for t in _declarations(body))


@dataclass(frozen=True)
class Thinking:
    """Whether the model thinks, and whether the caller asked to see thought summaries."""

    enabled: bool
    visible: bool


def thinking_of(body: dict[str, Any], reasoning_model: bool) -> Thinking:
    config = get_field(get_field(body, "generationConfig"), "thinkingConfig") or {}
    visible = bool(get_field(config, "includeThoughts"))
    level = get_field(config, "thinkingLevel") is not None
    enabled = (reasoning_model or visible or level) and get_field(config, "thinkingBudget") != 0
    return Thinking(enabled=enabled, visible=visible and enabled)


def to_prompt(
    body: dict[str, Any], contents: list[dict[str, Any]], model: str, thinking: Thinking, tokens: int, safety: bool
) -> Prompt:
    generation = get_field(body, "generationConfig") or {}
    calling = get_field(get_field(body, "toolConfig"), "functionCallingConfig") or {}
    mode = _MODES.get(str(get_field(calling, "mode")), "auto")
    allowed = get_field(calling, "allowedFunctionNames") or []
    last = contents[-1]
    responses = [get_field(p, "functionResponse") for p in _parts(last)]
    results = [_response_text(r) for r in responses if isinstance(r, dict)]
    user_text = ""
    for content in reversed(contents):
        texts = [str(p["text"]) for p in _parts(content) if "text" in p and not p.get("thought")]
        if content.get("role", "user") == "user" and texts:
            user_text = " ".join(texts)
            break
    schema = get_field(generation, "responseJsonSchema") or get_field(generation, "responseSchema")
    is_json = get_field(generation, "responseMimeType") == "application/json"
    max_tokens = get_field(generation, "maxOutputTokens")
    return Prompt(
        model=model,
        last_user_text=user_text,
        fingerprint=fingerprint(body),
        prompt_tokens=tokens,
        tool_results=results,
        tools=_declarations(body),
        tool_mode=mode,
        forced_tool=allowed[0] if mode == "required" and len(allowed) == 1 else None,
        max_tokens=int(max_tokens) if max_tokens is not None else None,
        stop=[s for s in get_field(generation, "stopSequences") or [] if isinstance(s, str)],
        json_schema=schema if is_json and isinstance(schema, dict) else None,
        json_mode=is_json and not isinstance(schema, dict),
        reasoning=thinking.enabled,
        safety=safety,
    )


@dataclass
class Rendered:
    """Shared context for rendering one response."""

    model: str
    prompt: Prompt
    thinking: Thinking
    response_id: str = field(default_factory=lambda: uuid.uuid4().hex[:22])


def usage_metadata(context: Rendered, replies: list[Reply]) -> dict[str, Any]:
    thoughts = sum(r.reasoning_tokens for r in replies)
    candidates = sum(r.completion_tokens for r in replies) - thoughts
    prompt = context.prompt.prompt_tokens
    usage: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def reply_parts(context: Rendered, reply: Reply, signer: Signer, signed: BoundedSet) -> list[dict[str, Any]]:
    """The candidate's parts: thought summary (if asked for), text, function calls (first one signed)."""
    parts: list[dict[str, Any]] = []
    if reply.reasoning and context.thinking.visible:
        parts.append({"text": reply.reasoning, "thought": True})
    if reply.text:
        parts.append({"text": reply.text})
    for order, call in enumerate(reply.tool_calls):
        part: dict[str, Any] = {"functionCall": {"name": call.name, "args": call.arguments}}
        if order == 0:
            key = call_key(context.model, part["functionCall"])
            if context.thinking.enabled:
                part["thoughtSignature"] = signature_for(signer, key)
                signed.add(key)
            else:
                signed.add(_unsigned(key))
        parts.append(part)
    return parts


def _candidate(index: int, parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": index}
    if finish is not None:
        candidate["finishReason"] = finish
    if finish == "SAFETY":
        candidate.pop("content")
        candidate["safetyRatings"] = [
            {
                "category": c,
                "probability": "HIGH" if c == "HARM_CATEGORY_DANGEROUS_CONTENT" else "NEGLIGIBLE",
                **({"blocked": True} if c == "HARM_CATEGORY_DANGEROUS_CONTENT" else {}),
            }
            for c in _HARM_CATEGORIES
        ]
    return candidate


def render_response(context: Rendered, replies: list[Reply], signer: Signer, signed: BoundedSet) -> dict[str, Any]:
    return {
        "candidates": [
            _candidate(i, reply_parts(context, r, signer, signed), _FINISH[r.finish]) for i, r in enumerate(replies)
        ],
        "usageMetadata": usage_metadata(context, replies),
        "modelVersion": context.model,
        "responseId": context.response_id,
    }


def render_chunks(context: Rendered, reply: Reply, signer: Signer, signed: BoundedSet) -> list[dict[str, Any]]:
    """Stream chunks: one per word of thoughts and text, function calls whole, finish + usage on the last."""
    pieces: list[list[dict[str, Any]]] = []
    for part in reply_parts(context, reply, signer, signed):
        if "text" in part:
            pieces.extend([{**part, "text": word}] for word in split_words(part["text"]))
        else:
            pieces.append([part])
    if not pieces:
        pieces.append([])
    chunks = []
    prompt = context.prompt.prompt_tokens
    for position, parts in enumerate(pieces):
        final = position == len(pieces) - 1
        usage = usage_metadata(context, [reply]) if final else {"promptTokenCount": prompt, "totalTokenCount": prompt}
        chunks.append(
            {
                "candidates": [_candidate(0, parts, _FINISH[reply.finish] if final else None)],
                "usageMetadata": usage,
                "modelVersion": context.model,
                "responseId": context.response_id,
            }
        )
    return chunks

"""What a request is cached by: its canonical form, and the rules on which requests are cached.

Two requests share an answer when they ask the same thing of the same deployment: the same
messages, tools and parameters, whatever the wire format they came in (a Chat Completions request
and a Messages request that say the same share it), the order of their JSON fields, the values
they leave at the API's default (``temperature`` absent or 1, ``n`` absent or 1, ...), or the
spacing at the ends of a message's text. What only changes how the answer is delivered is left
out: ``stream``, ``include_usage``, ``user``, ``metadata``, the model name (the deployment is in
the key).

Which requests are cached (``cacheable``):

- Deterministic ones: ``temperature`` 0 (the request's or the deployment's ``params``) or a
  ``seed``. An absent temperature is the API's default, 1: a sampled answer, not cached, unless
  the deployment says ``deterministic_only: false``.
- Tool results in the history are part of the key like any message: a different result is a
  different request. Answers that call tools are cached and replayed as they came.
- Images given inline (``data:`` URLs) are in the key; an image by URL is not cached, as what
  the URL serves may change while the URL stays the same.
- ``n`` > 1: cached whole (every choice), under the same rule of determinism.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from modelgate.config.cache import DeploymentCache
from modelgate.schema.request import (
    ChatRequest,
    ImagePart,
    Message,
    ReasoningPart,
    TextPart,
    ToolCallPart,
)

KEY_BYTES = 16  # 128 bits of BLAKE2b


def why_not_cached(request: ChatRequest, settings: DeploymentCache, params: dict[str, Any]) -> str | None:
    """Why ``request`` is not looked up nor kept (said in the log at debug level), or None when it is."""
    if settings.deterministic_only:
        temperature = params.get("temperature", request.temperature)
        if request.seed is None and params.get("seed") is None and temperature != 0:
            return "not deterministic: set temperature 0 or a seed"
    for message in request.messages:
        for part in message.content:
            if isinstance(part, ImagePart) and not part.is_data_url:
                return "an image by URL"
    return None


def canonical(request: ChatRequest, *, leave_out_last_user_text: bool = False) -> bytes:
    """The request as the cache compares it: JSON with sorted keys of what can change the answer,
    defaults written out. ``leave_out_last_user_text``: the last message's text left out (the
    semantic cache compares it by meaning instead)."""
    messages = [_message(m) for m in request.messages]
    if leave_out_last_user_text and messages:
        messages[-1] = {**messages[-1], "content": [p for p in messages[-1]["content"] if p[0] != "text"]}
    shape: dict[str, Any] = {
        "messages": messages,
        "max_tokens": request.max_tokens,
        "temperature": 1.0 if request.temperature is None else float(request.temperature),
        "top_p": 1.0 if request.top_p is None else float(request.top_p),
        "stop": sorted(set(request.stop)),
        "seed": request.seed,
        "n": request.n or 1,
        "presence_penalty": float(request.presence_penalty or 0),
        "frequency_penalty": float(request.frequency_penalty or 0),
        "tools": [[t.name, t.description, t.parameters, bool(t.strict)] for t in request.tools],
        "tool_choice": None if request.tool_choice is None or (request.tool_choice.mode == "auto" and request.tools)
        else [request.tool_choice.mode, request.tool_choice.name],
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "response_format": None if request.response_format is None or request.response_format.type == "text" else
        [request.response_format.type, request.response_format.name, request.response_format.schema,
         bool(request.response_format.strict)],
        "reasoning": [request.reasoning_effort, request.reasoning_budget],
        "passthrough": _passthrough(request),
    }
    return orjson.dumps(shape, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def digest(*pieces: bytes) -> str:
    """A fixed-size name of ``pieces`` (hex)."""
    hashed = hashlib.blake2b(digest_size=KEY_BYTES)
    for piece in pieces:
        hashed.update(len(piece).to_bytes(8, "little"))
        hashed.update(piece)
    return hashed.hexdigest()


def last_user_text(request: ChatRequest) -> str | None:
    """The text of the last message where it is the user's (what the semantic cache compares by
    meaning); None where the conversation ends otherwise (a tool result) or the turn has no text."""
    if not request.messages or request.messages[-1].role != "user":
        return None
    text = request.messages[-1].text().strip()
    return text or None


def _passthrough(request: ChatRequest) -> list[Any] | None:
    """What only an upstream of the client's own format receives, where the request carries any:
    an empty one says nothing, so the same question in two formats is one request."""
    passthrough = request.passthrough
    if passthrough is None:
        return None
    said = [passthrough.fields, passthrough.headers, getattr(passthrough, "tools", None),
            getattr(passthrough, "tool_strict", None)]
    return [type(passthrough).__name__, *said] if any(said) else None


def _message(message: Message) -> dict[str, Any]:
    parts: list[list[Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            parts.append(["text", part.text.strip()])
        elif isinstance(part, ImagePart):
            parts.append(["image", part.url, part.detail])
        elif isinstance(part, ToolCallPart):
            parts.append(["tool_call", part.id, part.name, part.arguments])
        elif isinstance(part, ReasoningPart):
            parts.append(["reasoning", part.text, part.signature, part.redacted])
    return {"role": message.role, "content": parts, "name": message.name, "tool_call_id": message.tool_call_id,
            "is_error": message.is_error}

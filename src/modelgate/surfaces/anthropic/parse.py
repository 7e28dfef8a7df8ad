"""Anthropic Messages requests → the canonical schema, with 400s that name the field and the fix.

What the canonical request has a field for is translated (protocols.md §3.2, §7): ``system`` and
``role: "system"`` turns become system messages, ``tool_result`` blocks become ``tool`` messages in
their place, ``tool_use`` input objects become JSON text, ``thinking`` blocks keep their signature.
Top-level fields it has no field for (``top_k``, ``service_tier``, ``container``,
``context_management``, top-level ``cache_control``, ...) go to the request's
``AnthropicPassthrough``, which only Anthropic upstreams receive; so do ``thinking``,
``output_config``, ``output_format`` (the structured-outputs beta, read as ``output_config.format``
is) and ``metadata`` as sent, beside their canonical translation, because they can
say more than it (``adaptive`` thinking, ``display``), the tools' ``strict`` flags and the
``anthropic-beta`` header.

Signatures are bound to their issuer. A thinking block from an Anthropic upstream carries the
signature as issued; one from another provider is rendered with its origin in front,
``"gemini:<signature>"``, and with the issuer's item id too where the issuer takes the block back
only with it, ``"openai:<rs_ id>:<encrypted_content>"`` (an OpenAI Responses reasoning item). A
Gemini thought signature that belongs to a function call rides on an empty thinking block just
before the ``tool_use`` block, as ``"gemini:call:<signature>"`` (signatures are base64, so never
hold a colon). An empty signature means reasoning text with no opaque state (DeepSeek, xAI,
vLLM): it comes back as a ``ReasoningPart`` of no origin.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

import orjson

from modelgate.schema.errors import InvalidRequest
from modelgate.schema.request import (
    AnthropicPassthrough,
    ChatRequest,
    ImagePart,
    Message,
    Part,
    ReasoningPart,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
)
from modelgate.surfaces.anthropic.threads import thread_without_beta

# The field validators are the OpenAI surface's; they say "'name' must be ..." in any format.
from modelgate.surfaces.fields import bad, boolean, integer, model_of, number, type_name

# Fields the canonical request carries whole; every other one goes to the pass-through (thinking,
# output_config and metadata beside their canonical translation).
MESSAGES_FIELDS = {
    "model", "messages", "max_tokens", "system", "stream", "temperature", "top_p", "stop_sequences",
    "tools", "tool_choice",
}
CUSTOM_TOOL_TYPES = (None, "custom")
TOOL_CHOICE_MODES: dict[str, Literal["auto", "required", "none"]] = {"auto": "auto", "any": "required", "none": "none"}
ANTHROPIC_ORIGIN = "anthropic"
STRUCTURED_OUTPUTS_BETA = "structured-outputs-2025-11-13"


def join_signature(signature: str, origin: str | None, on_call: bool = False, item_id: str | None = None) -> str:
    """A thinking block's signature for ``signature`` issued by ``origin`` (see the docstring)."""
    if origin in (None, ANTHROPIC_ORIGIN):
        return signature
    if on_call:
        return f"{origin}:call:{signature}"
    return f"{origin}:{item_id}:{signature}" if item_id else f"{origin}:{signature}"


class SplitSignature(NamedTuple):
    """A thinking block's signature read back: ``join_signature`` undone."""

    signature: str | None
    origin: str | None
    item_id: str | None = None
    on_call: bool = False  # it belongs to the tool call after the block


def split_signature(signature: str) -> SplitSignature:
    if not signature:
        return SplitSignature(None, None)
    origin, colon, rest = signature.partition(":")
    if not colon:
        return SplitSignature(signature, ANTHROPIC_ORIGIN)
    if rest.startswith("call:"):
        return SplitSignature(rest.removeprefix("call:"), origin, on_call=True)
    item_id, colon, value = rest.partition(":")
    return SplitSignature(value, origin, item_id or None) if colon else SplitSignature(rest, origin)


def _text_of(block: dict[str, Any], at: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise bad(f"'{at}.text' must be a string", f"{at}.text")
    return text


MEDIA_TYPE = re.compile(r"image/[A-Za-z0-9.+-]+")


def _web_url(url: str) -> bool:
    """Whether ``url`` is an http(s) URL with a host (``file:`` and the like name nothing an
    upstream should fetch)."""
    if url.partition(":")[0].lower() not in ("http", "https"):
        return False
    try:
        return bool(urlsplit(url).hostname)
    except ValueError:  # a malformed host, e.g. an unclosed IPv6 bracket
        return False


def _image(block: dict[str, Any], at: str) -> ImagePart:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    cache_control = block.get("cache_control")
    if kind == "base64" and isinstance(source, dict):
        data, media_type = source.get("data"), source.get("media_type")
        if not isinstance(data, str) or not isinstance(media_type, str):
            raise bad(f"'{at}.source' must be {{type: 'base64', media_type, data}}", f"{at}.source")
        if not MEDIA_TYPE.fullmatch(media_type):
            raise bad(f"'{at}.source.media_type' must be an image type such as 'image/png', got {media_type[:40]!r}",
                      f"{at}.source.media_type")
        return ImagePart(f"data:{media_type};base64,{data}", cache_control=cache_control)
    if kind == "url" and isinstance(source, dict):
        url = source.get("url")
        if not isinstance(url, str) or not _web_url(url):
            got = f"{url[:40]!r}" if isinstance(url, str) else type_name(url)
            raise bad(f"'{at}.source.url' must be an http(s) URL, got {got}", f"{at}.source.url")
        return ImagePart(url, cache_control=cache_control)
    raise bad(f"'{at}.source' must be {{type: 'base64', media_type, data}} or {{type: 'url', url}}; "
               "file sources (the Files API) are not served by this gateway", f"{at}.source")


def _unsupported_block(kind: Any, at: str, role: str) -> InvalidRequest:
    if kind == "document":
        return bad(f"'{at}': document blocks are not supported by this gateway; send the document's "
                    "text as a text block (or a PDF page as an image block)", f"{at}.type")
    if kind in ("tool_use", "thinking", "redacted_thinking") and role != "assistant":
        return bad(f"'{at}': {kind} blocks belong in assistant turns", f"{at}.type")
    if kind == "tool_result" and role != "user":
        return bad(f"'{at}': tool_result blocks belong in user turns", f"{at}.type")
    return bad(f"'{at}.type' {kind!r} is not supported here: this gateway serves text, image, tool_use, "
                "tool_result, thinking and redacted_thinking blocks (server tools run only on Anthropic)",
                f"{at}.type")


def _tool_result(block: dict[str, Any], at: str) -> Message:
    tool_use_id = block.get("tool_use_id")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise bad(f"'{at}.tool_use_id' is required: the id of the tool_use block this answers",
                   f"{at}.tool_use_id")
    content = block.get("content")
    parts: list[Part] = []
    if isinstance(content, str):
        parts.append(TextPart(content))
    elif isinstance(content, list):
        for i, item in enumerate(content):
            where = f"{at}.content[{i}]"
            kind = item.get("type") if isinstance(item, dict) else None
            if kind == "text":
                parts.append(TextPart(_text_of(item, where), cache_control=item.get("cache_control")))
            elif kind == "image":
                parts.append(_image(item, where))
            else:
                raise bad(f"'{where}.type' {kind!r} is not supported in a tool result; use text or image",
                           f"{where}.type")
    elif content is not None:
        raise bad(f"'{at}.content' must be a string or an array of text and image blocks", f"{at}.content")
    cache_control = block.get("cache_control")
    if cache_control is not None:
        # The canonical form of a marker on the result block itself: an empty part bearing it.
        parts.append(TextPart("", cache_control=cache_control))
    return Message(role="tool", content=parts, tool_call_id=tool_use_id,
                   is_error=bool(block.get("is_error")))


def _tool_use(block: dict[str, Any], at: str) -> ToolCallPart:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise bad(f"'{at}' must be {{type: 'tool_use', id, name, input}}", at)
    if not isinstance(arguments, dict):
        raise bad(f"'{at}.input' must be an object, got {type_name(arguments)}", f"{at}.input")
    return ToolCallPart(id=call_id, name=name, arguments=orjson.dumps(arguments).decode())


def _block(block: Any, at: str, role: str) -> tuple[Part | Message, bool]:
    """One content block as a part (a tool result as a ``tool`` message), and whether it is a
    thinking block that carries the signature of the tool call after it."""
    if not isinstance(block, dict):
        raise bad(f"'{at}' must be an object with a 'type'", at)
    kind = block.get("type")
    if kind == "text":
        return TextPart(_text_of(block, at), cache_control=block.get("cache_control")), False
    if kind == "image" and role != "system":
        return _image(block, at), False
    if kind == "tool_result" and role == "user":
        return _tool_result(block, at), False
    if role != "assistant":
        raise _unsupported_block(kind, at, role)
    if kind == "tool_use":
        return _tool_use(block, at), False
    if kind == "thinking":
        thinking, signature = block.get("thinking", ""), block.get("signature") or ""
        if not isinstance(thinking, str) or not isinstance(signature, str):
            raise bad(f"'{at}' must be {{type: 'thinking', thinking, signature}}", at)
        split = split_signature(signature)
        return (ReasoningPart(text=thinking, signature=split.signature, origin=split.origin, id=split.item_id),
                split.on_call)
    if kind == "redacted_thinking":
        data = block.get("data")
        if not isinstance(data, str):
            raise bad(f"'{at}.data' must be the string the redacted_thinking block came with", f"{at}.data")
        return ReasoningPart(redacted=data, origin=ANTHROPIC_ORIGIN), False
    raise _unsupported_block(kind, at, role)


def parse_turn(raw: Any, i: int) -> list[Message]:
    """One Anthropic message as canonical messages: tool results become ``tool`` messages in place."""
    where = f"messages[{i}]"
    if not isinstance(raw, dict):
        raise bad(f"'{where}' must be an object with 'role' and 'content'", where)
    role = raw.get("role")
    if role not in ("user", "assistant", "system"):
        raise bad(f"'{where}.role' must be 'user' or 'assistant' (or 'system'); got {role!r}", f"{where}.role")
    content = raw.get("content")
    if isinstance(content, str):
        return [Message(role=role, content=[TextPart(content)])]
    if not isinstance(content, list):
        raise bad(f"'{where}.content' must be a string or an array of content blocks", f"{where}.content")
    out: list[Message] = []
    parts: list[Part] = []
    pending: ReasoningPart | None = None  # a call's signature, waiting for its tool_use block
    for j, block in enumerate(content):
        part, on_call = _block(block, f"{where}.content[{j}]", role)
        if pending is not None:
            if isinstance(part, ToolCallPart):
                part.signature, part.origin = pending.signature, pending.origin
            else:
                parts.append(pending)  # no call followed: it stays a reasoning part
            pending = None
        if isinstance(part, Message):
            if parts:
                out.append(Message(role=role, content=parts))
                parts = []
            out.append(part)
        elif on_call and isinstance(part, ReasoningPart):
            pending = part
        else:
            parts.append(part)
    if pending is not None:
        parts.append(pending)
    if parts or not out:
        out.append(Message(role=role, content=parts))
    return out


def _system(raw: Any) -> list[Message]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [Message(role="system", content=[TextPart(raw)])] if raw else []
    if not isinstance(raw, list):
        raise bad("'system' must be a string or an array of text blocks", "system")
    parts: list[Part] = []
    for i, block in enumerate(raw):
        at = f"system[{i}]"
        if not isinstance(block, dict) or block.get("type") != "text":
            raise bad(f"'{at}' must be a text block {{type: 'text', text}}", at)
        parts.append(TextPart(_text_of(block, at), cache_control=block.get("cache_control")))
    return [Message(role="system", content=parts)] if parts else []


def _tools(raw: Any) -> list[Tool]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad("'tools' must be an array of {name, description, input_schema}", "tools")
    tools = []
    for i, tool in enumerate(raw):
        at = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise bad(f"'{at}' must be an object {{name, description, input_schema}}", at)
        kind = tool.get("type")
        if kind not in CUSTOM_TOOL_TYPES:
            raise bad(f"'{at}': the server tool {kind!r} runs only on Anthropic's servers and this gateway "
                       "does not serve it; declare a custom tool with an input_schema instead", f"{at}.type")
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not name:
            raise bad(f"'{at}.name' is required", f"{at}.name")
        if not isinstance(schema, dict):
            raise bad(f"'{at}.input_schema' is required: a JSON Schema object with type 'object'",
                       f"{at}.input_schema")
        description = tool.get("description")
        strict = tool.get("strict")
        tools.append(Tool(name=name, description=description if isinstance(description, str) else None,
                          parameters=schema, strict=strict if isinstance(strict, bool) else None,
                          cache_control=tool.get("cache_control")))
    return tools


def _tool_choice(raw: Any) -> tuple[ToolChoice | None, bool | None]:
    """The tool choice and the parallel-tool-calls flag (Anthropic's inverse of disable_parallel_tool_use)."""
    if raw is None:
        return None, None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or kind not in ("auto", "any", "tool", "none"):
        raise bad("'tool_choice' must be {type: 'auto'|'any'|'none'} or {type: 'tool', name}", "tool_choice")
    if kind == "tool":
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise bad("'tool_choice.name' is required with type 'tool'", "tool_choice.name")
        choice = ToolChoice(mode="named", name=name)
    else:
        choice = ToolChoice(mode=TOOL_CHOICE_MODES[kind])
    disable = raw.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise bad("'tool_choice.disable_parallel_tool_use' must be true or false",
                   "tool_choice.disable_parallel_tool_use")
    return choice, (not disable) if disable is not None else None


def _thinking(raw: Any) -> int | None:
    """The reasoning budget ``thinking`` asks for (0: thinking off; None: the model decides)."""
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or not isinstance(kind, str):
        raise bad("'thinking' must be {type: 'enabled', budget_tokens}, {type: 'adaptive'} or "
                   "{type: 'disabled'}", "thinking")
    if kind == "enabled":
        budget = integer(raw, "budget_tokens", 1)
        if budget is None:
            raise bad("'thinking.budget_tokens' is required with type 'enabled', e.g. 2048",
                       "thinking.budget_tokens")
        return budget
    if kind == "disabled":
        return 0
    return None  # adaptive and later modes: only Anthropic upstreams can be told (the pass-through)


def _output_config(raw: Any) -> tuple[str | None, ResponseFormat | None]:
    """The reasoning effort and the response format ``output_config`` asks for."""
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        raise bad("'output_config' must be an object {effort?, format?}", "output_config")
    effort = raw.get("effort")
    if effort is not None and not isinstance(effort, str):
        raise bad("'output_config.effort' must be a string such as 'low', 'medium' or 'high'",
                   "output_config.effort")
    fmt = raw.get("format")
    if fmt is None:
        return effort, None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise bad("'output_config.format' must be {type: 'json_schema', schema: {...}}", "output_config.format")
    return effort, ResponseFormat(type="json_schema", schema=fmt["schema"])


def _output_format(raw: Any, headers: Mapping[str, str]) -> ResponseFormat | None:
    """The response format of the structured-outputs beta's top-level ``output_format``, which
    says what ``output_config.format`` says; it needs that beta named in ``anthropic-beta``."""
    if raw is None:
        return None
    betas = {beta.strip() for beta in headers.get("anthropic-beta", "").split(",")}
    if STRUCTURED_OUTPUTS_BETA not in betas:
        raise bad(f"'output_format' needs the header 'anthropic-beta: {STRUCTURED_OUTPUTS_BETA}'; "
                  "or send the format as output_config.format, which needs no beta", "output_format")
    if not isinstance(raw, dict) or raw.get("type") != "json_schema" or not isinstance(raw.get("schema"), dict):
        raise bad("'output_format' must be {type: 'json_schema', schema: {...}}", "output_format")
    return ResponseFormat(type="json_schema", schema=raw["schema"])


def _metadata_user(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad("'metadata' must be an object such as {\"user_id\": \"...\"}", "metadata")
    user = raw.get("user_id")
    if user is not None and not isinstance(user, str):
        raise bad("'metadata.user_id' must be a string", "metadata.user_id")
    return user


def _stop_sequences(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        raise bad("'stop_sequences' must be an array of strings", "stop_sequences")
    return list(raw)


def parse_messages_request(body: Any, headers: Mapping[str, str], *, counting: bool = False) -> ChatRequest:
    """The canonical request for a ``POST /v1/messages`` body (``counting``: a count_tokens body,
    which has no ``max_tokens``)."""
    model = model_of(body)
    max_tokens = integer(body, "max_tokens", 0)
    if max_tokens is None and not counting:
        raise InvalidRequest("'max_tokens' is required: the most tokens the reply may have, e.g. 1024 "
                             "(the Messages API has no default)", param="max_tokens",
                             code="missing_required_parameter")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise InvalidRequest("'messages' is required and must be a non-empty array",
                             param="messages", code="missing_required_parameter")
    messages = _system(body.get("system"))
    for i, raw in enumerate(raw_messages):
        messages.extend(parse_turn(raw, i))
    tool_choice, parallel = _tool_choice(body.get("tool_choice"))
    budget = _thinking(body.get("thinking"))
    effort, response_format = _output_config(body.get("output_config"))
    beta_format = _output_format(body.get("output_format"), headers)
    if beta_format is not None:
        if response_format is not None:
            raise bad("Give the format once: 'output_format' (the structured-outputs beta) or "
                      "'output_config.format', not both", "output_format")
        response_format = beta_format
    user = _metadata_user(body.get("metadata"))
    request = ChatRequest(
        model=model,
        messages=messages,
        stream=bool(boolean(body, "stream")),
        max_tokens=max_tokens,
        temperature=number(body, "temperature", 0, 1),
        top_p=number(body, "top_p", 0, 1),
        stop=_stop_sequences(body.get("stop_sequences")),
        tools=_tools(body.get("tools")),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        response_format=response_format,
        reasoning_effort=effort,
        reasoning_budget=budget,
        user=user,
    )
    if body.get("thread") is not None and not counting:
        # The gateway keeps threads itself (threads.py), only with the beta named.
        raise thread_without_beta()
    beta = headers.get("anthropic-beta")
    request.passthrough = AnthropicPassthrough(
        fields={k: v for k, v in body.items() if k not in MESSAGES_FIELDS},
        tool_strict={tool.name: tool.strict for tool in request.tools if tool.strict is not None},
        headers={"anthropic-beta": beta} if beta else {})
    return request

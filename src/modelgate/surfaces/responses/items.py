"""Responses input items → canonical messages, with errors that name the item and the fix.

An item is one message, or one piece of an assistant turn (a reasoning item, an assistant
message, a ``function_call``), or a tool's answer (``function_call_output``). Items are read one
at a time (``read_item``) into ``Turn``s; ``to_messages`` then joins the consecutive pieces of an
assistant turn into one canonical assistant message, in order, as the canonical schema keeps it.

A reasoning item's ``encrypted_content`` is the gateway's sealed token (``ReasoningState`` of
``surfaces/reasoning_state.py``): it is opened here, and one that does not open is refused, never
forwarded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelgate.schema.request import ImagePart, Message, Part, ReasoningPart, Role, TextPart, ToolCallPart
from modelgate.surfaces.base import Sealer
from modelgate.surfaces.fields import bad, fetchable_url, type_name
from modelgate.surfaces.reasoning_state import ReasoningState

MESSAGE_ROLES = ("user", "assistant", "system", "developer")
TEXT_PARTS = ("input_text", "output_text")


@dataclass(slots=True)
class Turn:
    """One input item, read. Consecutive assistant turns form one assistant message."""

    role: Role
    parts: list[Part] = field(default_factory=list)
    tool_call_id: str | None = None  # role "tool": the call it answers
    # Gemini: the thought signatures of this turn's function calls, by call id, and their issuer.
    call_signatures: dict[str, str] = field(default_factory=dict)
    call_origin: str | None = None


@dataclass(slots=True, frozen=True)
class Reference:
    """An ``item_reference``: an item of a stored response, by its id. A ``soft`` one (a reasoning
    item sent back by its id alone, as clients of stored responses do) is left out when no stored
    response has it."""

    id: str
    where: str
    soft: bool = False


def read_item(raw: Any, where: str, sealer: Sealer) -> Turn | Reference:
    if not isinstance(raw, dict):
        raise bad(f"'{where}' must be an object: a message {{role, content}} or an item with a 'type'", where)
    kind = raw.get("type", "message")
    if kind == "message":
        return _message(raw, where)
    if kind == "function_call":
        return _function_call(raw, where)
    if kind == "function_call_output":
        return _function_call_output(raw, where)
    if kind == "reasoning":
        return _reasoning(raw, where, sealer)
    if kind == "item_reference":
        item_id = raw.get("id")
        if not isinstance(item_id, str) or not item_id:
            raise bad(f"'{where}.id' is required: the id of an item of a stored response", f"{where}.id")
        return Reference(item_id, where)
    if isinstance(kind, str):
        raise bad(f"'{where}.type' {kind[:60]!r} is not supported here: input items are messages, function_call, "
                  "function_call_output, reasoning and item_reference (items of built-in tools are not carried)",
                  f"{where}.type")
    raise bad(f"'{where}.type' must be a string such as 'message' or 'function_call', got {type_name(kind)}",
              f"{where}.type")


def to_messages(turns: list[Turn]) -> list[Message]:
    """The turns as canonical messages: an assistant turn's pieces joined, Gemini's thought
    signatures put back on the function calls they belong to."""
    signatures: dict[str, tuple[str, str | None]] = {}
    for turn in turns:
        for call_id, signature in turn.call_signatures.items():
            signatures[call_id] = (signature, turn.call_origin)
    messages: list[Message] = []
    for turn in turns:
        if turn.role == "assistant" and messages and messages[-1].role == "assistant":
            messages[-1].content.extend(turn.parts)
            continue
        messages.append(Message(role=turn.role, content=list(turn.parts), tool_call_id=turn.tool_call_id))
    if signatures:
        for message in messages:
            for call in message.tool_calls():
                found = signatures.get(call.id)
                if found is not None:
                    call.signature, call.origin = found
    # An assistant turn made of summaries only carries nothing: leave no empty message behind.
    return [m for m in messages if m.content or m.role != "assistant"]


def _message(raw: dict[str, Any], where: str) -> Turn:
    role = raw.get("role")
    if role not in MESSAGE_ROLES:
        raise bad(f"'{where}.role' must be one of {', '.join(MESSAGE_ROLES)}; got {_shown(role)}", f"{where}.role")
    content = raw.get("content")
    if isinstance(content, str):
        return Turn(role=role, parts=[TextPart(content)] if content or role != "assistant" else [])
    if not isinstance(content, list):
        raise bad(f"'{where}.content' must be a string or an array of content parts, got {type_name(content)}",
                  f"{where}.content")
    return Turn(role=role, parts=[_content_part(part, f"{where}.content[{i}]", role == "assistant")
                                  for i, part in enumerate(content)])


def _content_part(part: Any, where: str, assistant: bool) -> Part:
    if not isinstance(part, dict):
        raise bad(f"'{where}' must be an object with a 'type'", where)
    kind = part.get("type")
    if kind in TEXT_PARTS:
        return TextPart(_text(part, "text", where))
    if kind == "refusal":
        return TextPart(_text(part, "refusal", where))
    if kind == "input_image" and not assistant:
        url = part.get("image_url")
        if url is None and part.get("file_id") is not None:
            raise bad(f"'{where}.file_id' is not supported: files live on OpenAI's servers; send the image as "
                      "'image_url' (an https URL or a data: URL)", f"{where}.file_id")
        if not isinstance(url, str) or not fetchable_url(url):
            raise bad(f"'{where}.image_url' must be an http(s) URL or a data: URL{_got(url)}", f"{where}.image_url")
        detail = part.get("detail")
        if detail is not None and not isinstance(detail, str):
            raise bad(f"'{where}.detail' must be 'low', 'high' or 'auto'", f"{where}.detail")
        return ImagePart(url, detail=detail)
    if kind == "input_file":
        raise bad(f"'{where}.type' 'input_file' is not supported here; send the file's text as 'input_text'",
                  f"{where}.type")
    allowed = "'output_text' or 'refusal'" if assistant else "'input_text' or 'input_image'"
    raise bad(f"'{where}.type' {_shown(kind)} is not supported here; use {allowed}", f"{where}.type")


NAMESPACE_SEPARATOR = "__"


def namespaced(namespace: str, name: str) -> str:
    """The canonical name of function ``name`` of a namespace tool."""
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}"


def _function_call(raw: dict[str, Any], where: str) -> Turn:
    call_id = _required(raw, "call_id", where, "the id the model gave the call")
    name = _required(raw, "name", where, "the function's name")
    namespace = raw.get("namespace")
    if isinstance(namespace, str) and namespace:
        name = namespaced(namespace, name)
    arguments = raw.get("arguments")
    if not isinstance(arguments, str):
        raise bad(f"'{where}.arguments' is required: the call's arguments as a JSON string, got "
                  f"{type_name(arguments)}", f"{where}.arguments")
    return Turn(role="assistant", parts=[ToolCallPart(id=call_id, name=name, arguments=arguments)])


def _function_call_output(raw: dict[str, Any], where: str) -> Turn:
    call_id = _required(raw, "call_id", where, "the call_id of the function_call this answers")
    output = raw.get("output")
    if isinstance(output, str):
        parts: list[Part] = [TextPart(output)]
    elif isinstance(output, list):
        parts = [_content_part(part, f"{where}.output[{i}]", False) for i, part in enumerate(output)]
    else:
        raise bad(f"'{where}.output' is required: the function's result as a string or an array of content "
                  f"parts, got {type_name(output)}", f"{where}.output")
    return Turn(role="tool", parts=parts, tool_call_id=call_id)


def _reasoning(raw: dict[str, Any], where: str, sealer: Sealer) -> Turn | Reference:
    summary = raw.get("summary", [])
    if not isinstance(summary, list):
        raise bad(f"'{where}.summary' must be an array of summary_text parts", f"{where}.summary")
    token = raw.get("encrypted_content")
    if token is not None:
        state = ReasoningState.open(token, sealer) if isinstance(token, str) else None
        if state is None:
            raise bad(f"'{where}.encrypted_content' was not issued by this gateway or was altered: send reasoning "
                      "items back exactly as they were returned, or leave them out", f"{where}.encrypted_content")
        part = state.part()
        return Turn(role="assistant", parts=[part] if part is not None else [],
                    call_signatures=state.calls, call_origin=state.origin)
    content = raw.get("content")
    if content is None:
        # A summary alone is not the reasoning, which no upstream takes back: the reasoning is the
        # stored item of that id, where the response was stored.
        item_id = raw.get("id")
        return Reference(item_id, where, soft=True) if isinstance(item_id, str) and item_id else Turn(role="assistant")
    if not isinstance(content, list):
        raise bad(f"'{where}.content' must be an array of reasoning_text parts", f"{where}.content")
    texts = []
    for i, part in enumerate(content):
        at = f"{where}.content[{i}]"
        if not isinstance(part, dict) or part.get("type") != "reasoning_text":
            raise bad(f"'{at}' must be {{type: 'reasoning_text', text}}", at)
        texts.append(_text(part, "text", at))
    text = "".join(texts)
    return Turn(role="assistant", parts=[ReasoningPart(text=text)] if text else [])


def _text(part: Mapping[str, Any], name: str, where: str) -> str:
    value = part.get(name)
    if not isinstance(value, str):
        raise bad(f"'{where}.{name}' must be a string, got {type_name(value)}", f"{where}.{name}")
    return value


def _required(raw: Mapping[str, Any], name: str, where: str, what: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value:
        raise bad(f"'{where}.{name}' is required: {what}", f"{where}.{name}")
    return value


def _shown(value: Any) -> str:
    return repr(value[:60]) if isinstance(value, str) else type_name(value)


def _got(value: Any) -> str:
    return f", got {value[:40]!r}" if isinstance(value, str) else f", got {type_name(value)}"

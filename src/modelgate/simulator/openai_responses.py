"""OpenAI Responses API: wire request → :class:`Prompt`, :class:`Reply` → ``Response`` object or SSE events.

Pure translation, no I/O (the signer and the set of function call items issued beside reasoning are passed in);
:mod:`modelgate.simulator.openai_api` wires it to HTTP. Shapes follow the OpenAI OpenAPI spec
(``CreateResponse``, ``Response``, ``ResponseStreamEvent``); see protocols.md §1.6.

Like the real API the simulator keeps nothing (``store`` is accepted and ignored), so state goes round
only in ``encrypted_content``: a reasoning model's reasoning item carries it when ``include`` asks for
``reasoning.encrypted_content``. It is signed per simulator instance and checked when sent back (an
altered one is a 400, an item without it a 404: nothing is stored to find it by). A function call item
sent back with the ``fc_`` id it was issued under, beside such a reasoning item, is refused unless that
item comes before it, as OpenAI refuses "a function_call item without its required reasoning item"; one
sent back without its id (as chat-style clients do, having only the ``call_id``) is taken.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelgate.simulator.config import ModelSpec
from modelgate.simulator.replies import Prompt, Reply, ToolMode, ToolSpec, fingerprint
from modelgate.simulator.state import BoundedSet, Signer
from modelgate.simulator.surface import SimError
from modelgate.simulator.tokens import message_tokens, split_words, tool_tokens

ENCRYPTED = "openai-reasoning"
ENCRYPTED_INCLUDE = "reasoning.encrypted_content"
MIN_OUTPUT_TOKENS = 16
# The top-level fields of CreateResponse; any other is refused as the API does ("Unknown parameter").
FIELDS = frozenset({
    "background", "context_management", "conversation", "include", "input", "instructions", "max_output_tokens",
    "max_tool_calls", "metadata", "model", "moderation", "parallel_tool_calls", "previous_response_id", "prompt",
    "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention", "reasoning", "safety_identifier",
    "service_tier", "store", "stream", "stream_options", "temperature", "text", "tool_choice", "tools",
    "top_logprobs", "top_p", "truncation", "user",
})
# Tools that run on OpenAI's servers: accepted, never called by the simulated model.
BUILTIN_TOOLS = frozenset({
    "file_search", "computer", "computer_use_preview", "web_search", "web_search_2025_08_26", "web_search_preview",
    "web_search_preview_2025_03_11", "mcp", "code_interpreter", "image_generation", "local_shell", "shell",
    "custom", "apply_patch", "tool_search", "namespace", "programmatic_tool_calling",
})
_ROLES = ("user", "assistant", "system", "developer")
# Tool-call arguments stream in fragments of this many characters, as on the chat API.
_ARGUMENT_FRAGMENT = 8
# The id of a function call item issued beside an encrypted reasoning item, in the simulator's set.
_CALL_KEY = "responses-call:"


def _invalid(message: str, param: str | None = None, code: str | None = "invalid_value") -> SimError:
    return SimError(400, message, param=param, code=code)


def encrypt(signer: Signer, text: str) -> str:
    """The ``encrypted_content`` of a reasoning item: its text, signed (so the same text gives the same
    token, streamed or not)."""
    payload = base64.urlsafe_b64encode(text.encode()).decode()
    return f"{payload}.{signer.sign(ENCRYPTED, payload)}"


def decrypt(signer: Signer, token: Any) -> str | None:
    """The reasoning text an ``encrypted_content`` carries; None where it was not issued by ``signer``."""
    if not isinstance(token, str):
        return None
    payload, _, signature = token.rpartition(".")
    if not payload or not signer.verify(ENCRYPTED, payload, signature):
        return None
    return base64.urlsafe_b64decode(payload).decode()


@dataclass
class ResponseOptions:
    """What shapes the rendering besides the reply: echoed request fields and the reasoning item's form."""

    body: dict[str, Any]
    summary: bool = False  # reasoning.summary asked for: the reasoning item carries its text
    encrypted: bool = False  # include asks for reasoning.encrypted_content
    response_id: str = field(default_factory=lambda: f"resp_{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))


def _content_text(content: Any, where: str) -> str:
    """The text of a message's content: a string, or input_text / output_text parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _invalid(f"Invalid type for '{where}': expected a string or an array of content parts.", where)
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text"):
            texts.append(str(part.get("text", "")))
        elif kind == "refusal":
            texts.append(str(part.get("refusal", "")))
        elif kind not in ("input_image", "input_file", "input_audio"):
            raise _invalid(f"Invalid value: {kind!r}. Supported values are: 'input_text', 'input_image', "
                           "'input_file', 'output_text' and 'refusal'.", f"{where}[{index}].type")
    return " ".join(t for t in texts if t)


def _input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    raw = body.get("input")
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise _invalid("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    out = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise _invalid(f"Invalid type for 'input[{index}]': expected an object.", f"input[{index}]")
        out.append({"type": "message", **item} if "type" not in item and "role" in item else item)
    return out


@dataclass
class _Walk:
    """What reading the input items found."""

    prompt_tokens: int = 0
    last_user_text: str = ""
    tool_results: list[str] = field(default_factory=list)


def _read_items(entries: list[dict[str, Any]], signer: Signer, issued: BoundedSet) -> _Walk:
    """Validate the input items as the API would and count them by the estimator (simulator/tokens.py):
    each message, and each run of assistant output (text and function calls), costs one message."""
    walk = _Walk()
    assistant: list[str] = []  # the pieces of the assistant turn in progress
    reasoned = False  # an intact reasoning item opened the current assistant turn

    def close_turn() -> None:
        nonlocal reasoned
        if assistant:
            walk.prompt_tokens += message_tokens(" ".join(p for p in assistant if p))
        assistant.clear()
        reasoned = False

    for index, item in enumerate(entries):
        where = f"input[{index}]"
        kind = item.get("type")
        if kind != "function_call_output":
            walk.tool_results.clear()  # only the outputs that end the input answer the last calls
        if kind == "message":
            role = item.get("role")
            if role not in _ROLES:
                raise _invalid(f"Invalid value: {role!r}. Supported values are: 'user', 'assistant', 'system' and "
                               "'developer'.", f"{where}.role")
            text = _content_text(item.get("content"), f"{where}.content")
            if role == "assistant":
                assistant.append(text)
                continue
            close_turn()
            walk.prompt_tokens += message_tokens(text)
            if role == "user":
                walk.last_user_text = text
        elif kind == "reasoning":
            _check_reasoning(item, where, signer)
            close_turn()
            reasoned = True
        elif kind == "function_call":
            for key in ("call_id", "name", "arguments"):
                if not isinstance(item.get(key), str):
                    raise _invalid(f"Missing required parameter: '{where}.{key}'.", f"{where}.{key}",
                                   "missing_required_parameter")
            if f"{_CALL_KEY}{item.get('id')}" in issued and not reasoned:
                raise _invalid(f"Item '{item['id']}' of type 'function_call' was provided without its required "
                               "'reasoning' item: send the reasoning item it came with before it, or leave out "
                               "the function call's id.", where)
            assistant.append(f"{item['name']} {item['arguments']}")
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str) or "output" not in item:
                raise _invalid(f"Missing required parameter: '{where}.call_id' and '{where}.output'.", where,
                               "missing_required_parameter")
            close_turn()
            output = _content_text(item["output"], f"{where}.output")
            walk.prompt_tokens += message_tokens(output)
            walk.tool_results.append(output)
        elif kind == "item_reference":
            raise SimError(404, f"Item with id '{item.get('id')}' not found.", param="input")
        else:
            raise _invalid(f"Invalid value: {kind!r}. Supported values are: 'message', 'reasoning', 'function_call', "
                           "'function_call_output' and 'item_reference'.", f"{where}.type")
    close_turn()
    return walk


def _check_reasoning(item: dict[str, Any], where: str, signer: Signer) -> None:
    if not isinstance(item.get("id"), str) or not isinstance(item.get("summary"), list):
        raise _invalid(f"Missing required parameter: '{where}.id' and '{where}.summary'.", where,
                       "missing_required_parameter")
    token = item.get("encrypted_content")
    if token is None:
        # Nothing is stored, so an item without its encrypted content cannot be found.
        raise SimError(404, f"Item with id '{item['id']}' not found. Items are not persisted when `store` is set "
                            "to false. Try again with `store` set to true, or remove this item from your input.",
                       param="input")
    if decrypt(signer, token) is None:
        raise _invalid(f"The encrypted content for item {item['id']} could not be verified.",
                       f"{where}.encrypted_content", "invalid_encrypted_content")


def _tools(body: dict[str, Any]) -> list[ToolSpec]:
    raw = body.get("tools") or []
    if not isinstance(raw, list):
        raise _invalid("Invalid type for 'tools': expected an array of tools.", "tools")
    tools = []
    for index, tool in enumerate(raw):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function":
            name = tool.get("name")
            if not isinstance(name, str) or not name:
                raise _invalid(f"Missing required parameter: 'tools[{index}].name'.", f"tools[{index}].name",
                               "missing_required_parameter")
            tools.append(ToolSpec(name=name, description=str(tool.get("description") or ""),
                                  schema=tool.get("parameters") or {"type": "object", "properties": {}}))
        elif kind not in BUILTIN_TOOLS:
            raise _invalid(f"Invalid value: {kind!r}. Supported values are: 'function' and the built-in tools.",
                           f"tools[{index}].type")
    return tools


def _tool_choice(choice: Any) -> tuple[ToolMode, str | None]:
    if choice == "none":
        return "none", None
    if choice == "required":
        return "required", None
    if isinstance(choice, dict) and choice.get("type") == "function":
        return "required", choice.get("name")
    return "auto", None


def to_prompt(body: dict[str, Any], model: str, spec: ModelSpec, safety: bool, signer: Signer,
              issued: BoundedSet) -> tuple[Prompt, ResponseOptions]:
    """The API-neutral prompt for a Responses request body, and how to render the reply."""
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise _invalid(f"Unknown parameter: '{unknown[0]}'.", unknown[0], "unknown_parameter")
    walk = _read_items(_input_items(body), signer, issued)
    instructions = body.get("instructions")
    prompt_tokens = walk.prompt_tokens + (message_tokens(instructions) if isinstance(instructions, str) else 0)
    tools = _tools(body)
    prompt_tokens += sum(tool_tokens(t.name, t.description, t.schema) for t in tools)
    max_tokens = body.get("max_output_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < MIN_OUTPUT_TOKENS):
        raise _invalid(f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
                       f"{MIN_OUTPUT_TOKENS}, but got {max_tokens!r} instead.", "max_output_tokens",
                       "integer_below_min_value")
    text = body.get("text")
    text_format = text.get("format") if isinstance(text, dict) else None
    if not isinstance(text_format, dict):
        text_format = {}
    json_schema = None
    if text_format.get("type") == "json_schema":
        json_schema = text_format.get("schema") or {"type": "object"}
    reasoning = body.get("reasoning")
    if not isinstance(reasoning, dict):
        reasoning = {}
    tool_mode, forced = _tool_choice(body.get("tool_choice"))
    include = body.get("include") or []
    prompt = Prompt(
        model=model,
        last_user_text=walk.last_user_text,
        fingerprint=fingerprint(body, "stream", "stream_options", "store", "include"),
        prompt_tokens=prompt_tokens,
        tool_results=list(walk.tool_results),
        tools=tools,
        tool_mode=tool_mode,
        forced_tool=forced,
        parallel_tools=body.get("parallel_tool_calls") is not False,
        max_tokens=max_tokens,
        json_schema=json_schema,
        json_mode=text_format.get("type") == "json_object",
        reasoning=spec.reasoning and reasoning.get("effort") != "none",
        safety=safety,
    )
    summary = (reasoning.get("summary") or reasoning.get("generate_summary")) in ("auto", "concise", "detailed")
    options = ResponseOptions(body=body, summary=summary,
                              encrypted=isinstance(include, list) and ENCRYPTED_INCLUDE in include)
    return prompt, options


# ---------------------------------------------------------------------------------------------
# Reply → Response


def _item_id(prefix: str, options: ResponseOptions, position: int) -> str:
    return f"{prefix}_{options.response_id[5:37]}{position:02d}"


def output_items(reply: Reply, options: ResponseOptions, signer: Signer, issued: BoundedSet) -> list[dict[str, Any]]:
    """The response's output items, finished."""
    output: list[dict[str, Any]] = []
    if reply.reasoning:
        item_id = _item_id("rs", options, len(output))
        item: dict[str, Any] = {
            "id": item_id, "type": "reasoning",
            "summary": [{"type": "summary_text", "text": reply.reasoning}] if options.summary else [],
        }
        if options.encrypted:
            item["encrypted_content"] = encrypt(signer, reply.reasoning)
        output.append(item)
    if reply.text:
        output.append({
            "id": _item_id("msg", options, len(output)), "type": "message", "role": "assistant",
            "status": "incomplete" if reply.finish == "length" else "completed",
            "content": [{"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}],
        })
    for call in reply.tool_calls:
        item_id = _item_id("fc", options, len(output))
        if reply.reasoning and options.encrypted:
            issued.add(f"{_CALL_KEY}{item_id}")
        output.append({"id": item_id, "type": "function_call", "status": "completed",
                       "call_id": _item_id("call", options, len(output)), "name": call.name,
                       "arguments": call.arguments_json})
    return output


def usage(prompt: Prompt, reply: Reply) -> dict[str, Any]:
    completion = reply.completion_tokens
    return {
        "input_tokens": prompt.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
        "total_tokens": prompt.prompt_tokens + completion,
    }


def _echoed_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = []
    for tool in body.get("tools") or []:
        if tool.get("type") == "function":
            # Function tools are strict unless the request says otherwise.
            tool = {"type": "function", "name": tool["name"], "description": tool.get("description"),
                    "parameters": tool.get("parameters"), "strict": tool.get("strict", True)}
        tools.append(tool)
    return tools


def response_object(prompt: Prompt, options: ResponseOptions, status: str, output: list[dict[str, Any]],
                    reply: Reply | None = None) -> dict[str, Any]:
    """The ``Response`` object with ``status``; ``reply`` (for a finished one) gives its usage."""
    body = options.body
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else None
    incomplete = None
    if status == "incomplete" and reply is not None:
        incomplete = {"reason": "content_filter" if reply.finish == "safety" else "max_output_tokens"}
    response: dict[str, Any] = {
        "id": options.response_id,
        "object": "response",
        "created_at": options.created,
        "status": status,
        "background": False,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": prompt.model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")} if reasoning else None,
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": _echoed_tools(body),
        "top_logprobs": body.get("top_logprobs", 0),
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "metadata": body.get("metadata") or {},
    }
    # The spec's Response has no null for these: absent until there is a value.
    if reply is not None:
        response["usage"] = usage(prompt, reply)
    if isinstance(body.get("user"), str):
        response["user"] = body["user"]
    return response


def final_status(reply: Reply) -> str:
    return "incomplete" if reply.finish in ("length", "safety") else "completed"


def render_response(prompt: Prompt, reply: Reply, options: ResponseOptions, signer: Signer,
                    issued: BoundedSet) -> dict[str, Any]:
    """The non-streaming ``Response``."""
    output = output_items(reply, options, signer, issued)
    return response_object(prompt, options, final_status(reply), output, reply)


def render_events(prompt: Prompt, reply: Reply, options: ResponseOptions, signer: Signer,
                  issued: BoundedSet) -> list[bytes]:
    """The SSE frames of a streamed response, one event each: ``event: <type>`` and its ``data:``,
    numbered by ``sequence_number``; no ``[DONE]``."""
    frames: list[bytes] = []

    def emit(kind: str, **data: Any) -> None:
        payload = orjson.dumps({"type": kind, "sequence_number": len(frames), **data})
        frames.append(b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n")

    emit("response.created", response=response_object(prompt, options, "in_progress", []))
    emit("response.in_progress", response=response_object(prompt, options, "in_progress", []))
    output = output_items(reply, options, signer, issued)
    for position, item in enumerate(output):
        kind = item["type"]
        at = {"item_id": item["id"], "output_index": position}
        if kind == "reasoning":
            emit("response.output_item.added", output_index=position,
                 item={"id": item["id"], "type": "reasoning", "summary": []})
            for index, part in enumerate(item["summary"]):
                emit("response.reasoning_summary_part.added", **at, summary_index=index,
                     part={"type": "summary_text", "text": ""})
                for word in split_words(part["text"]):
                    emit("response.reasoning_summary_text.delta", **at, summary_index=index, delta=word)
                emit("response.reasoning_summary_text.done", **at, summary_index=index, text=part["text"])
                emit("response.reasoning_summary_part.done", **at, summary_index=index, part=part)
        elif kind == "message":
            emit("response.output_item.added", output_index=position,
                 item={**item, "status": "in_progress", "content": []})
            part = item["content"][0]
            emit("response.content_part.added", **at, content_index=0,
                 part={**part, "text": ""})
            for word in split_words(part["text"]):
                emit("response.output_text.delta", **at, content_index=0, delta=word, logprobs=[])
            emit("response.output_text.done", **at, content_index=0, text=part["text"], logprobs=[])
            emit("response.content_part.done", **at, content_index=0, part=part)
        else:
            emit("response.output_item.added", output_index=position,
                 item={**item, "status": "in_progress", "arguments": ""})
            arguments = item["arguments"]
            for start in range(0, len(arguments), _ARGUMENT_FRAGMENT):
                emit("response.function_call_arguments.delta", **at, delta=arguments[start:start + _ARGUMENT_FRAGMENT])
            emit("response.function_call_arguments.done", **at, name=item["name"], arguments=arguments)
        emit("response.output_item.done", output_index=position, item=item)
    status = final_status(reply)
    emit(f"response.{status}", response=response_object(prompt, options, status, output, reply))
    return frames


def error_event(sequence_number: int, message: str, code: str = "server_error") -> bytes:
    """The ``error`` event that ends a stream that failed after it started."""
    payload = orjson.dumps({"type": "error", "code": code, "message": message, "param": None,
                            "sequence_number": sequence_number})
    return b"event: error\ndata: " + payload + b"\n\n"

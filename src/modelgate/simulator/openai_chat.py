"""OpenAI Chat Completions: wire request → :class:`Prompt`, :class:`Reply` → wire response or SSE chunks.

Pure translation, no I/O; :mod:`modelgate.simulator.openai_api` wires it to HTTP. Shapes follow the OpenAI
OpenAPI spec (``CreateChatCompletionResponse``, ``CreateChatCompletionStreamResponse``); see protocols.md §1.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelgate.simulator.config import ModelSpec
from modelgate.simulator.replies import Finish, Prompt, Reply, ToolMode, ToolSpec, fingerprint
from modelgate.simulator.surface import SimError
from modelgate.simulator.tokens import message_tokens, split_words, tool_tokens

_FINISH: dict[Finish, str] = {
    "stop": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "safety": "content_filter",
}

# Tool-call arguments are streamed in fragments of this many characters, like real upstreams do.
_ARGUMENT_FRAGMENT = 8


@dataclass
class ChatOptions:
    """Wire details that shape the rendering but not the reply itself."""

    include_usage: bool = False
    reasoning_field: str = "reasoning_content"
    azure: bool = False
    completion_id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex[:24]}")
    created: int = field(default_factory=lambda: int(time.time()))


def content_text(content: Any) -> str:
    """The text of an OpenAI ``content`` (string or list of parts); non-text parts contribute nothing."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _message_text(message: dict[str, Any]) -> str:
    pieces = [content_text(message.get("content"))]
    for call in message.get("tool_calls") or []:
        function = (call.get("function") if isinstance(call, dict) else None) or {}
        pieces.append(f"{function.get('name', '')} {function.get('arguments', '')}")
    return " ".join(p for p in pieces if p)


def check_messages(messages: Any, spec: ModelSpec) -> list[dict[str, Any]]:
    """Validate ``messages`` like the upstream would, including DeepSeek's reasoning-echo rule."""
    if not isinstance(messages, list) or not messages:
        raise SimError(400, "[] is too short - 'messages'", param="messages", code="invalid_value")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
            "function",
        ):
            raise SimError(400, f"Invalid value for 'messages[{index}].role'.", param=f"messages[{index}].role")
        if message["role"] == "tool" and not message.get("tool_call_id"):
            raise SimError(
                400,
                f"Missing required parameter: 'messages[{index}].tool_call_id'.",
                param=f"messages[{index}].tool_call_id",
                code="missing_required_parameter",
            )
        # DeepSeek V3.2/V4 thinking mode: an assistant turn that called tools must echo its reasoning back.
        if (
            spec.require_reasoning_echo
            and message["role"] == "assistant"
            and message.get("tool_calls")
            and not message.get(spec.reasoning_field)
        ):
            raise SimError(
                400,
                f"Missing `{spec.reasoning_field}` field in the assistant message at message index {index}. "
                "For more information, please refer to https://api-docs.deepseek.com/guides/thinking_mode#tool-calls",
                code="invalid_request_error",
            )
    return messages


def to_prompt(body: dict[str, Any], model: str, spec: ModelSpec, safety: bool) -> Prompt:
    """The API-neutral prompt for a chat completions request body."""
    messages = check_messages(body.get("messages"), spec)
    tools = [_tool_spec(t) for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    prompt_tokens = sum(message_tokens(_message_text(m)) for m in messages)
    prompt_tokens += sum(tool_tokens(t.name, t.description, t.schema) for t in tools)
    tool_mode, forced = _tool_choice(body.get("tool_choice"))
    trailing_results: list[str] = []
    for message in reversed(messages):
        if message["role"] != "tool":
            break
        trailing_results.insert(0, content_text(message.get("content")))
    last_user: dict[str, Any] = next((m for m in reversed(messages) if m["role"] == "user"), {})
    stop = body.get("stop")
    response_format = body.get("response_format") or {}
    json_schema = None
    if response_format.get("type") == "json_schema":
        json_schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    return Prompt(
        model=model,
        last_user_text=content_text(last_user.get("content")),
        fingerprint=fingerprint(body, "stream", "stream_options"),
        prompt_tokens=prompt_tokens,
        tool_results=trailing_results,
        tools=tools,
        tool_mode=tool_mode,
        forced_tool=forced,
        parallel_tools=body.get("parallel_tool_calls") is not False,
        max_tokens=int(max_tokens) if max_tokens is not None else None,
        stop=[stop] if isinstance(stop, str) else [s for s in stop or [] if isinstance(s, str)],
        json_schema=json_schema,
        json_mode=response_format.get("type") == "json_object",
        reasoning=spec.reasoning,
        safety=safety,
    )


def _tool_spec(tool: dict[str, Any]) -> ToolSpec:
    function = tool.get("function") or {}
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise SimError(
            400,
            "Missing required parameter: 'tools[].function.name'.",
            param="tools",
            code="missing_required_parameter",
        )
    return ToolSpec(
        name=name,
        description=str(function.get("description") or ""),
        schema=function.get("parameters") or {"type": "object", "properties": {}},
    )


def _tool_choice(choice: Any) -> tuple[ToolMode, str | None]:
    if choice == "none":
        return "none", None
    if choice == "required":
        return "required", None
    if isinstance(choice, dict) and choice.get("type") == "function":
        return "required", (choice.get("function") or {}).get("name")
    return "auto", None


def call_id(completion_id: str, choice: int, index: int) -> str:
    return f"call_{completion_id[-16:]}{choice}{index}"


def usage(prompt: Prompt, replies: list[Reply]) -> dict[str, Any]:
    completion = sum(r.completion_tokens for r in replies)
    reasoning = sum(r.reasoning_tokens for r in replies)
    return {
        "prompt_tokens": prompt.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _filter_results() -> dict[str, Any]:
    return {name: {"filtered": False, "severity": "safe"} for name in ("hate", "self_harm", "sexual", "violence")}


def render_completion(prompt: Prompt, replies: list[Reply], options: ChatOptions) -> dict[str, Any]:
    """The non-streaming ``chat.completion`` object."""
    choices = []
    for index, reply in enumerate(replies):
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text if reply.text or not reply.tool_calls else None,
            "refusal": None,
            "annotations": [],
        }
        if reply.reasoning:
            message[options.reasoning_field] = reply.reasoning
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call_id(options.completion_id, index, i),
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments_json},
                }
                for i, c in enumerate(reply.tool_calls)
            ]
        choice: dict[str, Any] = {
            "index": index,
            "message": message,
            "logprobs": None,
            "finish_reason": _FINISH[reply.finish],
        }
        if options.azure:
            choice["content_filter_results"] = _filter_results()
        choices.append(choice)
    body: dict[str, Any] = {
        "id": options.completion_id,
        "object": "chat.completion",
        "created": options.created,
        "model": prompt.model,
        "choices": choices,
        "usage": usage(prompt, replies),
        "service_tier": "default",
        "system_fingerprint": "fp_simulator",
    }
    if options.azure:
        body["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _filter_results()}]
    return body


def render_chunks(prompt: Prompt, replies: list[Reply], options: ChatOptions) -> list[bytes]:
    """The SSE frames of a streamed completion, ending with ``data: [DONE]``."""
    frames: list[bytes] = []

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> None:
        data: dict[str, Any] = {
            "id": options.completion_id,
            "object": "chat.completion.chunk",
            "created": options.created,
            "model": prompt.model,
            "system_fingerprint": "fp_simulator",
            "choices": choices,
        }
        if options.include_usage:
            data["usage"] = None
        data.update(extra)
        frames.append(b"data: " + orjson.dumps(data) + b"\n\n")

    def delta(index: int, content: dict[str, Any], finish: str | None = None) -> None:
        chunk([{"index": index, "delta": content, "logprobs": None, "finish_reason": finish}])

    if options.azure:
        # Azure opens with a choice-less chunk that only carries the prompt's content-filter verdict.
        frames.append(
            b"data: "
            + orjson.dumps(
                {
                    "choices": [],
                    "created": 0,
                    "id": "",
                    "model": "",
                    "object": "",
                    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _filter_results()}],
                }
            )
            + b"\n\n"
        )
    for index, reply in enumerate(replies):
        delta(index, {"role": "assistant", "content": "", "refusal": None})
        for word in split_words(reply.reasoning):
            delta(index, {options.reasoning_field: word})
        for word in split_words(reply.text):
            delta(index, {"content": word})
        for position, call in enumerate(reply.tool_calls):
            delta(
                index,
                {
                    "tool_calls": [
                        {
                            "index": position,
                            "id": call_id(options.completion_id, index, position),
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""},
                        }
                    ]
                },
            )
            arguments = call.arguments_json
            for start in range(0, len(arguments), _ARGUMENT_FRAGMENT):
                fragment = arguments[start : start + _ARGUMENT_FRAGMENT]
                delta(index, {"tool_calls": [{"index": position, "function": {"arguments": fragment}}]})
        delta(index, {}, _FINISH[reply.finish])
    if options.include_usage:
        chunk([], usage=usage(prompt, replies))
    frames.append(b"data: [DONE]\n\n")
    return frames

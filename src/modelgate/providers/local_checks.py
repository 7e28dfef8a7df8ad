"""What a request to a local model must be before a replica is taken, and what its answer must be
after: the gateway's side of structured output and tool calls on the llamacpp and ray engines.

Before: tools only for a model whose chat template renders them, and not on the vllm engine; for
``tool_choice`` required or a named function, schemas a grammar can hold to
(``engines/json_schema.py``); each problem an ``InvalidRequest`` (400) naming the field and the fix.

After: where a grammar held the answer (``response_format`` json_object or json_schema, and
``tool_choice`` required or named), the complete answer is checked once more, since a grammar
holds the shape but an answer can still miss it: cut at ``max_tokens``, or matching two branches of
a ``oneOf``. Each ``*_problem`` says what is wrong, or None.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelgate.engines.json_schema import UnsupportedSchema, grammar_schema, violation
from modelgate.engines.tool_calls import NO_PARAMETERS
from modelgate.schema.errors import InvalidRequest
from modelgate.schema.events import Event, Finish, TextDelta, ToolCallDelta, Usage
from modelgate.schema.request import ChatRequest, ResponseFormat, Tool


def uses_tools(request: ChatRequest) -> bool:
    """Whether the conversation needs a template that renders tools: it offers tools, or has tool
    calls or tool results in it."""
    return bool(request.tools) or any(m.role == "tool" or m.tool_calls() for m in request.messages)


def tools_refusal(request: ChatRequest, model: str, capabilities: tuple[str, ...],
                  engine: str = "llamacpp") -> InvalidRequest | None:
    """Why the tools of ``request`` cannot go to local model ``model`` on ``engine``; None where
    they can. The llamacpp and ray engines run tools (the same ``ChatService``); vllm does not."""
    if not uses_tools(request):
        return None
    if engine == "vllm":
        return InvalidRequest(
            f"local model '{model}' runs on engine vllm, which does not run tools in this gateway (vLLM's server "
            "needs a tool call parser chosen for the model); send the request without tools, or serve a GGUF of "
            "the model with engine: llamacpp or ray", param="tools", code="tools_not_supported")
    if "tools" not in capabilities:
        return InvalidRequest(
            f"local model '{model}' has no tool support: its chat template (tokenizer.chat_template) renders "
            "no tools; send the request without tools, or use a deployment of a model whose template has them",
            param="tools", code="tools_not_supported")
    choice = request.tool_choice
    if choice is None or choice.mode not in ("required", "named"):
        return None
    if not request.tools:
        return InvalidRequest("tool_choice asks for a tool call, but the request has no tools; send tools",
                              param="tool_choice")
    names = [tool.name for tool in request.tools]
    if choice.mode == "named" and choice.name not in names:
        return InvalidRequest(f"tool_choice names the function '{choice.name}', which is not one of the tools "
                              f"({', '.join(names)})", param="tool_choice")
    fmt = request.response_format
    if fmt is not None and fmt.type != "text":
        return InvalidRequest("response_format and tool_choice required (or a named function) each hold a local "
                              "model's output to a grammar of their own; send one of them", param="tool_choice")
    for index, tool in enumerate(request.tools):
        if choice.mode == "named" and tool.name != choice.name:
            continue
        try:
            grammar_schema(parameters(tool))
        except UnsupportedSchema as error:
            return InvalidRequest(f"local model '{model}': tools[{index}] ('{tool.name}') parameters: {error}",
                                  param=f"tools[{index}]", code="unsupported_schema")
    return None


def parameters(tool: Tool) -> dict[str, Any]:
    return tool.parameters or NO_PARAMETERS


def _last(events: list[Event], kind: type[Finish] | type[Usage]) -> Any:
    return next((e for e in reversed(events) if isinstance(e, kind)), None)


def _cut(events: list[Event], what: str, model: str) -> str | None:
    """Why the answer is incomplete when it ended at ``max_tokens``; None when it did not."""
    finish: Finish | None = _last(events, Finish)
    if finish is None or finish.reason != "length":
        return None
    usage: Usage | None = _last(events, Usage)
    spent = f" ({usage.output_tokens} tokens)" if usage is not None else ""
    return f"local model '{model}' reached max_tokens{spent} before {what} was complete; raise max_tokens"


def format_problem(events: list[Event], fmt: ResponseFormat, model: str) -> str | None:
    """Why the text of ``events`` is not the JSON ``fmt`` asks for; None where it is."""
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    what = f"the schema '{fmt.name}'" if fmt.type == "json_schema" and fmt.name else (
        "the schema" if fmt.type == "json_schema" else "a JSON object")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        return _cut(events, f"its JSON answer for {what}", model) or (
            f"local model '{model}' answered text that is not JSON ({error}) where {what} was asked for")
    if fmt.type == "json_object":
        return None if isinstance(value, dict) else (
            f"local model '{model}' answered JSON that is not an object where response_format json_object asks "
            "for one")
    failed = violation(value, {} if fmt.schema is None else fmt.schema)
    return None if failed is None else f"local model '{model}' answered JSON that does not match {what}: {failed}"


def call_problem(events: list[Event], request: ChatRequest, model: str) -> str | None:
    """Why ``events`` are not the tool call ``tool_choice`` required or named asks for; None where
    they are."""
    cut = _cut(events, "its tool call", model)
    if cut is not None:
        return cut
    calls: dict[int, ToolCallDelta] = {}
    for event in events:
        if isinstance(event, ToolCallDelta):
            known = calls.get(event.index)
            if known is None:
                calls[event.index] = ToolCallDelta(event.index, event.id, event.name, event.arguments)
            else:
                known.arguments += event.arguments
    if not calls:
        return f"local model '{model}' answered no tool call where tool_choice asks for one"
    tools = {tool.name: tool for tool in request.tools}
    choice = request.tool_choice
    for call in calls.values():
        tool = tools.get(call.name or "")
        if tool is None or (choice is not None and choice.mode == "named" and call.name != choice.name):
            return f"local model '{model}' called '{call.name}', which tool_choice does not allow"
        try:
            value = orjson.loads(call.arguments)
        except orjson.JSONDecodeError as error:
            return f"local model '{model}' called '{call.name}' with arguments that are not JSON ({error})"
        failed = violation(value, parameters(tool))
        if failed is not None:
            return (f"local model '{model}' called '{call.name}' with arguments that do not match its "
                    f"parameters: {failed}")
    return None

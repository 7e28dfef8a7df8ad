"""An OpenAI chat completions body, read into the job a llama.cpp engine runs and checked before a
model is taken for it: every problem is a ``BadRequest`` (a 400 naming the field and the fix).

Messages keep what a chat template shows: their role and text, an assistant's ``tool_calls`` (with
the arguments as the JSON object they hold, as Hugging Face templates expect them) and a tool
message's ``tool_call_id`` and ``name``. ``tools`` and ``tool_choice`` become a ``ToolUse``: the
tools as the template is to see them, and for ``required`` or a named function the JSON Schema of
each allowed tool's arguments, as ``engines/json_schema.py`` lets a grammar hold to it.

``response_format`` json_object decodes under llama.cpp's JSON grammar; json_schema under the
grammar llama-cpp-python's converter makes of the schema, once ``engines/json_schema.py`` has
found in it nothing the converter would pass over (a 400 naming the keyword otherwise).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar, json_schema_to_gbnf

from modelgate.engines.json_schema import UnsupportedSchema, grammar_schema
from modelgate.engines.tool_calls import NO_PARAMETERS

ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_STOPS = 4  # as OpenAI


class BadRequest(ValueError):
    """A request this engine cannot run; ``code`` and ``param`` as OpenAI names them."""

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


@dataclass(slots=True)
class ToolUse:
    """A request's tools: as the chat template is to see them, and how they may be called."""

    tools: list[dict[str, Any]]  # {"type": "function", "function": {name, description, parameters}}
    choice: Literal["auto", "none", "required", "named"]
    # required or named: the tools a call may name, with the schema of their arguments (the grammar's)
    allowed: dict[str, dict[str, Any]]
    parallel: bool  # parallel_tool_calls: more than one call in an answer

    @property
    def names(self) -> set[str]:
        return {tool["function"]["name"] for tool in self.tools}

    @property
    def constrained(self) -> bool:
        """Whether decoding is held to a grammar of a call (required or named)."""
        return self.choice in ("required", "named")


@dataclass(slots=True)
class ChatJob:
    """A chat completion request, read and checked before a model is taken for it."""

    messages: list[dict[str, Any]]
    max_tokens: int | None
    stream: bool
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    grammar: LlamaGrammar | None = None  # what response_format holds the output to
    tools: ToolUse | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def uses_tools(self) -> bool:
        """Whether the conversation needs a template that renders tools: it offers tools, or has
        tool calls or tool results in it."""
        return bool(self.tools and self.tools.tools) or any(
            m["role"] == "tool" or m.get("tool_calls") for m in self.messages)


def read_job(body: Any) -> ChatJob:
    """The job of an OpenAI chat completions body; ``BadRequest`` for what this engine cannot run."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    if body.get("functions") or body.get("function_call"):
        raise BadRequest("functions and function_call are the deprecated form of tools; send tools and "
                         "tool_choice instead", param="functions", code="unsupported_parameter")
    if body.get("n") not in (None, 1):
        raise BadRequest("n must be 1 for a local model", param="n")
    messages = [_message(m, i) for i, m in enumerate(_list(body.get("messages"), "messages"))]
    if not messages:
        raise BadRequest("messages must not be empty", param="messages")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise BadRequest("max_tokens must be a positive whole number", param="max_tokens")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > MAX_STOPS or not all(isinstance(s, str) and s for s in stops):
        raise BadRequest(f"stop must be up to {MAX_STOPS} non-empty strings", param="stop")
    tools = read_tools(body)
    grammar = _grammar(body.get("response_format"))
    if grammar is not None and tools is not None and tools.constrained:
        raise BadRequest("response_format and tool_choice required (or a named function) each hold a local "
                         "model's output to a grammar of their own; send one of them", param="tool_choice")
    job = ChatJob(messages=messages, max_tokens=limit, stream=body.get("stream") is True, stop=stops,
                  grammar=grammar, tools=tools)
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = body.get(name)
        if value is not None:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise BadRequest(f"{name} must be a number", param=name)
            setattr(job, name, float(value))
    seed = body.get("seed")
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise BadRequest("seed must be a whole number", param="seed")
        job.seed = seed
    return job


def read_tools(body: dict[str, Any]) -> ToolUse | None:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls``; None where the request has no tools."""
    raw = body.get("tools")
    tools = [_tool(t, i) for i, t in enumerate(_list(raw, "tools"))] if raw is not None else []
    names = [t["function"]["name"] for t in tools]
    for name in names:
        if names.count(name) > 1:
            raise BadRequest(f"tools name the function '{name}' twice; give each tool a name of its own",
                             param="tools")
    choice, named = _tool_choice(body.get("tool_choice"))
    if not tools:
        if choice in ("required", "named"):
            raise BadRequest("tool_choice asks for a tool call, but the request has no tools; send tools",
                             param="tool_choice")
        return None
    if named is not None and named not in names:
        raise BadRequest(f"tool_choice names the function '{named}', which is not one of the tools "
                         f"({', '.join(names)})", param="tool_choice")
    allowed: dict[str, dict[str, Any]] = {}
    if choice in ("required", "named"):
        for index, tool in enumerate(tools):
            name = tool["function"]["name"]
            if named is not None and name != named:
                continue
            param = f"tools[{index}].function.parameters"
            try:
                allowed[name] = grammar_schema(tool["function"].get("parameters") or NO_PARAMETERS)
            except UnsupportedSchema as error:
                raise BadRequest(f"{param} (tool '{name}'): {error}", param=param,
                                 code="unsupported_schema") from None
    return ToolUse(tools=tools, choice=choice, allowed=allowed, parallel=body.get("parallel_tool_calls") is not False)


def _tool(tool: Any, index: int) -> dict[str, Any]:
    param = f"tools[{index}]"
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
        raise BadRequest(f"{param} must be {{type: 'function', function: {{name, description, parameters}}}}; "
                         "a local model runs function tools only", param=param)
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"{param}.function.name must be a non-empty string", param=f"{param}.function.name")
    parameters = function.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise BadRequest(f"{param}.function.parameters must be a JSON Schema object",
                         param=f"{param}.function.parameters")
    shown: dict[str, Any] = {"name": name}
    if isinstance(function.get("description"), str):
        shown["description"] = function["description"]
    shown["parameters"] = parameters if parameters is not None else {"type": "object", "properties": {}}
    return {"type": "function", "function": shown}


def _tool_choice(raw: Any) -> tuple[Literal["auto", "none", "required", "named"], str | None]:
    if raw is None or raw == "auto":
        return "auto", None
    if raw in ("none", "required"):
        return raw, None
    function = raw.get("function") if isinstance(raw, dict) else None
    if isinstance(function, dict) and raw.get("type") == "function" and isinstance(function.get("name"), str):
        return "named", function["name"]
    raise BadRequest("tool_choice must be 'auto', 'none', 'required' or {type: 'function', function: {name}}",
                     param="tool_choice")


def _grammar(fmt: Any) -> LlamaGrammar | None:
    """The grammar of ``response_format``: JSON for json_object, the schema's for json_schema."""
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return parsed_grammar(JSON_GBNF, "response_format")
    if kind != "json_schema":
        raise BadRequest("response_format.type must be 'text', 'json_object' or 'json_schema'",
                         param="response_format")
    spec = fmt.get("json_schema")
    schema = spec.get("schema", {}) if isinstance(spec, dict) else None
    param = "response_format.json_schema.schema"
    try:
        readable = grammar_schema(schema)
    except UnsupportedSchema as error:
        raise BadRequest(f"response_format.json_schema: {error}", param=param, code="unsupported_schema") from None
    return parsed_grammar(schema_gbnf(readable, "response_format.json_schema", param), "response_format")


def schema_gbnf(schema: dict[str, Any], what: str, param: str) -> str:
    """The GBNF grammar llama-cpp-python's converter makes of ``schema``."""
    try:
        grammar: str = json_schema_to_gbnf(json.dumps(schema))
    except (AssertionError, ValueError, KeyError, TypeError, RecursionError) as error:
        raise BadRequest(f"{what}: a local model's grammar cannot be made of this schema "
                         f"({type(error).__name__}: {error})", param=param, code="unsupported_schema") from None
    return grammar


def parsed_grammar(grammar: str, param: str) -> LlamaGrammar:
    try:
        return LlamaGrammar.from_string(grammar, verbose=False)
    except ValueError as error:
        raise BadRequest(f"{param}: the grammar made of it does not parse: {error}",
                         param=param, code="unsupported_schema") from None


def _list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadRequest(f"{param} must be a list", param=param)
    return value


def _message(message: Any, index: int) -> dict[str, Any]:
    param = f"messages[{index}]"
    if not isinstance(message, dict):
        raise BadRequest(f"{param} must be an object", param=param)
    role = message.get("role")
    if role not in ROLES:
        raise BadRequest(f"{param}.role {role!r} is not one this engine runs ({', '.join(ROLES)})",
                         param=f"{param}.role")
    content = message.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        texts = []
        for part in _list(content, f"{param}.content"):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise BadRequest(f"{param}.content: this local model reads text only", param=f"{param}.content")
            texts.append(part["text"])
        text = "\n\n".join(texts)
    # Chat templates know system, not developer (OpenAI's newer name for it).
    out: dict[str, Any] = {"role": "system" if role == "developer" else role, "content": text}
    calls = message.get("tool_calls")
    if role == "assistant" and calls:
        out["tool_calls"] = [_history_call(c, f"{param}.tool_calls[{i}]")
                             for i, c in enumerate(_list(calls, f"{param}.tool_calls"))]
    if role == "tool":
        for key in ("tool_call_id", "name"):
            value = message.get(key)
            if value is not None and not isinstance(value, str):
                raise BadRequest(f"{param}.{key} must be a string", param=f"{param}.{key}")
            if value is not None:
                out[key] = value
    return out


def _history_call(call: Any, param: str) -> dict[str, Any]:
    """An assistant's earlier tool call, as chat templates read it."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise BadRequest(f"{param} must be {{id, type: 'function', function: {{name, arguments}}}}", param=param)
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            value = json.loads(arguments)
        except ValueError:
            value = None
        # Templates write the arguments with tojson: the object, so they are not quoted twice.
        if isinstance(value, dict):
            arguments = value
    call_id = call.get("id")
    return {"id": call_id if isinstance(call_id, str) else "", "type": "function",
            "function": {"name": function["name"], "arguments": arguments if arguments is not None else {}}}

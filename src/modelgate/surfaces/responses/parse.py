"""A Responses API request (``CreateResponse``) → the canonical request, with errors that name
the field and the fix.

What the canonical request has no slot for rides in a ``ResponsesPassthrough``, which only an
upstream that speaks the Responses API reads: body fields such as ``include`` or
``prompt_cache_key``, and built-in tools (web search, file search, ...), which a target that does
not speak Responses refuses by name. What the gateway itself does with the request (``store``,
``previous_response_id``, ``include``, the parameters a response echoes) is kept beside it in
``ResponsesRequest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from modelgate.schema.errors import InvalidRequest
from modelgate.schema.request import (
    ChatRequest,
    Message,
    ResponseFormat,
    ResponsesPassthrough,
    TextPart,
    Tool,
    ToolChoice,
)
from modelgate.surfaces.base import Sealer
from modelgate.surfaces.fields import bad, boolean, integer, model_of, number, string, type_name
from modelgate.surfaces.responses.items import Reference, Turn, namespaced, read_item

SEALED_REASONING = "reasoning.encrypted_content"
# Body fields the gateway consumes; the rest ride in the pass-through for Responses upstreams.
CONSUMED = {
    "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "text", "reasoning",
    "max_output_tokens", "temperature", "top_p", "metadata", "user", "stream", "stream_options", "store",
    "previous_response_id",
    # What Codex CLI says about itself to a custom provider (installation, session); OpenAI's API
    # refuses it as an unknown parameter, so it stops here.
    "client_metadata",
}
# What needs OpenAI's own servers and has nothing to run on here.
UNSUPPORTED = {
    "conversation": "conversations live on OpenAI's servers; continue with 'previous_response_id' instead",
    "prompt": "prompt templates live on OpenAI's servers; send the prompt as 'input' and 'instructions'",
}


@dataclass(slots=True, kw_only=True)
class ResponsesRequest:
    """A parsed request: the canonical one, and what the gateway does with it."""

    request: ChatRequest  # its messages: the instructions, then the input (references unresolved)
    turns: list[Turn | Reference]  # the input items, read
    items: list[Any]  # the input items as sent
    instructions: str | None
    previous_id: str | None
    store: bool
    include: list[str] = field(default_factory=list)
    echo: dict[str, Any] = field(default_factory=dict)  # the parameters a response object repeats
    namespaces: frozenset[str] = frozenset()  # of the namespace tools, whose functions are "namespace__name"

    @property
    def sealed_reasoning(self) -> bool:
        """Whether reasoning items go out with their ``encrypted_content``."""
        return SEALED_REASONING in self.include


def parse_responses_request(body: Any, sealer: Sealer) -> ResponsesRequest:
    model = model_of(body)
    for name, why in UNSUPPORTED.items():
        if body.get(name) is not None:
            raise bad(f"'{name}' is not supported by this gateway: {why}", name)
    if body.get("background"):
        raise bad("'background' is not supported by this gateway: stream the response instead "
                  "('stream': true)", "background")
    previous_id = string(body, "previous_response_id")
    items = _input(body.get("input"), previous_id)
    turns = [read_item(item, f"input[{i}]", sealer) for i, item in enumerate(items)]
    instructions = string(body, "instructions")
    include = _include(body.get("include"))
    tools, builtin, builtin_at, tools_echo = _tools(body.get("tools"))
    choice, choice_echo, tools = _tool_choice(body.get("tool_choice"), tools)
    response_format, text_echo = _text(body.get("text"))
    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise bad("'reasoning' must be an object such as {\"effort\": \"medium\", \"summary\": \"auto\"}",
                  "reasoning")
    reasoning = reasoning or {}
    effort = string(reasoning, "effort", "reasoning.effort")
    summary = string(reasoning, "summary", "reasoning.summary")
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict)
                                 or not all(isinstance(v, str) for v in metadata.values())):
        raise bad("'metadata' must be an object of string values", "metadata")
    store = boolean(body, "store") is not False  # stored unless asked not to, as OpenAI does
    parallel = boolean(body, "parallel_tool_calls")
    max_output = integer(body, "max_output_tokens", 1)
    temperature = number(body, "temperature", 0, 2)
    top_p = number(body, "top_p", 0, 1)
    user = string(body, "user")
    fields = {k: v for k, v in body.items() if k not in CONSUMED}
    if set(reasoning) - {"effort"}:
        fields["reasoning"] = reasoning  # the summary wanted, and what else it says, for a Responses upstream
    text = body.get("text")
    if isinstance(text, dict) and set(text) - {"format"}:
        fields["text"] = text  # verbosity
    if choice_echo is not None and choice is None:
        fields["tool_choice"] = choice_echo  # a built-in tool, named
    for name in ("safety_identifier", "prompt_cache_key", "service_tier"):
        string(body, name)
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise bad("'stream_options' must be an object", "stream_options")
    messages = [Message(role="system", content=[TextPart(instructions)])] if instructions else []
    request = ChatRequest(
        model=model, messages=messages, stream=bool(boolean(body, "stream")), max_tokens=max_output,
        temperature=temperature, top_p=top_p, tools=tools, tool_choice=choice, parallel_tool_calls=parallel,
        response_format=response_format, reasoning_effort=effort, user=user, metadata=metadata,
        include_usage=True,
        passthrough=ResponsesPassthrough(fields=fields, tools=builtin, tool_indexes=builtin_at)
        if fields or builtin else None,
    )
    echo = {
        "instructions": instructions, "max_output_tokens": max_output,
        "max_tool_calls": integer(body, "max_tool_calls", 1), "metadata": metadata or {},
        "parallel_tool_calls": True if parallel is None else parallel, "previous_response_id": previous_id,
        "prompt_cache_key": body.get("prompt_cache_key"), "reasoning": {"effort": effort, "summary": summary},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": _tier(body.get("service_tier")), "store": store,
        "temperature": 1.0 if temperature is None else temperature, "text": text_echo,
        "tool_choice": "auto" if choice_echo is None else choice_echo, "tools": tools_echo,
        "top_logprobs": integer(body, "top_logprobs", 0) or 0, "top_p": 1.0 if top_p is None else top_p,
        "truncation": _truncation(body.get("truncation")), "user": user,
    }
    return ResponsesRequest(request=request, turns=turns, items=items, instructions=instructions,
                            previous_id=previous_id, store=store, include=include, echo=echo,
                            namespaces=frozenset(t["name"] for t in tools_echo if t.get("type") == "namespace"
                                                 and _functions_only(t)))


def _input(raw: Any, previous_id: str | None) -> list[Any]:
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw}]}]
    if isinstance(raw, list) and (raw or previous_id):
        return raw
    if raw is None and previous_id:
        return []
    if raw is None or raw == []:
        raise InvalidRequest("'input' is required: a string, or an array of input items such as "
                             "[{\"role\": \"user\", \"content\": \"Hello\"}]", param="input",
                             code="missing_required_parameter")
    raise bad(f"'input' must be a string or an array of input items, got {type_name(raw)}", "input")


def _include(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise bad("'include' must be an array of strings such as [\"reasoning.encrypted_content\"]", "include")
    return list(raw)


def _tools(raw: Any) -> tuple[list[Tool], list[dict[str, Any]], list[int], list[dict[str, Any]]]:
    """The function tools; the built-in tools as sent, with their indexes; the tools as echoed."""
    if raw is None:
        return [], [], [], []
    if not isinstance(raw, list):
        raise bad("'tools' must be an array of tools such as {type: 'function', name, parameters}", "tools")
    tools: list[Tool] = []
    builtin: list[dict[str, Any]] = []
    indexes: list[int] = []
    echo: list[dict[str, Any]] = []
    for i, tool in enumerate(raw):
        at = f"tools[{i}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or not isinstance(kind, str):
            raise bad(f"'{at}' must be an object with a 'type', such as {{type: 'function', name, parameters}}", at)
        if kind == "function":
            function, shown = _function_tool(tool, at)
            tools.append(function)
            echo.append(shown)
        elif kind == "namespace" and _functions_only(tool):
            # Its functions, each named "namespace__name": every upstream takes them, and a call
            # of one is answered as a call in the namespace (output.py).
            namespace = _namespace_name(tool, at)
            for j, inner in enumerate(tool["tools"]):
                function, _ = _function_tool(inner, f"{at}.tools[{j}]")
                function.name = namespaced(namespace, function.name)
                tools.append(function)
            echo.append(tool)
        else:
            builtin.append(tool)
            indexes.append(i)
            echo.append(tool)
    return tools, builtin, indexes, echo


_NAMESPACE = re.compile(r"[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*")  # no "__", which joins it to a name


def _functions_only(tool: dict[str, Any]) -> bool:
    inner = tool.get("tools")
    return isinstance(inner, list) and all(isinstance(t, dict) and t.get("type") == "function" for t in inner)


def _namespace_name(tool: dict[str, Any], at: str) -> str:
    name = tool.get("name")
    if not isinstance(name, str) or not _NAMESPACE.fullmatch(name) or len(name) > 32:
        raise bad(f"'{at}.name' must be a namespace name of letters, digits, '-' and single '_' (at most 32), "
                  "such as 'crm'", f"{at}.name")
    return name


def _function_tool(tool: dict[str, Any], at: str) -> tuple[Tool, dict[str, Any]]:
    """A function tool, and how the response object repeats it."""
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise bad(f"'{at}.name' is required: the function's name (Responses function tools are flat: "
                  "{type: 'function', name, parameters})", f"{at}.name")
    parameters = tool.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise bad(f"'{at}.parameters' must be a JSON Schema object", f"{at}.parameters")
    description = string(tool, "description", f"{at}.description")
    strict = tool.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise bad(f"'{at}.strict' must be true or false", f"{at}.strict")
    return (Tool(name=name, description=description, parameters=parameters, strict=strict),
            {"type": "function", "name": name, "description": description, "parameters": parameters,
             "strict": strict})


def _tool_choice(raw: Any, tools: list[Tool]) -> tuple[ToolChoice | None, Any, list[Tool]]:
    """The canonical choice (None for a built-in tool), the choice as echoed, and the function
    tools the model may call (``allowed_tools`` narrows them)."""
    if raw is None:
        return None, None, tools
    if raw in ("auto", "none", "required"):
        return ToolChoice(mode=raw), raw, tools
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "function":
        name = raw.get("name")
        if not isinstance(name, str) or not any(t.name == name for t in tools):
            raise bad("'tool_choice.name' must name a function in 'tools'", "tool_choice.name")
        return ToolChoice(mode="named", name=name), {"type": "function", "name": name}, tools
    if kind == "allowed_tools":
        mode, allowed = raw.get("mode"), raw.get("tools")
        if mode not in ("auto", "required") or not isinstance(allowed, list):
            raise bad("'tool_choice' of type 'allowed_tools' must be {type, mode: 'auto' | 'required', tools: "
                      "[{type: 'function', name}]}", "tool_choice")
        names = {t.get("name") for t in allowed if isinstance(t, dict) and t.get("type") == "function"}
        return ToolChoice(mode=mode), raw, [t for t in tools if t.name in names]
    if isinstance(kind, str):
        return None, raw, tools  # a built-in tool: for an upstream that speaks Responses
    raise bad("'tool_choice' must be 'none', 'auto', 'required' or {type: 'function', name}", "tool_choice")


def _text(raw: Any) -> tuple[ResponseFormat | None, dict[str, Any]]:
    """The canonical response format and ``text`` as echoed."""
    echo: dict[str, Any] = {"format": {"type": "text"}, "verbosity": "medium"}
    if raw is None:
        return None, echo
    if not isinstance(raw, dict):
        raise bad("'text' must be an object such as {\"format\": {\"type\": \"text\"}}", "text")
    verbosity = string(raw, "verbosity", "text.verbosity")
    if verbosity is not None:
        echo["verbosity"] = verbosity
    spec = raw.get("format")
    if spec is None:
        return None, echo
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind in ("text", "json_object"):
        echo["format"] = {"type": kind}
        return ResponseFormat(type=kind), echo
    if kind != "json_schema":
        raise bad("'text.format.type' must be 'text', 'json_object' or 'json_schema'", "text.format.type")
    assert isinstance(spec, dict)
    name, schema = spec.get("name"), spec.get("schema")
    if not isinstance(name, str) or not name:
        raise bad("'text.format.name' is required: a name for the schema (json_schema is flat here: "
                  "{type: 'json_schema', name, schema, strict})", "text.format.name")
    if not isinstance(schema, dict):
        raise bad("'text.format.schema' is required: a JSON Schema object", "text.format.schema")
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise bad("'text.format.strict' must be true or false", "text.format.strict")
    description = string(spec, "description", "text.format.description")
    echo["format"] = {"type": "json_schema", "name": name, "schema": schema, "strict": strict}
    if description is not None:
        echo["format"]["description"] = description
    return ResponseFormat(type="json_schema", name=name, schema=schema, strict=strict,
                          description=description), echo


def _tier(value: Any) -> str:
    """The service tier a response reports: the one asked for, "default" for "auto" or none."""
    return value if isinstance(value, str) and value != "auto" else "default"


def _truncation(value: Any) -> str:
    if value is None:
        return "disabled"
    if value not in ("auto", "disabled"):
        raise bad(f"'truncation' must be 'auto' or 'disabled', got {value!r:.60}", "truncation")
    return str(value)

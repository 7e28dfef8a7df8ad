"""OpenAI chat completions and embeddings requests → the canonical schema, with errors that name
the field and the fix. Fields we do not know pass through to OpenAI-compatible upstreams only, in
the request's ``OpenAIPassthrough``."""

from __future__ import annotations

from typing import Any, Literal

from modelgate.schema.errors import InvalidRequest
from modelgate.schema.request import (
    ChatRequest,
    EmbeddingRequest,
    ImagePart,
    Message,
    OpenAIPassthrough,
    Part,
    ReasoningPart,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
)
from modelgate.surfaces.fields import bad, boolean, fetchable_url, integer, model_of, number, string, type_name

ROLES = ("system", "developer", "user", "assistant", "tool")
# Fields consumed into the canonical request; everything else goes to the pass-through.
CHAT_FIELDS = {
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
    "temperature", "top_p", "stop", "seed", "n", "presence_penalty", "frequency_penalty", "tools",
    "tool_choice", "parallel_tool_calls", "response_format", "reasoning_effort", "user", "metadata",
}


def _parts(content: Any, where: str, role: str) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)] if content or role != "assistant" else []
    if not isinstance(content, list):
        raise bad(f"'{where}' must be a string or an array of content parts, got {type_name(content)}", where)
    parts: list[Part] = []
    for i, part in enumerate(content):
        at = f"{where}[{i}]"
        if not isinstance(part, dict):
            raise bad(f"'{at}' must be an object with a 'type'", at)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise bad(f"'{at}.text' must be a string", f"{at}.text")
            parts.append(TextPart(text, cache_control=part.get("cache_control")))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not fetchable_url(url):
                raise bad(f"'{at}.image_url.url' must be an http(s) URL or a data: URL"
                          f"{_got(url)}", f"{at}.image_url.url")
            detail = image.get("detail") if isinstance(image, dict) else None
            parts.append(ImagePart(url, detail=detail))
        elif kind == "refusal":
            parts.append(TextPart(str(part.get("refusal", ""))))
        else:
            raise bad(f"'{at}.type' {kind!r} is not supported here; use 'text' or 'image_url'", f"{at}.type")
    return parts


def _got(value: Any) -> str:
    return f", got {value[:40]!r}" if isinstance(value, str) else f", got {type_name(value)}"


def _reasoning_parts(raw: dict[str, Any], where: str) -> list[Part]:
    """Reasoning sent back on an assistant turn: ``thinking_blocks`` (with the signatures the
    provider needs) where the client kept them, else the plain ``reasoning_content`` text."""
    blocks = raw.get("thinking_blocks")
    if isinstance(blocks, list) and blocks:
        parts: list[Part] = []
        for j, block in enumerate(blocks):
            if not isinstance(block, dict):
                raise bad(f"'{where}.thinking_blocks[{j}]' must be an object", f"{where}.thinking_blocks")
            origin = str(block.get("provider") or "anthropic")
            item_id = block.get("id")  # the issuer's item id, where it takes the block back only with it
            item_id = item_id if isinstance(item_id, str) and item_id else None
            if block.get("type") == "redacted_thinking":
                parts.append(ReasoningPart(redacted=str(block.get("data", "")), origin=origin, id=item_id))
            else:
                parts.append(ReasoningPart(text=str(block.get("thinking") or ""),
                                           signature=block.get("signature") or None, origin=origin, id=item_id))
        return parts
    reasoning = raw.get("reasoning_content")
    if reasoning is None:
        reasoning = raw.get("reasoning")
    return [ReasoningPart(text=reasoning)] if isinstance(reasoning, str) and reasoning else []


def _signature(call: dict[str, Any]) -> str | None:
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) and signature else None


def parse_message(raw: Any, i: int) -> Message:
    where = f"messages[{i}]"
    if not isinstance(raw, dict):
        raise bad(f"'{where}' must be an object with 'role' and 'content'", where)
    role = raw.get("role")
    if role not in ROLES:
        raise bad(f"'{where}.role' must be one of {', '.join(ROLES)}; got {role!r}", f"{where}.role")
    content: list[Part] = []
    if role == "assistant":
        content.extend(_reasoning_parts(raw, where))
    content.extend(_parts(raw.get("content"), f"{where}.content", role))
    message = Message(role=role, content=content, name=string(raw, "name", f"{where}.name"))
    if role == "assistant":
        calls = raw.get("tool_calls") or []
        if not isinstance(calls, list):
            raise bad(f"'{where}.tool_calls' must be an array", f"{where}.tool_calls")
        for j, call in enumerate(calls):
            at = f"{where}.tool_calls[{j}]"
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise bad(f"'{at}' must be {{id, type: 'function', function: {{name, arguments}}}}", at)
            arguments = function.get("arguments", "")
            if not isinstance(arguments, str):
                raise bad(f"'{at}.function.arguments' must be a JSON string", f"{at}.function.arguments")
            signature = _signature(call)
            message.content.append(ToolCallPart(id=str(call.get("id") or f"call_{i}_{j}"),
                                                name=function["name"], arguments=arguments, signature=signature,
                                                origin="gemini" if signature else None))
        if raw.get("content") is None and not calls and "content" not in raw:
            raise bad(f"'{where}.content' is required unless 'tool_calls' is given", f"{where}.content")
    elif "content" not in raw:
        raise bad(f"'{where}.content' is required", f"{where}.content")
    if role == "tool":
        tool_call_id = raw.get("tool_call_id")
        if not isinstance(tool_call_id, str) or not tool_call_id:
            raise bad(f"'{where}.tool_call_id' is required: the id of the tool call this answers",
                       f"{where}.tool_call_id")
        message.tool_call_id = tool_call_id
    return message


def _tools(raw: Any) -> list[Tool]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad("'tools' must be an array of {type: 'function', function: {...}}", "tools")
    tools = []
    for i, tool in enumerate(raw):
        at = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise bad(f"'{at}.type' must be 'function'", f"{at}.type")
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad(f"'{at}.function.name' is required", f"{at}.function.name")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise bad(f"'{at}.function.parameters' must be a JSON Schema object", f"{at}.function.parameters")
        tools.append(Tool(name=function["name"], description=function.get("description"),
                          parameters=parameters, strict=function.get("strict")))
    return tools


def _tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        return ToolChoice(mode=raw)
    if isinstance(raw, dict) and isinstance(raw.get("function"), dict) and raw["function"].get("name"):
        return ToolChoice(mode="named", name=str(raw["function"]["name"]))
    raise bad("'tool_choice' must be 'none', 'auto', 'required' or "
               "{type: 'function', function: {name}}", "tool_choice")


def _response_format(raw: Any) -> ResponseFormat | None:
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind in ("text", "json_object"):
        return ResponseFormat(type=kind)
    if kind == "json_schema":
        spec = raw.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise bad("'response_format.json_schema' must be {name, schema, strict?}",
                       "response_format.json_schema")
        return ResponseFormat(type="json_schema", name=spec["name"], schema=spec.get("schema"),
                              strict=spec.get("strict"), description=spec.get("description"))
    raise bad("'response_format.type' must be 'text', 'json_object' or 'json_schema'", "response_format")


def parse_chat_request(body: Any) -> ChatRequest:
    model = model_of(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' is required and must be a non-empty array",
                             param="messages", code="missing_required_parameter")
    stop = body.get("stop")
    if isinstance(stop, str):
        stops = [stop]
    elif stop is None:
        stops = []
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = list(stop)
    else:
        raise bad("'stop' must be a string or an array of strings", "stop")
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise bad("'stream_options' must be an object such as {\"include_usage\": true}", "stream_options")
    max_tokens = integer(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = integer(body, "max_tokens", 1)
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise bad("'metadata' must be an object of string values", "metadata")
    fields = {k: v for k, v in body.items() if k not in CHAT_FIELDS}
    return ChatRequest(
        model=model,
        messages=[parse_message(m, i) for i, m in enumerate(messages)],
        stream=bool(boolean(body, "stream")),
        max_tokens=max_tokens,
        temperature=number(body, "temperature", 0, 2),
        top_p=number(body, "top_p", 0, 1),
        stop=stops,
        seed=integer(body, "seed"),
        n=integer(body, "n", 1),
        presence_penalty=number(body, "presence_penalty", -2, 2),
        frequency_penalty=number(body, "frequency_penalty", -2, 2),
        tools=_tools(body.get("tools")),
        tool_choice=_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=boolean(body, "parallel_tool_calls"),
        response_format=_response_format(body.get("response_format")),
        reasoning_effort=string(body, "reasoning_effort"),
        include_usage=bool(stream_options and stream_options.get("include_usage")),
        user=string(body, "user"),
        metadata=metadata,
        passthrough=OpenAIPassthrough(fields=fields) if fields else None,
    )


def parse_embedding_request(body: Any) -> EmbeddingRequest:
    if not isinstance(body, dict):
        raise bad("The request body must be a JSON object.", "body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required: the name of an embedding deployment",
                             param="model", code="missing_required_parameter")
    raw = body.get("input")
    inputs: list[str] | list[list[int]]
    if isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        inputs = list(raw)
    elif isinstance(raw, list) and raw and all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
        inputs = [list(raw)]
    elif (isinstance(raw, list) and raw
          and all(isinstance(x, list) and all(isinstance(t, int) for t in x) for x in raw)):
        inputs = [list(x) for x in raw]
    else:
        raise InvalidRequest("'input' is required: a string, an array of strings, or token arrays",
                             param="input", code="invalid_value")
    encoding: Literal["float", "base64"]
    raw_encoding = body.get("encoding_format") or "float"
    if raw_encoding == "float":
        encoding = "float"
    elif raw_encoding == "base64":
        encoding = "base64"
    else:
        raise bad("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    known = {"model", "input", "encoding_format", "dimensions", "user"}
    fields = {k: v for k, v in body.items() if k not in known}
    return EmbeddingRequest(
        model=model, input=inputs, encoding_format=encoding,
        dimensions=integer(body, "dimensions", 1), user=string(body, "user"),
        passthrough=OpenAIPassthrough(fields=fields) if fields else None,
    )

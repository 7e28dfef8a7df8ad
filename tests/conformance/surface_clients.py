"""One client per wire format the gateway speaks, for the cross-format matrix.

Each client sends a scenario in its own format (Chat Completions, Responses, Messages) over HTTP, reads
the answer whole or streamed, and reduces it to an ``Answer`` the scenarios compare across formats. It
keeps the conversation as that format's client would: the assistant turn is sent back as it came
(opaque reasoning state included), and ``to_history`` turns another format's answer into this one's
history entries, as a client that switches format between turns does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import orjson

WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CLOCK = {"name": "get_time", "description": "Time in a zone",
         "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}


@dataclass
class ToolUse:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class Reasoning:
    """One reasoning block as the format showed it: its text and its opaque state (a signature or
    sealed content; "" where the format or the model has none)."""

    text: str
    opaque: str


@dataclass
class Answer:
    text: str = ""
    calls: list[ToolUse] = field(default_factory=list)
    reasoning: list[Reasoning] = field(default_factory=list)
    finish: str = ""  # "stop" | "tool_calls" | "length", in every format's words mapped to these
    input_tokens: int = 0
    output_tokens: int = 0
    error: dict[str, Any] | None = None  # a stream that ended in an error: the format's error object
    completed: bool = False  # the stream ended the format's clean way
    events: int = 0  # frames of a stream
    history: list[dict[str, Any]] = field(default_factory=list)  # the assistant turn, to send back


@dataclass
class Ask:
    """What a scenario asks: the same in every format."""

    text: str = "Tell me about the sea"
    tools: list[dict[str, Any]] = field(default_factory=list)
    schema: dict[str, Any] | None = None
    reasoning: bool = False
    max_tokens: int = 2000


class SurfaceClient(Protocol):
    name: str

    def user(self, text: str) -> list[dict[str, Any]]: ...

    def tool_results(self, answer: Answer, result: str) -> list[dict[str, Any]]: ...

    def send(self, http: httpx.Client, deployment: str, history: list[dict[str, Any]], ask: Ask,
             *, stream: bool) -> httpx.Response | Answer: ...

    def to_history(self, answer: Answer, source: str) -> list[dict[str, Any]]: ...


def sse(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event name, parsed data) of each frame; the name is "" where the format names none."""
    event = ""
    for line in lines:
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()
            yield event, (data if data == "[DONE]" else orjson.loads(data))
            event = ""


class Client:
    """What every format's client shares: sending, whole or streamed, to the format's ``path``; a
    refusal comes back as the HTTP response, an answer as an ``Answer``."""

    path: str

    def body(self, deployment: str, history: list[dict[str, Any]], ask: Ask, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def whole(self, data: dict[str, Any]) -> Answer:
        raise NotImplementedError

    def streamed(self, lines: Iterator[str]) -> Answer:
        raise NotImplementedError

    def send(self, http: httpx.Client, deployment: str, history: list[dict[str, Any]], ask: Ask,
             *, stream: bool) -> httpx.Response | Answer:
        body = self.body(deployment, history, ask, stream)
        if not stream:
            response = http.post(self.path, json=body)
            return response if response.status_code != 200 else self.whole(response.json())
        with http.stream("POST", self.path, json=body) as response:
            if response.status_code != 200:
                response.read()
                return response
            return self.streamed(response.iter_lines())


class Chat(Client):
    name = "chat"

    def user(self, text: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": text}]

    def tool_results(self, answer: Answer, result: str) -> list[dict[str, Any]]:
        return [{"role": "tool", "tool_call_id": c.id, "content": f"{result} ({c.name})"} for c in answer.calls]

    def body(self, deployment: str, history: list[dict[str, Any]], ask: Ask, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": deployment, "messages": history, "max_tokens": ask.max_tokens}
        if ask.tools:
            body["tools"] = [{"type": "function", "function": t} for t in ask.tools]
        if ask.schema:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "person", "schema": ask.schema, "strict": True}}
        if ask.reasoning:
            body["reasoning_effort"] = "low"
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        return body

    path = "/v1/chat/completions"

    def whole(self, data: dict[str, Any]) -> Answer:
        choice = data["choices"][0]
        message = choice["message"]
        answer = Answer(text=message.get("content") or "", finish=choice["finish_reason"],
                        input_tokens=data["usage"]["prompt_tokens"], output_tokens=data["usage"]["completion_tokens"])
        answer.calls = [ToolUse(c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"]))
                        for c in message.get("tool_calls") or []]
        blocks = message.get("thinking_blocks") or []
        answer.reasoning = [Reasoning(b.get("thinking", ""), b.get("signature") or b.get("data") or "")
                            for b in blocks]
        if not blocks and message.get("reasoning_content"):
            answer.reasoning = [Reasoning(message["reasoning_content"], "")]
        answer.history = [{k: v for k, v in message.items() if v is not None}]
        answer.completed = True
        return answer

    def streamed(self, lines: Iterator[str]) -> Answer:
        answer = Answer()
        arguments: dict[int, str] = {}
        reasoning_text = ""
        for _, data in sse(lines):
            answer.events += 1
            if data == "[DONE]":
                answer.completed = answer.error is None
                continue
            if "error" in data:
                answer.error = data["error"]
                continue
            if data.get("usage"):
                answer.input_tokens = data["usage"]["prompt_tokens"]
                answer.output_tokens = data["usage"]["completion_tokens"]
            for choice in data.get("choices") or []:
                delta = choice.get("delta") or {}
                answer.text += delta.get("content") or ""
                reasoning_text += delta.get("reasoning_content") or ""
                for block in delta.get("thinking_blocks") or []:
                    answer.reasoning.append(Reasoning(block.get("thinking", ""), block.get("signature") or ""))
                for call in delta.get("tool_calls") or []:
                    if call.get("id"):
                        answer.calls.append(ToolUse(call["id"], call["function"]["name"], {}))
                    arguments[call["index"]] = arguments.get(call["index"], "") + call["function"].get("arguments", "")
                if choice.get("finish_reason"):
                    answer.finish = choice["finish_reason"]
        for index, call in enumerate(answer.calls):
            call.arguments = orjson.loads(arguments[index])
        if reasoning_text and not answer.reasoning:
            answer.reasoning = [Reasoning(reasoning_text, "")]
        return answer

    def to_history(self, answer: Answer, source: str) -> list[dict[str, Any]]:
        """Another format's assistant turn as a Chat Completions client would carry it: reasoning as
        ``thinking_blocks`` with the opaque state in ``signature``."""
        message: dict[str, Any] = {"role": "assistant", "content": answer.text or None}
        if answer.reasoning:
            message["reasoning_content"] = "".join(r.text for r in answer.reasoning)
            message["thinking_blocks"] = [{"type": "thinking", "thinking": r.text, "signature": r.opaque}
                                          for r in answer.reasoning if r.opaque]
        if answer.calls:
            message["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                "name": c.name, "arguments": orjson.dumps(c.arguments).decode()}} for c in answer.calls]
        return [message]


class Messages(Client):
    name = "messages"

    def user(self, text: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": text}]

    def tool_results(self, answer: Answer, result: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": c.id,
                                              "content": f"{result} ({c.name})"} for c in answer.calls]}]

    def body(self, deployment: str, history: list[dict[str, Any]], ask: Ask, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": deployment, "messages": history, "max_tokens": ask.max_tokens}
        if ask.tools:
            body["tools"] = [{"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
                             for t in ask.tools]
        if ask.schema:
            body["output_config"] = {"format": {"type": "json_schema", "schema": ask.schema}}
        if ask.reasoning:
            body["thinking"] = {"type": "enabled", "budget_tokens": 1024}
        if stream:
            body["stream"] = True
        return body

    path = "/v1/messages"

    def whole(self, data: dict[str, Any]) -> Answer:
        answer = Answer(finish=_ANTHROPIC_FINISH.get(data["stop_reason"], data["stop_reason"]),
                        input_tokens=data["usage"]["input_tokens"], output_tokens=data["usage"]["output_tokens"])
        self._blocks(answer, data["content"])
        answer.history = [{"role": "assistant", "content": data["content"]}]
        answer.completed = True
        return answer

    @staticmethod
    def _blocks(answer: Answer, blocks: list[dict[str, Any]]) -> None:
        for block in blocks:
            if block["type"] == "text":
                answer.text += block["text"]
            elif block["type"] == "tool_use":
                answer.calls.append(ToolUse(block["id"], block["name"], block["input"]))
            elif block["type"] == "thinking":
                answer.reasoning.append(Reasoning(block["thinking"], block["signature"]))
            elif block["type"] == "redacted_thinking":
                answer.reasoning.append(Reasoning("", block["data"]))

    def streamed(self, lines: Iterator[str]) -> Answer:
        answer = Answer()
        blocks: dict[int, dict[str, Any]] = {}
        partial: dict[int, str] = {}
        for event, data in sse(lines):
            answer.events += 1
            if event == "message_start":
                answer.input_tokens = data["message"]["usage"]["input_tokens"]
            elif event == "content_block_start":
                blocks[data["index"]] = dict(data["content_block"])
            elif event == "content_block_delta":
                block, delta = blocks[data["index"]], data["delta"]
                if delta["type"] == "text_delta":
                    block["text"] += delta["text"]
                elif delta["type"] == "input_json_delta":
                    partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
                elif delta["type"] == "thinking_delta":
                    block["thinking"] += delta["thinking"]
                elif delta["type"] == "signature_delta":
                    block["signature"] = block.get("signature", "") + delta["signature"]
            elif event == "message_delta":
                answer.finish = _ANTHROPIC_FINISH.get(data["delta"]["stop_reason"], data["delta"]["stop_reason"])
                answer.output_tokens = data["usage"]["output_tokens"]
                # message_start carries an estimate where the upstream reports usage only at the end.
                answer.input_tokens = data["usage"].get("input_tokens", answer.input_tokens)
            elif event == "message_stop":
                answer.completed = answer.error is None
            elif event == "error":
                answer.error = data["error"]
        for index, text in partial.items():
            blocks[index]["input"] = orjson.loads(text)
        self._blocks(answer, [blocks[i] for i in sorted(blocks)])
        return answer

    def to_history(self, answer: Answer, source: str) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = [{"type": "thinking", "thinking": r.text, "signature": r.opaque}
                                         for r in answer.reasoning if r.opaque]
        if answer.text:
            content.append({"type": "text", "text": answer.text})
        content += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in answer.calls]
        return [{"role": "assistant", "content": content}]


_ANTHROPIC_FINISH = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length", "stop_sequence": "stop"}


class Responses(Client):
    name = "responses"

    def user(self, text: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": text}]

    def tool_results(self, answer: Answer, result: str) -> list[dict[str, Any]]:
        return [{"type": "function_call_output", "call_id": c.id, "output": f"{result} ({c.name})"}
                for c in answer.calls]

    def body(self, deployment: str, history: list[dict[str, Any]], ask: Ask, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": deployment, "input": history, "max_output_tokens": ask.max_tokens,
                                "store": False, "include": ["reasoning.encrypted_content"]}
        if ask.tools:
            body["tools"] = [{"type": "function", **t} for t in ask.tools]
        if ask.schema:
            body["text"] = {"format": {"type": "json_schema", "name": "person", "schema": ask.schema, "strict": True}}
        if ask.reasoning:
            body["reasoning"] = {"effort": "low", "summary": "auto"}
        if stream:
            body["stream"] = True
        return body

    path = "/v1/responses"

    def whole(self, data: dict[str, Any]) -> Answer:
        answer = Answer(input_tokens=data["usage"]["input_tokens"], output_tokens=data["usage"]["output_tokens"])
        for item in data["output"]:
            if item["type"] == "message":
                answer.text += "".join(p["text"] for p in item["content"] if p["type"] == "output_text")
            elif item["type"] == "function_call":
                answer.calls.append(ToolUse(item["call_id"], item["name"], orjson.loads(item["arguments"])))
            elif item["type"] == "reasoning":
                text = "".join(s["text"] for s in item.get("summary") or [])
                text += "".join(c["text"] for c in item.get("content") or [])
                answer.reasoning.append(Reasoning(text, item.get("encrypted_content") or ""))
        if data["status"] == "incomplete":
            answer.finish = "length"
        else:
            answer.finish = "tool_calls" if answer.calls else "stop"
        answer.history = list(data["output"])
        answer.completed = data["status"] in ("completed", "incomplete")
        return answer

    def streamed(self, lines: Iterator[str]) -> Answer:
        answer = Answer()
        final: dict[str, Any] | None = None
        numbers: list[int] = []
        for event, data in sse(lines):
            answer.events += 1
            numbers.append(data.get("sequence_number", -1))
            assert event == data["type"], f"the SSE event name {event!r} is not the event's type {data['type']!r}"
            if event in ("response.completed", "response.incomplete"):
                final = data["response"]
            elif event == "response.failed":
                answer.error = data["response"].get("error") or {}
            elif event == "error":
                answer.error = data
        assert numbers == list(range(len(numbers))), f"sequence numbers out of order: {numbers}"
        if final is not None:
            whole = self.whole(final)
            whole.events, whole.error = answer.events, answer.error
            return whole
        return answer

    def to_history(self, answer: Answer, source: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": r.text}], "encrypted_content": r.opaque}
            for r in answer.reasoning if r.opaque]
        if answer.text:
            items.append({"role": "assistant", "content": answer.text})
        items += [{"type": "function_call", "call_id": c.id, "name": c.name,
                   "arguments": orjson.dumps(c.arguments).decode()} for c in answer.calls]
        return items


SURFACES: dict[str, SurfaceClient] = {c.name: c for c in (Chat(), Responses(), Messages())}

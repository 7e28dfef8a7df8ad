"""Translation to and from OpenAI's Responses API (``openai_responses_wire``): request bodies checked
against the spec's ``CreateResponse``, answers decoded from the fixtures and from spec-shaped events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelgate.catalog.facts import ModelFacts
from modelgate.http.sse import iter_sse
from modelgate.providers.openai_responses_wire import (
    ResponseDecoder,
    events_from_response,
    fit_call_id,
    request_headers,
    request_to_responses,
)
from modelgate.schema.errors import InvalidRequest, UpstreamError
from modelgate.schema.events import ChatResult, Event, Finish, ReasoningDelta, fold_events
from modelgate.schema.request import (
    AnthropicPassthrough,
    ChatRequest,
    ImagePart,
    Message,
    OpenAIPassthrough,
    ReasoningPart,
    ResponseFormat,
    ResponsesPassthrough,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
)
from tests.openai_spec import OpenAISpec
from tests.providers.responses_spec import check

FIXTURES = Path(__file__).parents[1] / "fixtures" / "openai"
WEATHER = Tool(name="get_weather", description="Weather for a city",
               parameters={"type": "object", "properties": {"city": {"type": "string"}}})
IMAGE = "data:image/png;base64,iVBORw0KGgo="


def ask(*messages: Message, **fields: Any) -> ChatRequest:
    return ChatRequest(model="dep", messages=list(messages) or [Message("user", [TextPart("hi")])], **fields)


def body_of(request: ChatRequest, spec: OpenAISpec, params: dict[str, Any] | None = None,
            facts: ModelFacts | None = None) -> dict[str, Any]:
    body = request_to_responses(request, "o4-mini", params or {}, facts)
    check(spec, "CreateResponse", body)
    return body


# --- canonical request → body --------------------------------------------------------------------


def test_a_whole_conversation_becomes_input_items(openai_spec: OpenAISpec) -> None:
    conversation = [
        Message("system", [TextPart("Be brief.")]),
        Message("developer", [TextPart("Use metric units.")]),
        Message("user", [TextPart("Weather in Oslo?"), ImagePart(IMAGE, detail="low")]),
        Message("assistant", [
            ReasoningPart(text="They want Oslo.", signature="enc-1", origin="openai", id="rs_1"),
            ReasoningPart(text="Claude's thought", signature="sig", origin="anthropic"),
            ReasoningPart(text="raw reasoning of an open model"),
            TextPart("Checking."),
            ToolCallPart(id="call_1", name="get_weather", arguments='{"city":"Oslo"}'),
        ]),
        Message("tool", [TextPart("Sunny")], tool_call_id="call_1"),
        Message("system", [TextPart("Now answer.")]),
    ]
    body = body_of(ask(*conversation), openai_spec)
    assert body["instructions"] == "Be brief.\n\nUse metric units."
    assert body["input"] == [
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Weather in Oslo?"},
            {"type": "input_image", "image_url": IMAGE, "detail": "low"}]},
        # Only OpenAI's own reasoning goes back, whole: its rs_ id, summary and encrypted content.
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "They want Oslo."}],
         "encrypted_content": "enc-1"},
        {"type": "message", "role": "assistant", "content": "Checking."},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"},
        {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Now answer."}]},
    ]
    # The gateway keeps the state: nothing is stored upstream, reasoning comes back encrypted.
    assert (body["store"], body["include"]) == (False, ["reasoning.encrypted_content"])
    assert "stream" not in body


def test_openai_reasoning_without_its_id_or_encrypted_content_is_not_sent(openai_spec: OpenAISpec) -> None:
    turn = Message("assistant", [ReasoningPart(text="no id", signature="enc", origin="openai"),
                                 ReasoningPart(text="no content", origin="openai", id="rs_2"),
                                 TextPart("Hello.")])
    body = body_of(ask(Message("user", [TextPart("hi")]), turn), openai_spec)
    assert [item["type"] for item in body["input"]] == ["message", "message"]


def test_a_tool_result_with_images_is_a_list_of_parts(openai_spec: OpenAISpec) -> None:
    body = body_of(ask(
        Message("user", [TextPart("screenshot?")]),
        Message("assistant", [ToolCallPart(id="c1", name="shot", arguments="{}")]),
        Message("tool", [TextPart("here"), ImagePart(IMAGE)], tool_call_id="c1"),
    ), openai_spec)
    assert body["input"][-1] == {"type": "function_call_output", "call_id": "c1", "output": [
        {"type": "input_text", "text": "here"}, {"type": "input_image", "image_url": IMAGE, "detail": "auto"}]}


def test_long_call_ids_are_fitted_alike_in_call_and_output(openai_spec: OpenAISpec) -> None:
    long_id = "functions.lookup:" + "x" * 80
    body = body_of(ask(
        Message("user", [TextPart("go")]),
        Message("assistant", [ToolCallPart(id=long_id, name="lookup", arguments="{}")]),
        Message("tool", [TextPart("done")], tool_call_id=long_id),
    ), openai_spec)
    call, output = body["input"][1], body["input"][2]
    assert call["call_id"] == output["call_id"] == fit_call_id(long_id)
    assert len(call["call_id"]) <= 64
    assert fit_call_id("call_short") == "call_short"


def test_tools_are_flat_and_not_strict_unless_they_say(openai_spec: OpenAISpec) -> None:
    bare = Tool(name="ping")
    strict = Tool(name="lookup", parameters={"type": "object", "properties": {}, "additionalProperties": False},
                  strict=True)
    request = ask(tools=[WEATHER, bare, strict], tool_choice=ToolChoice("named", "get_weather"),
                  parallel_tool_calls=False)
    body = body_of(request, openai_spec)
    assert body["tools"] == [
        {"type": "function", "name": "get_weather", "description": "Weather for a city",
         "parameters": WEATHER.parameters, "strict": False},
        {"type": "function", "name": "ping", "parameters": {"type": "object", "properties": {}}, "strict": False},
        {"type": "function", "name": "lookup", "parameters": strict.parameters, "strict": True},
    ]
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert body["parallel_tool_calls"] is False
    assert body_of(ask(tools=[WEATHER], tool_choice=ToolChoice("required")), openai_spec)["tool_choice"] == "required"


def test_built_in_tools_ride_beside_the_function_tools(openai_spec: OpenAISpec) -> None:
    web = {"type": "web_search", "search_context_size": "low"}
    files = {"type": "file_search", "vector_store_ids": ["vs_1"]}
    request = ask(tools=[WEATHER], passthrough=ResponsesPassthrough(tools=[web, files]))
    assert body_of(request, openai_spec)["tools"][1:] == [web, files]


def test_response_format_becomes_text_format(openai_spec: OpenAISpec) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
              "additionalProperties": False}
    fmt = ResponseFormat("json_schema", name="answer", schema=schema, strict=True, description="The answer")
    assert body_of(ask(response_format=fmt), openai_spec)["text"] == {"format": {
        "type": "json_schema", "name": "answer", "schema": schema, "strict": True, "description": "The answer"}}
    assert body_of(ask(response_format=ResponseFormat("json_object")), openai_spec)["text"] == {
        "format": {"type": "json_object"}}


def test_sampling_limits_and_identity(openai_spec: OpenAISpec) -> None:
    request = ask(temperature=0.2, top_p=0.9, max_tokens=500, user="u-1", metadata={"team": "a"}, stream=True,
                  seed=7, presence_penalty=0.5)
    body = body_of(request, openai_spec, facts=ModelFacts(max_output_tokens=300))
    assert {k: body[k] for k in ("temperature", "top_p", "max_output_tokens", "user", "metadata", "stream")} == {
        "temperature": 0.2, "top_p": 0.9, "max_output_tokens": 300, "user": "u-1", "metadata": {"team": "a"},
        "stream": True}
    # No slot in the Responses API: sampling hints are left out.
    assert "seed" not in body and "presence_penalty" not in body
    # The API refuses fewer than 16 output tokens; a one-token ping gets 16.
    assert body_of(ask(max_tokens=1), openai_spec)["max_output_tokens"] == 16


def test_reasoning_effort_asks_for_a_summary(openai_spec: OpenAISpec) -> None:
    assert body_of(ask(reasoning_effort="high"), openai_spec)["reasoning"] == {"effort": "high", "summary": "auto"}
    assert body_of(ask(reasoning_effort="none"), openai_spec)["reasoning"] == {"effort": "none"}
    assert "reasoning" not in body_of(ask(), openai_spec)
    # A thinking budget (Anthropic's budget_tokens) becomes an effort for a model that reasons.
    reasoner = ModelFacts(capabilities=("chat", "reasoning"))
    assert body_of(ask(reasoning_budget=1024), openai_spec, facts=reasoner)["reasoning"]["effort"] == "low"
    assert "reasoning" not in body_of(ask(reasoning_budget=1024), openai_spec, facts=ModelFacts())


def test_a_responses_pass_through_adds_its_fields_but_not_upstream_state(openai_spec: OpenAISpec) -> None:
    passthrough = ResponsesPassthrough(
        fields={"truncation": "auto", "service_tier": "flex", "prompt_cache_key": "k1", "max_tool_calls": 3,
                "include": ["message.output_text.logprobs", "reasoning.encrypted_content"],
                "text": {"verbosity": "low"}, "reasoning": {"summary": "detailed"},
                "store": True, "previous_response_id": "resp_1", "background": True, "conversation": "conv_1",
                "instructions": "not from here", "model": "other"},
        headers={"OpenAI-Beta": "responses=v1"})
    request = ask(Message("system", [TextPart("Be brief.")]), Message("user", [TextPart("hi")]),
                  reasoning_effort="low", response_format=ResponseFormat("json_object"), passthrough=passthrough)
    body = body_of(request, openai_spec)
    assert {k: body[k] for k in ("truncation", "service_tier", "prompt_cache_key", "max_tool_calls")} == {
        "truncation": "auto", "service_tier": "flex", "prompt_cache_key": "k1", "max_tool_calls": 3}
    assert body["include"] == ["reasoning.encrypted_content", "message.output_text.logprobs"]
    assert body["text"] == {"verbosity": "low", "format": {"type": "json_object"}}
    assert body["reasoning"] == {"summary": "detailed", "effort": "low"}
    # State stays with the gateway, and the translation's own fields win.
    assert (body["store"], body["model"], body["instructions"]) == (False, "o4-mini", "Be brief.")
    assert not {"previous_response_id", "background", "conversation"} & set(body)
    assert request_headers(request) == {"OpenAI-Beta": "responses=v1"}


def test_chat_pass_through_fields_that_mean_the_same_are_kept(openai_spec: OpenAISpec) -> None:
    passthrough = OpenAIPassthrough(
        fields={"service_tier": "priority", "prompt_cache_key": "k", "safety_identifier": "u-hash",
                "verbosity": "high", "logit_bias": {"50256": -100}, "web_search_options": {}},
        headers={"x-trace": "1"})
    body = body_of(ask(passthrough=passthrough), openai_spec)
    assert (body["service_tier"], body["prompt_cache_key"], body["safety_identifier"]) == ("priority", "k", "u-hash")
    assert body["text"] == {"verbosity": "high"}
    assert "logit_bias" not in body and "web_search_options" not in body  # chat completions only
    assert request_headers(ask(passthrough=passthrough)) == {"x-trace": "1"}
    assert request_headers(ask(passthrough=AnthropicPassthrough(headers={"anthropic-beta": "x"}))) == {}


def test_deployment_params_are_merged_last(openai_spec: OpenAISpec) -> None:
    body = body_of(ask(reasoning_effort="low"), openai_spec,
                   params={"reasoning": {"effort": "high"}, "service_tier": "flex"})
    assert (body["reasoning"], body["service_tier"]) == ({"effort": "high"}, "flex")


@pytest.mark.parametrize(("fields", "param"), [({"n": 2}, "n"), ({"stop": ["END"]}, "stop")])
def test_what_the_responses_api_cannot_do_is_refused(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        request_to_responses(ask(**fields), "o4-mini", {})
    assert caught.value.param == param and "Responses API" in caught.value.message


# --- answers → canonical events ------------------------------------------------------------------


async def _chunks(raw: bytes) -> AsyncIterator[bytes]:
    for line in raw.splitlines(keepends=True):
        yield line


def decode_stream(raw: bytes) -> tuple[list[Event], bool]:
    async def run() -> tuple[list[Event], bool]:
        decoder = ResponseDecoder("up")
        events: list[Event] = []
        async for sse in iter_sse(_chunks(raw)):
            data = orjson.loads(sse.data)
            assert data["type"] == sse.event  # both carry the event's type
            events += decoder.decode(data["type"], data)
        return events, decoder.done

    return asyncio.run(run())


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps({**e, "sequence_number": n})
                    + b"\n\n" for n, e in enumerate(events))


def test_a_streamed_reasoning_turn_with_parallel_calls(openai_spec: OpenAISpec) -> None:
    raw = (FIXTURES / "responses_stream_reasoning_tool_calls.sse").read_bytes()
    events, done = decode_stream(raw)
    result = fold_events(events)
    assert done and (result.model, result.response_id) == ("o4-mini-2025-04-16",
                                                           "resp_6824c4a5f0b08191a3d2c1e0b7f6e5d40f1a2b3c4d5e6f70")
    [choice] = result.choices
    [block] = choice.reasoning
    assert block.text == "The user wants the weather in Paris and London.\n\nI will call get_weather twice."
    assert (block.origin, block.id) == ("openai", "rs_6824c4a6a5d88191b9e1f0a7c3d2e1f00a1b2c3d4e5f6a7b")
    assert block.signature and block.signature.startswith("gAAAAAB")
    assert [(c.id, c.name, orjson.loads(c.arguments), c.origin) for c in choice.tool_calls] == [
        ("call_Xp7bQ2mN8kLw3rTz5vYc1dFh", "get_weather", {"city": "Paris"}, "openai"),
        ("call_Gt4hJ9sK2pQw6eRn8mZa3bVx", "get_weather", {"city": "London"}, "openai")]
    assert choice.finish_reason == "tool_calls"
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.reasoning_tokens) == (84, 142, 128)


def test_a_whole_response_with_reasoning_and_text(openai_spec: OpenAISpec) -> None:
    body = orjson.loads((FIXTURES / "responses_reasoning_text.json").read_bytes())
    check(openai_spec, "Response", body)
    result = fold_events(events_from_response(body, "up"))
    [choice] = result.choices
    assert (choice.reasoning_text, choice.text, choice.finish_reason) == (
        "Paris is the capital of France.", "The capital of France is Paris.", "stop")
    assert choice.reasoning[0].id == body["output"][0]["id"]
    assert choice.reasoning[0].signature == body["output"][0]["encrypted_content"]
    assert result.usage is not None and (result.usage.input_tokens, result.usage.output_tokens) == (23, 96)


@pytest.mark.parametrize("name", ["responses_stream_reasoning_tool_calls.sse", "responses_stream_failed.sse"])
def test_the_fixture_streams_are_spec_events(name: str, openai_spec: OpenAISpec) -> None:
    for line in (FIXTURES / name).read_bytes().splitlines():
        if line.startswith(b"data: "):
            check(openai_spec, "ResponseStreamEvent", orjson.loads(line[6:]))


def test_a_failed_response_mid_stream_is_an_error_never_a_finish() -> None:
    raw = (FIXTURES / "responses_stream_failed.sse").read_bytes()
    decoder = ResponseDecoder("up")
    seen: list[Event] = []
    with pytest.raises(UpstreamError) as caught:
        for line in raw.splitlines():
            if line.startswith(b"data: "):
                data = orjson.loads(line[6:])
                seen += decoder.decode(data["type"], data)
    assert fold_events(seen).choices[0].text == "Once upon"
    assert not any(isinstance(e, Finish) for e in seen)
    error = caught.value
    assert (error.status, error.code, error.provider, error.retryable) == (502, "server_error", "up", True)
    assert "The server had an error processing your request" in error.message


@pytest.mark.parametrize(("code", "status"), [("rate_limit_exceeded", 429), ("server_error", 502),
                                              ("invalid_prompt", 502)])
def test_an_error_event_keeps_its_code(code: str, status: int) -> None:
    with pytest.raises(UpstreamError) as caught:
        ResponseDecoder("up").decode("error", {"type": "error", "code": code, "message": "no", "param": None,
                                               "sequence_number": 3})
    assert (caught.value.status, caught.value.code) == (status, code)


def _response(status: str, output: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "model": "gpt-5", "status": status, "output": output, **extra}


@pytest.mark.parametrize(("details", "finish"), [({"reason": "max_output_tokens"}, "length"),
                                                 ({"reason": "content_filter"}, "content_filter")])
def test_an_incomplete_response_says_why(details: dict[str, str], finish: str) -> None:
    message = {"type": "message", "id": "msg_1", "role": "assistant", "status": "incomplete",
               "content": [{"type": "output_text", "text": "Once", "annotations": []}]}
    whole = fold_events(events_from_response(_response("incomplete", [message], incomplete_details=details), "up"))
    assert (whole.choices[0].text, whole.choices[0].finish_reason) == ("Once", finish)
    events, done = decode_stream(sse(
        {"type": "response.created", "response": _response("in_progress", [])},
        {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
         "delta": "Once"},
        {"type": "response.incomplete", "response": _response("incomplete", [message], incomplete_details=details)}))
    assert done and fold_events(events).choices[0].finish_reason == finish


def test_a_failed_whole_response_is_an_error() -> None:
    body = _response("failed", [], error={"code": "rate_limit_exceeded", "message": "slow down"})
    with pytest.raises(UpstreamError) as caught:
        events_from_response(body, "up")
    assert (caught.value.status, caught.value.code) == (429, "rate_limit_exceeded")


def test_a_refusal_is_answer_text() -> None:
    refusal = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
               "content": [{"type": "refusal", "refusal": "I can't help with that."}]}
    assert fold_events(events_from_response(_response("completed", [refusal]), "up")).choices[0].text == (
        "I can't help with that.")
    events, _ = decode_stream(sse({"type": "response.created", "response": _response("in_progress", [])},
                                  {"type": "response.refusal.delta", "item_id": "msg_1", "output_index": 0,
                                   "content_index": 0, "delta": "I can't."}))
    assert fold_events(events).choices[0].text == "I can't."


def test_text_that_arrives_only_with_finished_items_is_not_lost() -> None:
    """Some servers send a reasoning item's text and a call's arguments only in ``output_item.done``."""
    reasoning = {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Think."}],
                 "encrypted_content": "enc"}
    call = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f", "arguments": '{"a":1}'}
    events, _ = decode_stream(sse(
        {"type": "response.created", "response": _response("in_progress", [])},
        {"type": "response.output_item.added", "output_index": 0, "item": {**reasoning, "summary": [],
                                                                           "encrypted_content": None}},
        {"type": "response.output_item.done", "output_index": 0, "item": reasoning},
        {"type": "response.output_item.added", "output_index": 1, "item": {**call, "arguments": ""}},
        {"type": "response.output_item.done", "output_index": 1, "item": call},
        {"type": "response.completed", "response": _response("completed", [reasoning, call])}))
    result: ChatResult = fold_events(events)
    [choice] = result.choices
    assert (choice.reasoning_text, choice.reasoning[0].signature) == ("Think.", "enc")
    assert [(c.id, c.arguments) for c in choice.tool_calls] == [("call_1", '{"a":1}')]
    assert choice.finish_reason == "tool_calls"
    # Once per item: the block opens at output_item.added and the signature closes it.
    assert [e.block_start for e in events if isinstance(e, ReasoningDelta)] == [True, False]


def test_raw_reasoning_text_of_open_models() -> None:
    events, _ = decode_stream(sse(
        {"type": "response.created", "response": _response("in_progress", [])},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"id": "rs_1", "type": "reasoning", "summary": []}},
        {"type": "response.reasoning_text.delta", "item_id": "rs_1", "output_index": 0, "content_index": 0,
         "delta": "Let me think."},
        {"type": "response.output_item.done", "output_index": 0,
         "item": {"id": "rs_1", "type": "reasoning", "summary": [],
                  "content": [{"type": "reasoning_text", "text": "Let me think."}]}}))
    assert fold_events(events).choices[0].reasoning_text == "Let me think."

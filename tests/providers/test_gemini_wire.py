"""Gemini generateContent translation, both ways, on recorded upstream bytes: no network."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.genai import types as genai_types

from modelgate.http.sse import iter_sse
from modelgate.providers.gemini_wire import (
    FOREIGN_CALL_SIGNATURE,
    ResponseDecoder,
    error_from_gemini,
    events_from_response,
    request_to_gemini,
    status_error,
)
from modelgate.schema.errors import InvalidRequest, UpstreamError
from modelgate.schema.events import Event, ReasoningDelta, Start, ToolCallDelta, Usage, fold_events
from modelgate.schema.request import ChatRequest, Message, ReasoningPart, TextPart, ToolCallPart
from modelgate.surfaces.openai_format.parse import parse_chat_request
from modelgate.surfaces.openai_format.render import error_type

FIXTURES = Path(__file__).parents[1] / "fixtures" / "gemini"
PROVIDER = "gemini"


async def _lines(raw: bytes) -> AsyncIterator[bytes]:
    for line in raw.splitlines(keepends=True):
        yield line


def decode_stream(name: str, events: list[Event] | None = None) -> list[Event]:
    """The events of a recorded stream; ``events`` collects them even when decoding raises."""
    out = events if events is not None else []

    async def run() -> None:
        decoder = ResponseDecoder(PROVIDER)
        async for sse in iter_sse(_lines((FIXTURES / name).read_bytes())):
            out.extend(decoder.decode(orjson.loads(sse.data)))
        out.extend(decoder.end())

    asyncio.run(run())
    return out


def body(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def chat(**fields: Any) -> ChatRequest:
    fields.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return parse_chat_request({"model": "gemini", **fields})


def test_fixtures_follow_the_sdk_types() -> None:
    checked = 0
    for path in sorted(FIXTURES.iterdir()):
        if path.suffix == ".sse":
            chunks = [json.loads(frame[6:]) for frame in path.read_bytes().split(b"\r\n\r\n") if frame]
        elif path.name.startswith("response_"):
            chunks = [body(path.name)]
        else:
            continue
        for chunk in chunks:
            if "error" not in chunk:
                # Also checks that thought signatures are valid base64, as the SDK decodes them.
                genai_types.GenerateContentResponse.model_validate(chunk)
                checked += 1
    assert checked >= 10


# --- answers → events ------------------------------------------------------------------------


def test_stream_of_thoughts_then_text_with_a_signature_and_usage() -> None:
    events = decode_stream("stream_thoughts_text.sse")
    assert events[0] == Start(model="gemini-2.5-flash", response_id="p3VaaPO6BJ2mz7IPkfSa4Q4")
    result = fold_events(events)
    choice = result.choices[0]
    thought, signed = choice.reasoning
    assert thought.text == ("**Recalling the capital**\n\nThe user asks for the capital of France."
                            " That is Paris, a well-known fact.")
    assert thought.origin == "gemini" and thought.signature is None
    # The signature on the last answer part rides in a reasoning block of its own.
    assert (signed.text, signed.origin) == ("", "gemini")
    assert signed.signature == "CiQBDH3BPdDnZAWP7tKoRrVZrsr6gWX92yBJuGoiVk5OTDO2frciihO/DKM="
    assert choice.text == "The capital of France is Paris."
    assert (choice.finish_reason, choice.native_reason) == ("stop", "STOP")
    # Only the last chunk's usage counts; thoughts are output in OpenAI's sense.
    assert [e for e in events if isinstance(e, Usage)] == [
        Usage(input_tokens=12, output_tokens=7 + 94, cached_input_tokens=8, reasoning_tokens=94)]


def test_parallel_function_calls_get_ids_and_the_first_signature() -> None:
    events = decode_stream("stream_parallel_function_calls.sse")
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [(c.index, c.id, c.name) for c in calls] == [(0, "call_0", "get_weather"), (1, "call_1", "get_weather")]
    assert calls[0].signature == "CiQBrciPdh2/nulWrgct8Fdd+uc3PafGXn2Cx5lePnQAGV3y47RTLBIITVI="
    assert calls[1].signature is None and {c.origin for c in calls} == {"gemini"}
    choice = fold_events(events).choices[0]
    assert [json.loads(c.arguments) for c in choice.tool_calls] == [{"city": "Paris"}, {"city": "London"}]
    # Gemini says STOP; a turn that calls functions finishes with tool_calls.
    assert (choice.finish_reason, choice.native_reason) == ("tool_calls", "STOP")


def test_whole_response_with_thought_text_and_a_call_id() -> None:
    result = fold_events(events_from_response(body("response_function_call.json"), PROVIDER))
    choice = result.choices[0]
    assert choice.reasoning[0].text == "I should look up the weather before answering."
    assert choice.text == "Checking the weather now."
    [call] = choice.tool_calls
    assert (call.id, call.name, call.origin) == ("fc_8k2m4n6p", "get_weather", "gemini")
    assert json.loads(call.arguments) == {"city": "Paris", "unit": "celsius"}
    assert call.signature == "CiQBvkLzpEWjsHtuPyJfKp4vCGJHZmOCgWn4ZqTcMoNeXakFCX2asYqy5lc="
    assert result.usage == Usage(input_tokens=51, output_tokens=22 + 48, reasoning_tokens=48)


def test_two_candidates_finish_apart() -> None:
    result = fold_events(events_from_response(body("response_two_candidates.json"), PROVIDER))
    assert [(c.index, c.text, c.finish_reason) for c in result.choices] == [
        (0, "Blue.", "stop"), (1, "The sky is usually blue because", "length")]


def test_safety_block_and_blocked_prompt_are_content_filter() -> None:
    safety = fold_events(events_from_response(body("response_safety.json"), PROVIDER)).choices[0]
    assert (safety.text, safety.finish_reason, safety.native_reason) == ("", "content_filter", "SAFETY")
    blocked = fold_events(events_from_response(body("response_prompt_blocked.json"), PROVIDER))
    assert (blocked.choices[0].finish_reason, blocked.choices[0].native_reason) == (
        "content_filter", "PROHIBITED_CONTENT")
    assert blocked.usage == Usage(input_tokens=20)


@pytest.mark.parametrize(("native", "reason"), [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("BLOCKLIST", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"),
    ("IMAGE_SAFETY", "content_filter"), ("MALFORMED_FUNCTION_CALL", "stop"), ("OTHER", "stop"),
])
def test_finish_reasons(native: str, reason: str) -> None:
    chunk = {"candidates": [{"content": {"role": "model", "parts": [{"text": "x"}]}, "finishReason": native}]}
    choice = fold_events(events_from_response(chunk, PROVIDER)).choices[0]
    assert (choice.finish_reason, choice.native_reason) == (reason, native)


def test_error_mid_stream_raises_with_its_code() -> None:
    events: list[Event] = []
    with pytest.raises(UpstreamError) as caught:
        decode_stream("stream_error_mid_stream.sse", events)
    assert fold_events(events).choices[0].text == "Once upon"
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (503, "UNAVAILABLE", True)


def test_a_stream_without_a_finish_reason_is_cut() -> None:
    decoder = ResponseDecoder(PROVIDER)
    decoder.decode({"candidates": [{"content": {"role": "model", "parts": [{"text": "half"}]}}]})
    with pytest.raises(UpstreamError) as caught:
        decoder.end()
    assert (caught.value.status, caught.value.code) == (502, "upstream_stream_cut")


def test_error_bodies_plain_and_list_wrapped() -> None:
    assert error_from_gemini(body("error_quota.json")) == (
        "You exceeded your current quota, please check your plan and billing details.", "RESOURCE_EXHAUSTED", 429)
    message, status, code = error_from_gemini(body("error_list_wrapped.json"))
    assert (status, code) == ("INVALID_ARGUMENT", 400) and message.startswith("Invalid JSON payload")
    error = status_error(PROVIDER, 429, body("error_quota.json"), retry_after=12.0)
    assert (error.status, error.code, error.retry_after, error_type(error)) == (
        429, "RESOURCE_EXHAUSTED", 12.0, "rate_limit_error")


# --- requests → generateContent bodies --------------------------------------------------------


def test_contents_roles_system_and_images() -> None:
    out = request_to_gemini(chat(messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/photo.webp?size=2"}}]},
        {"role": "assistant", "content": "A cat."},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": "And now?"},
        {"role": "user", "content": "Still there?"},
    ]), {})
    assert out["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]}
    assert out["contents"] == [
        {"role": "user", "parts": [
            {"text": "What is this?"},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/photo.webp?size=2"}}]},
        {"role": "model", "parts": [{"text": "A cat."}]},
        {"role": "user", "parts": [{"text": "And now?"}, {"text": "Still there?"}]},
    ]


def test_function_calls_and_responses_keep_names_ids_and_signatures() -> None:
    request = ChatRequest(model="m", messages=[
        Message("user", [TextPart("Weather in Paris and London?")]),
        Message("assistant", [
            ReasoningPart(text="Thinking about cities", origin="gemini"),
            ToolCallPart(id="call_0", name="get_weather", arguments='{"city": "Paris"}', signature="sig-1",
                         origin="gemini"),
            ToolCallPart(id="call_1", name="get_weather", arguments='{"city": "London"}', origin="gemini"),
        ]),
        Message("tool", [TextPart('{"temp": 18}')], tool_call_id="call_0"),
        Message("tool", [TextPart("12C")], tool_call_id="call_1"),
        Message("assistant", [ToolCallPart(id="fc_real", name="get_time", arguments="", origin="gemini")]),
        Message("tool", [TextPart("timeout")], tool_call_id="fc_real", is_error=True),
        Message("assistant", [ToolCallPart(id="toolu_1", name="get_time", arguments="{}", signature="claude-x",
                                           origin="anthropic")]),
        Message("tool", [TextPart("[1, 2]")], tool_call_id="toolu_1"),
    ])
    contents = request_to_gemini(request, {})["contents"]
    assert contents[1] == {"role": "model", "parts": [
        # The thought text is not replayed; the call keeps its signature, generated ids stay home.
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "sig-1"},
        {"functionCall": {"name": "get_weather", "args": {"city": "London"}}},
    ]}
    assert contents[2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"temp": 18}}},
        {"functionResponse": {"name": "get_weather", "response": {"output": "12C"}}},
    ]}
    # An id Gemini gave goes back on the call and its response; errors use the "error" key.
    assert contents[3]["parts"] == [{"functionCall": {"name": "get_time", "args": {}, "id": "fc_real"}}]
    assert contents[4]["parts"] == [
        {"functionResponse": {"name": "get_time", "response": {"error": "timeout"}, "id": "fc_real"}}]
    # Another issuer's signature is dropped for Google's stand-in; a JSON array result is the output.
    assert contents[5]["parts"] == [{"functionCall": {"name": "get_time", "args": {}},
                                     "thoughtSignature": FOREIGN_CALL_SIGNATURE}]
    assert contents[6]["parts"] == [{"functionResponse": {"name": "get_time", "response": {"output": [1, 2]}}}]


def test_calls_of_other_providers_in_the_current_turn_carry_googles_stand_in() -> None:
    """The first call of each step of the current turn needs a signature (Gemini 3 refuses the turn
    without one); a turn another provider made has none that Gemini could check."""
    def step(*parts: ReasoningPart | ToolCallPart) -> list[Message]:
        return [Message("assistant", list(parts)), *[Message("tool", [TextPart("ok")], tool_call_id=p.id)
                                                     for p in parts if isinstance(p, ToolCallPart)]]

    request = ChatRequest(model="m", messages=[
        Message("user", [TextPart("Earlier question")]),
        *step(ToolCallPart(id="toolu_1", name="f", arguments="{}", origin="anthropic")),
        Message("user", [TextPart("Weather and time?")]),
        *step(ToolCallPart(id="toolu_2", name="f", arguments="{}", signature="claude", origin="anthropic"),
              ToolCallPart(id="toolu_3", name="g", arguments="{}", origin="anthropic")),
        # As a Messages or Chat client sends Claude's turn back: its thinking block says who made it.
        *step(ReasoningPart(text="t", signature="claude-sig", origin="anthropic"),
              ToolCallPart(id="toolu_4", name="f", arguments="{}")),
        # Nothing says who made this one: a Gemini call that lost its signature is refused by Gemini.
        *step(ToolCallPart(id="call_9", name="f", arguments="{}")),
        *step(ToolCallPart(id="fc_1", name="f", arguments="{}", signature="gemini-sig", origin="gemini")),
    ])
    signatures = [[p.get("thoughtSignature") for p in content["parts"]]
                  for content in request_to_gemini(request, {})["contents"] if content["role"] == "model"]
    assert signatures == [
        [None],  # an earlier turn's calls are not checked
        [FOREIGN_CALL_SIGNATURE, None],  # parallel calls: the step's first one only
        [FOREIGN_CALL_SIGNATURE],
        [None],
        ["gemini-sig"],  # Gemini's own goes back as issued
    ]


def test_signature_of_an_answer_part_goes_back_on_the_last_text() -> None:
    request = ChatRequest(model="m", messages=[
        Message("user", [TextPart("Capital of France?")]),
        Message("assistant", [ReasoningPart(text="The user asks", origin="gemini"),
                              ReasoningPart(signature="text-sig", origin="gemini"),
                              ReasoningPart(signature="claude-sig", text="t", origin="anthropic"),
                              TextPart("The capital"), TextPart(" is Paris.")]),
        Message("user", [TextPart("And of Italy?")]),
    ])
    assert request_to_gemini(request, {})["contents"][1]["parts"] == [
        {"text": "The capital"}, {"text": " is Paris.", "thoughtSignature": "text-sig"}]


def test_a_request_with_only_a_system_prompt_is_refused_before_sending() -> None:
    with pytest.raises(InvalidRequest, match="at least one user message"):
        request_to_gemini(chat(messages=[{"role": "system", "content": "Only a prompt"}]), {})


def test_tools_and_tool_config() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": False}
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": schema}},
             {"type": "function", "function": {"name": "get_time"}}]
    out = request_to_gemini(chat(tools=tools), {})
    assert out["tools"] == [{"functionDeclarations": [
        {"name": "get_weather", "description": "Weather", "parametersJsonSchema": schema}, {"name": "get_time"}]}]
    assert "toolConfig" not in out
    for choice, config in [("auto", {"mode": "AUTO"}), ("none", {"mode": "NONE"}), ("required", {"mode": "ANY"}),
                           ({"type": "function", "function": {"name": "get_time"}},
                            {"mode": "ANY", "allowedFunctionNames": ["get_time"]})]:
        assert request_to_gemini(chat(tools=tools, tool_choice=choice), {})["toolConfig"] == {
            "functionCallingConfig": config}


def test_generation_config() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    out = request_to_gemini(chat(
        max_completion_tokens=500, stop=["END"], temperature=0.4, top_p=0.9, n=2, seed=7, presence_penalty=0.1,
        frequency_penalty=0.2, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        reasoning_effort="high", user="u", parallel_tool_calls=False), {})
    assert out["generationConfig"] == {
        "maxOutputTokens": 500, "stopSequences": ["END"], "temperature": 0.4, "topP": 0.9, "candidateCount": 2,
        "seed": 7, "presencePenalty": 0.1, "frequencyPenalty": 0.2, "responseMimeType": "application/json",
        "responseJsonSchema": schema, "thinkingConfig": {"thinkingBudget": 24576, "includeThoughts": True}}
    assert set(out) == {"contents", "generationConfig"}
    assert request_to_gemini(chat(response_format={"type": "json_object"}), {})["generationConfig"] == {
        "responseMimeType": "application/json"}
    assert "generationConfig" not in request_to_gemini(chat(), {})


def test_thinking_budget_from_effort_or_budget() -> None:
    assert request_to_gemini(chat(reasoning_effort="none"), {})["generationConfig"] == {
        "thinkingConfig": {"thinkingBudget": 0}}
    assert request_to_gemini(chat(reasoning_effort="low"), {})["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 1024, "includeThoughts": True}
    request = chat(reasoning_effort="low")
    request.reasoning_budget = 3000
    assert request_to_gemini(request, {})["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 3000


@pytest.mark.parametrize(("model", "least"), [
    ("gemini-2.5-flash", {"thinkingBudget": 0}),
    ("gemini-2.5-flash-lite", {"thinkingBudget": 0}),
    ("gemini-2.5-pro", {"thinkingBudget": 128}),  # Pro cannot stop thinking: its smallest budget
    ("models/gemini-3-pro-preview", {"thinkingLevel": "low"}),
    ("gemini-3-flash-preview", {"thinkingLevel": "minimal"}),
    ("gemini-3.5-flash", {"thinkingLevel": "minimal"}),
])
def test_effort_none_asks_for_the_least_thinking_the_model_allows(model: str, least: dict[str, Any]) -> None:
    out = request_to_gemini(chat(reasoning_effort="none"), {}, model)
    assert out["generationConfig"] == {"thinkingConfig": least}


def test_deployment_params_merge_one_level_deep() -> None:
    out = request_to_gemini(chat(temperature=0.5), {
        "generationConfig": {"topK": 40}, "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT",
                                                              "threshold": "BLOCK_NONE"}]})
    assert out["generationConfig"] == {"temperature": 0.5, "topK": 40}
    assert out["safetySettings"][0]["threshold"] == "BLOCK_NONE"


def test_reasoning_deltas_start_one_block_per_thought_run() -> None:
    decoder = ResponseDecoder(PROVIDER)
    events: list[Event] = []
    for part in [{"text": "a", "thought": True}, {"text": "b", "thought": True, "thoughtSignature": "s1"},
                 {"text": "c", "thought": True}, {"text": "answer"}, {"text": "d", "thought": True}]:
        events += decoder.decode({"candidates": [{"content": {"role": "model", "parts": [part]}}]})
    starts = [e.block_start for e in events if isinstance(e, ReasoningDelta)]
    # A signature closes its block, so that signatures are never joined.
    assert starts == [True, False, True, True]
    blocks = fold_events(events).choices[0].reasoning
    assert [(b.text, b.signature) for b in blocks] == [("ab", "s1"), ("c", None), ("d", None)]

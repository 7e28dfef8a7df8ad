"""OpenAI-compatible translation on recorded upstream bytes: no network."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelgate.http.sse import iter_sse
from modelgate.providers.openai_profiles import profile_for
from modelgate.providers.openai_wire import ChunkDecoder, error_from_openai, events_from_response, request_to_openai
from modelgate.schema.events import ChatResult, Event, ResultBuilder
from modelgate.schema.request import AnthropicPassthrough, ChatRequest, Message, OpenAIPassthrough, TextPart
from modelgate.surfaces.openai_format.parse import parse_chat_request

FIXTURES = Path(__file__).parents[1] / "fixtures" / "openai"


async def _lines(raw: bytes) -> Any:
    for line in raw.splitlines(keepends=True):
        yield line


def decode_fixture(name: str) -> tuple[list[Event], ChatResult]:
    async def run() -> list[Event]:
        decoder = ChunkDecoder()
        events: list[Event] = []
        async for sse in iter_sse(_lines((FIXTURES / name).read_bytes())):
            if sse.data == "[DONE]":
                break
            events.extend(decoder.decode(orjson.loads(sse.data)))
        return events

    events = asyncio.run(run())
    folder = ResultBuilder()
    for event in events:
        folder.add(event)
    return events, folder.finish()


def test_deepseek_reasoning_then_content_and_cache_usage() -> None:
    _, result = decode_fixture("deepseek_reasoner_stream.sse")
    choice = result.choices[0]
    assert choice.reasoning_text == "Okay, the user asks about 9.11 vs 9.8."
    assert choice.text == "9.8 is greater."
    assert choice.finish_reason == "stop"
    assert result.model == "deepseek-reasoner"
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.reasoning_tokens) == (17, 112, 104)


def test_parallel_tool_call_fragments_join_by_index() -> None:
    _, result = decode_fixture("openai_tool_call_stream.sse")
    calls = result.choices[0].tool_calls
    assert [(c.id, c.name) for c in calls] == [("call_9oOUaAqmh8RzW7ccmNQl0VXo", "get_current_weather"),
                                               ("call_Xk2pQ7lJ3nVw8bRt5cYz1aMd", "get_time")]
    assert orjson.loads(calls[0].arguments) == {"location": "Boston, MA"}
    assert calls[1].arguments == "{}"
    assert result.choices[0].finish_reason == "tool_calls"
    assert result.usage is not None and result.usage.cached_input_tokens == 64


def test_azure_prompt_filter_chunk_yields_no_content() -> None:
    events, result = decode_fixture("azure_stream.sse")
    assert result.choices[0].text == "Hello"
    assert result.usage is not None and result.usage.input_tokens == 9
    # The first chunk (empty choices, prompt_filter_results) opens the stream and carries nothing else.
    assert sum(1 for e in events if type(e).__name__ == "TextDelta") == 1


def test_vllm_reasoning_field_and_comment_lines() -> None:
    _, result = decode_fixture("vllm_reasoning_stream.sse")
    assert result.choices[0].reasoning_text == "Let me think."
    assert result.choices[0].finish_reason == "length"


def test_xai_usage_before_trailing_empty_chunk() -> None:
    _, result = decode_fixture("xai_usage_quirk.sse")
    assert result.choices[0].text == "Hi" and result.choices[0].reasoning_text == "Hm."
    assert result.usage is not None
    assert (result.usage.cached_input_tokens, result.usage.reasoning_tokens) == (6, 11)


def test_non_streaming_body_with_content_parts_and_refusal() -> None:
    events = events_from_response({"id": "x", "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text",
                                                                                              "text": "b"}]},
         "finish_reason": "model_length"}]})
    folder = ResultBuilder()
    for event in events:
        folder.add(event)
    result = folder.finish()
    assert result.choices[0].text == "ab" and result.choices[0].finish_reason == "length"
    assert result.choices[0].native_reason == "model_length"


@pytest.mark.parametrize(("body", "expected"), [
    ({"error": {"message": "bad", "type": "invalid_request_error", "param": "x", "code": None}},
     ("bad", "invalid_request_error", None, "x")),
    ({"object": "error", "message": "Tool call id was call_1 but must be a-z, A-Z, 0-9, with a length of 9.",
      "type": "invalid_request_error", "param": None, "code": None},
     ("Tool call id was call_1 but must be a-z, A-Z, 0-9, with a length of 9.", "invalid_request_error", None, None)),
    ({"object": "error", "message": "too long", "type": "BadRequestError", "param": None, "code": 400},
     ("too long", "BadRequestError", "400", None)),
    ([{"error": {"code": 400, "message": "bad key", "status": "INVALID_ARGUMENT"}}],
     ("bad key", "INVALID_ARGUMENT", "400", None)),
    ({"error": "model 'llama9' not found"}, ("model 'llama9' not found", None, None, None)),
])
def test_error_bodies_of_every_flavour(body: Any, expected: tuple[Any, ...]) -> None:
    assert error_from_openai(body) == expected


def test_request_profiles() -> None:
    request = parse_chat_request({
        "model": "d", "max_tokens": 50, "seed": 1, "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "", "reasoning_content": "thought",
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "r"}],
        "tool_choice": {"type": "function", "function": {"name": "f"}}, "logit_bias": {"1": 2}, "user": "u"})
    deepseek = request_to_openai(request, "deepseek-reasoner", profile_for("deepseek"), {})
    assert deepseek["messages"][1]["reasoning_content"] == "thought"
    assert deepseek["max_tokens"] == 50 and deepseek["tool_choice"]["function"]["name"] == "f"
    openai = request_to_openai(request, "gpt-4o", profile_for("openai"), {"store": False})
    assert "reasoning_content" not in openai["messages"][1]
    assert openai["max_completion_tokens"] == 50 and openai["store"] is False
    ollama = request_to_openai(request, "llama3", profile_for("ollama"), {})
    assert "tool_choice" not in ollama and "logit_bias" not in ollama and "user" not in ollama


def test_only_an_openai_pass_through_reaches_the_body() -> None:
    request = parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "q"}], "temperature": 0.5,
                                  "logprobs": True, "store": False})
    assert request.passthrough == OpenAIPassthrough(fields={"logprobs": True, "store": False})
    body = request_to_openai(request, "gpt-4o", profile_for("openai"), {})
    assert (body["logprobs"], body["store"], body["temperature"]) == (True, False, 0.5)
    # A field the translation sets wins over the same field passed through.
    request.passthrough = OpenAIPassthrough(fields={"temperature": 2.0, "model": "other"})
    body = request_to_openai(request, "gpt-4o", profile_for("openai"), {})
    assert (body["temperature"], body["model"]) == (0.5, "gpt-4o")
    # Another format's pass-through is not OpenAI's to read.
    anthropic = ChatRequest(model="m", messages=[Message("user", [TextPart("q")])],
                            passthrough=AnthropicPassthrough(fields={"top_k": 5, "service_tier": "auto"}))
    assert set(request_to_openai(anthropic, "gpt-4o", profile_for("openai"), {})) == {"model", "messages"}
    plain = parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "q"}]})
    assert plain.passthrough is None


def test_sse_decoder_handles_any_chunking_and_long_lines() -> None:
    big = "x" * 300_000
    raw = (b"event: a\r\ndata: one\r\ndata: two\r\n\r\n: comment\n\ndata: " + big.encode() + b"\n\ndata: tail")

    async def run(step: int) -> list[tuple[str | None, str]]:
        async def chunks() -> Any:
            for i in range(0, len(raw), step):
                yield raw[i:i + step]
        return [(e.event, e.data) async for e in iter_sse(chunks())]

    for step in (1, 7, 4096, len(raw)):
        assert asyncio.run(run(step)) == [("a", "one\ntwo"), (None, big), (None, "tail")]


def test_foreign_shapes_are_made_openai_valid() -> None:
    from modelgate.catalog.facts import ModelFacts
    from modelgate.schema.request import ChatRequest, ImagePart, Message, TextPart

    request = ChatRequest(model="d", max_tokens=32000, reasoning_budget=4000, messages=[
        Message(role="system", content=[TextPart("You are Claude Code."), TextPart("Be terse.")]),
        Message(role="user", content=[TextPart("Take a screenshot")]),
        Message(role="assistant", content=[]),
        Message(role="tool", tool_call_id="t1", content=[TextPart("here"), ImagePart("data:image/png;base64,AA==")]),
        Message(role="tool", tool_call_id="t2", content=[TextPart("done")]),
        Message(role="user", content=[TextPart("What do you see?"), TextPart("Be precise.")]),
    ])
    facts = ModelFacts(max_output_tokens=16384, capabilities=("reasoning",))
    body = request_to_openai(request, "m", profile_for("openai"), {}, facts)
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "tool", "user", "user"]
    assert body["messages"][0]["content"] == "You are Claude Code.\n\nBe terse."
    assert body["messages"][3]["content"] == "here"
    assert body["messages"][5]["content"] == [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]
    assert body["messages"][6]["content"] == [{"type": "text", "text": "What do you see?"},
                                              {"type": "text", "text": "Be precise."}]
    assert body["max_completion_tokens"] == 16384
    assert body["reasoning_effort"] == "medium"
    plain = request_to_openai(request, "m", profile_for("openai"), {}, ModelFacts())
    assert "reasoning_effort" not in plain and plain["max_completion_tokens"] == 32000

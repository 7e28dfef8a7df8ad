"""The OpenAI surface, driven by the official openai SDK."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageParam

from modelgate.simulator import Simulator, SimulatorThread, count_tokens, message_tokens, tool_tokens
from tests.simulator.conftest import API_KEY, post_json

WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}},
}


def client(sim: Simulator | SimulatorThread, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim.base_url}/v1", api_key=kwargs.pop("api_key", API_KEY), max_retries=0, **kwargs)


@pytest.fixture
async def oai(sim: Simulator) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{sim.base_url}/v1", api_key=API_KEY, max_retries=0) as async_client:
        yield async_client


def user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


async def test_chat_text_reply_and_exact_usage(oai: openai.AsyncOpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there, how are you?"},
    ]
    raw = await oai.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)
    completion = raw.parse()
    text = completion.choices[0].message.content
    assert text is not None and text.startswith("Simulated reply from gpt-4o to: Hello there, how are you. ")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == message_tokens("Be brief.") + message_tokens("Hello there, how are you?")
    assert completion.usage.prompt_tokens == 3 + 3 + 3 + 7
    assert completion.usage.completion_tokens == count_tokens(text)
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert raw.headers["x-request-id"].startswith("req_")
    assert completion.id.startswith("chatcmpl-")


async def test_replies_are_deterministic_per_request(oai: openai.AsyncOpenAI) -> None:
    c = oai
    first = await c.chat.completions.create(model="m", messages=user("alpha beta"))
    again = await c.chat.completions.create(model="m", messages=user("alpha beta"))
    texts = set()
    for word in ("one", "two", "three", "four", "five", "six"):
        other = await c.chat.completions.create(model="m", messages=user(f"alpha beta {word}"))
        texts.add(other.choices[0].message.content)
    assert first.choices[0].message.content == again.choices[0].message.content
    assert len(texts) == 6


async def test_stream_chunks_share_id_and_end_with_usage(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="gpt-4o", messages=user("Stream me a reply"), stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.startswith("Simulated reply from gpt-4o to: Stream me a reply. ")
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == len(content.split())
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == count_tokens(content)
    assert all(c.usage is None for c in chunks[:-1])


async def test_stream_wire_format_ends_with_done(sim: Simulator) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{sim.base_url}/v1/chat/completions",
            headers={"authorization": f"Bearer {API_KEY}"},
            json={"model": "m", "messages": user("hi"), "stream": True},
        ) as response,
    ):
        text = await response.text()
    lines = [line for line in text.split("\n") if line]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    assert "usage" not in json.loads(lines[0][6:])


def test_stream_matches_non_stream_text(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    whole = c.chat.completions.create(model="m", messages=user("same words please"))
    stream = c.chat.completions.create(model="m", messages=user("same words please"), stream=True)
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert streamed == whole.choices[0].message.content


def test_tool_call_non_stream(sim_thread: SimulatorThread) -> None:
    completion = client(sim_thread).chat.completions.create(
        model="gpt-4o",
        messages=user("weather in Paris?"),
        tools=[WEATHER_TOOL, TIME_TOOL],
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "text", "days": 1, "metric": True}
    assert completion.usage is not None
    schema = WEATHER_TOOL["function"]["parameters"]
    expected_prompt = message_tokens("weather in Paris?") + tool_tokens("get_weather", "Weather for a city", schema)
    expected_prompt += tool_tokens("get_time", "", TIME_TOOL["function"]["parameters"])
    assert completion.usage.prompt_tokens == expected_prompt


def test_tool_call_stream_fragments_and_parallel(sim_thread: SimulatorThread) -> None:
    stream = client(sim_thread).chat.completions.create(
        model="gpt-4o",
        messages=user("use parallel tools"),
        tools=[WEATHER_TOOL, TIME_TOOL],
        stream=True,
    )
    chunks = list(stream)
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    firsts = [d for d in deltas if d.id is not None]
    assert [(d.index, d.type, d.function.name, d.function.arguments) for d in firsts if d.function] == [
        (0, "function", "get_weather", ""),
        (1, "function", "get_time", ""),
    ]
    arguments: dict[int, str] = {0: "", 1: ""}
    for d in deltas:
        arguments[d.index] += (d.function.arguments if d.function else None) or ""
    assert json.loads(arguments[0]) == {"city": "text", "days": 1, "metric": True}
    assert json.loads(arguments[1]) == {"tz": "text"}
    assert sum(1 for d in deltas if d.index == 0 and d.id is None) >= 3
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_choice_forced_none_and_parallel_off(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    tools = [WEATHER_TOOL, TIME_TOOL]
    forced = c.chat.completions.create(
        model="m",
        messages=user("parallel please"),
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    calls = forced.choices[0].message.tool_calls or []
    assert [t.function.name for t in calls if t.type == "function"] == ["get_time"] and len(calls) == 1
    none = c.chat.completions.create(model="m", messages=user("parallel please"), tools=tools, tool_choice="none")
    assert none.choices[0].message.tool_calls is None and none.choices[0].finish_reason == "stop"
    single = c.chat.completions.create(
        model="m", messages=user("parallel please"), tools=tools, parallel_tool_calls=False
    )
    assert len(single.choices[0].message.tool_calls or []) == 1


def test_tool_result_is_mentioned(sim_thread: SimulatorThread) -> None:
    messages: Any = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny and 21 degrees"},
    ]
    completion = client(sim_thread).chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL])
    text = completion.choices[0].message.content or ""
    assert "Sunny and 21 degrees" in text and completion.choices[0].finish_reason == "stop"


def test_reasoning_fields(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    deepseek = c.chat.completions.create(model="deepseek-reasoner", messages=user("think about cats"))
    message = deepseek.choices[0].message.model_dump()
    assert message["reasoning_content"].startswith("The user wrote about think about cats.")
    assert deepseek.usage is not None and deepseek.usage.completion_tokens_details is not None
    assert deepseek.usage.completion_tokens_details.reasoning_tokens == count_tokens(message["reasoning_content"])
    assert deepseek.usage.completion_tokens == count_tokens(message["reasoning_content"]) + count_tokens(
        message["content"]
    )
    plain = c.chat.completions.create(model="gpt-4o", messages=user("think about cats")).choices[0].message
    assert "reasoning_content" not in plain.model_dump()
    stream = c.chat.completions.create(model="reasoner-r", messages=user("think about dogs"), stream=True)
    deltas = [chunk.choices[0].delta.model_dump() for chunk in stream]
    reasoning = "".join(d.get("reasoning") or "" for d in deltas)
    first_content = next(i for i, d in enumerate(deltas) if d.get("content"))
    last_reasoning = max(i for i, d in enumerate(deltas) if d.get("reasoning"))
    assert reasoning.startswith("The user wrote about think about dogs.") and last_reasoning < first_content
    assert all("reasoning_content" not in d for d in deltas)


def test_deepseek_requires_reasoning_echo(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    history: Any = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        c.chat.completions.create(model="deepseek-v4", messages=history)
    assert "Missing `reasoning_content` field in the assistant message at message index 1" in caught.value.message
    history[1]["reasoning_content"] = "I should call the weather tool."
    ok = c.chat.completions.create(model="deepseek-v4", messages=history)
    assert "rain" in (ok.choices[0].message.content or "")


def test_max_tokens_stop_and_n(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    short = c.chat.completions.create(model="m", messages=user("a long question here"), max_tokens=4)
    assert short.choices[0].message.content == "Simulated reply from m"
    assert short.choices[0].finish_reason == "length" and short.usage is not None
    assert short.usage.completion_tokens == 4
    stopped = c.chat.completions.create(model="m", messages=user("tell me about bananas"), stop=["bananas", "zzz"])
    assert stopped.choices[0].message.content == "Simulated reply from m to: tell me about "
    assert stopped.choices[0].finish_reason == "stop"
    several = c.chat.completions.create(model="m", messages=user("pick"), n=3)
    texts = [choice.message.content for choice in several.choices]
    assert [choice.index for choice in several.choices] == [0, 1, 2] and len(set(texts)) == 3
    assert several.usage is not None
    assert several.usage.completion_tokens == sum(count_tokens(t or "") for t in texts)


def test_structured_output(sim_thread: SimulatorThread) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "score": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"enum": ["a", "b"]},
            "nested": {"$ref": "#/$defs/inner"},
        },
        "required": ["name", "age", "score", "tags", "kind", "nested"],
        "additionalProperties": False,
        "$defs": {"inner": {"type": "object", "properties": {"ok": {"type": "boolean"}}}},
    }
    c = client(sim_thread)
    completion = c.chat.completions.create(
        model="m",
        messages=user("json please"),
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}},
    )
    assert json.loads(completion.choices[0].message.content or "") == {
        "name": "text",
        "age": 1,
        "score": 1,
        "tags": ["text"],
        "kind": "a",
        "nested": {"ok": True},
    }
    json_mode = c.chat.completions.create(model="m", messages=user("json"), response_format={"type": "json_object"})
    assert json.loads(json_mode.choices[0].message.content or "")["reply"].startswith("Simulated reply from m")


def test_embeddings_float_base64_dimensions_tokens(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    default = c.embeddings.create(model="text-embedding-3-small", input=["hello world", "other text"])
    assert [d.index for d in default.data] == [0, 1] and len(default.data[0].embedding) == 8
    assert abs(sum(v * v for v in default.data[0].embedding) - 1) < 1e-5
    assert default.data[0].embedding != default.data[1].embedding
    assert default.usage.prompt_tokens == 4 and default.usage.total_tokens == 4
    floats = c.embeddings.create(model="text-embedding-3-small", input="hello world", encoding_format="float")
    assert floats.data[0].embedding == default.data[0].embedding
    short = c.embeddings.create(model="embed-small", input="hello world", dimensions=4)
    assert len(short.data[0].embedding) == 4
    tokens = c.embeddings.create(model="embed-small", input=[[1, 2, 3], [4, 5]])
    assert len(tokens.data) == 2 and len(tokens.data[0].embedding) == 16 and tokens.usage.prompt_tokens == 5
    with pytest.raises(openai.BadRequestError):
        c.embeddings.create(model="embed-small", input="x", dimensions=17)


def test_embeddings_base64_wire_is_little_endian_float32(sim_thread: SimulatorThread) -> None:
    status, body = post_json(
        f"{sim_thread.base_url}/v1/embeddings",
        {"model": "e", "input": "abc", "encoding_format": "base64"},
        {"authorization": f"Bearer {API_KEY}"},
    )
    assert status == 200
    encoded = body["data"][0]["embedding"]
    decoded = list(struct.unpack("<8f", base64.b64decode(encoded)))
    floats = client(sim_thread).embeddings.create(model="e", input="abc", encoding_format="float")
    assert decoded == floats.data[0].embedding


def test_models_list(sim_thread: SimulatorThread) -> None:
    ids = [m.id for m in client(sim_thread).models.list()]
    assert "deepseek-v4" in ids and "deepseek-reasoner" in ids and ids == sorted(ids)


def test_auth_errors(sim_thread: SimulatorThread) -> None:
    with pytest.raises(openai.AuthenticationError) as wrong:
        client(sim_thread, api_key="sk-wrong").chat.completions.create(model="m", messages=user("hi"))
    assert wrong.value.status_code == 401 and wrong.value.code == "invalid_api_key"
    assert wrong.value.request_id is not None and wrong.value.request_id.startswith("req_")
    status, body = post_json(f"{sim_thread.base_url}/v1/chat/completions", {"model": "m", "messages": user("x")})
    assert status == 401
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_status_faults_map_to_sdk_errors(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    with pytest.raises(openai.RateLimitError) as limited:
        c.chat.completions.create(
            model="m", messages=user("hi"), extra_headers={"x-sim-fault": "status=429;retry_after=2;retry_after_ms=150"}
        )
    assert limited.value.response.headers["retry-after"] == "2"
    assert limited.value.response.headers["retry-after-ms"] == "150"
    assert limited.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.InternalServerError) as server:
        c.chat.completions.create(model="m", messages=user("hi"), extra_headers={"x-sim-fault": "status=500"})
    assert server.value.status_code == 500 and server.value.type == "server_error"
    with pytest.raises(openai.InternalServerError) as unavailable:
        c.chat.completions.create(model="m", messages=user("hi"), extra_headers={"x-sim-fault": "status=503"})
    assert unavailable.value.status_code == 503
    with pytest.raises(openai.BadRequestError) as bad:
        c.chat.completions.create(model="m", messages=user("hi"), extra_headers={"x-sim-fault": "bogus"})
    assert "unknown fault 'bogus'" in bad.value.message


def test_an_echo_fault_quotes_the_field_as_sent(sim_thread: SimulatorThread) -> None:
    status, body = post_json(f"{sim_thread.base_url}/v1/chat/completions",
                             {"model": "m", "messages": user("hi"), "reasoning_effort": "x\u0000y"},
                             {"authorization": f"Bearer {API_KEY}", "x-sim-fault": "echo=reasoning_effort"})
    assert status == 400
    assert body["error"]["message"] == "Invalid value for 'reasoning_effort': 'x\u0000y'."
    assert (body["error"]["param"], body["error"]["code"]) == ("reasoning_effort", "invalid_value")


def test_context_window(sim_thread: SimulatorThread) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(sim_thread).chat.completions.create(
            model="tiny-context", messages=user("one two three four five six seven eight")
        )
    assert caught.value.code == "context_length_exceeded"
    assert "maximum context length is 10 tokens. However, your messages resulted in 11 tokens" in caught.value.message


def test_stream_faults(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    stream = c.chat.completions.create(
        model="m", messages=user("hi"), stream=True, extra_headers={"x-sim-fault": "cut=3"}
    )
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 3
    stream = c.chat.completions.create(
        model="m", messages=user("hi"), stream=True, extra_headers={"x-sim-fault": "error_after=2"}
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 2 and "server had an error" in caught.value.message
    with pytest.raises(json.JSONDecodeError):
        list(
            c.chat.completions.create(
                model="m", messages=user("hi"), stream=True, extra_headers={"x-sim-fault": "malformed"}
            )
        )


def test_non_stream_transport_faults(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    with pytest.raises(openai.APIConnectionError):
        c.chat.completions.create(model="m", messages=user("hi"), extra_headers={"x-sim-fault": "cut=1"})
    with pytest.raises(json.JSONDecodeError):
        c.chat.completions.create(model="m", messages=user("hi"), extra_headers={"x-sim-fault": "malformed"})


def test_safety_fault_is_content_filter(sim_thread: SimulatorThread) -> None:
    completion = client(sim_thread).chat.completions.create(
        model="m", messages=user("hi"), extra_headers={"x-sim-fault": "safety"}
    )
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.choices[0].message.content == ""


def test_cut_past_the_end_still_drops_the_terminator(sim_thread: SimulatorThread) -> None:
    stream = client(sim_thread).chat.completions.create(
        model="m", messages=user("hi"), stream=True, extra_headers={"x-sim-fault": "cut=1000"}
    )
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            received.append(chunk)
    assert received[-1].choices[0].finish_reason == "stop"


def test_short_timeout_fault_drops_the_connection(sim_thread: SimulatorThread) -> None:
    with pytest.raises(openai.APIConnectionError):
        client(sim_thread).chat.completions.create(
            model="m", messages=user("hi"), extra_headers={"x-sim-fault": "timeout=0.2"}
        )


async def test_timeout_fault_hangs_until_client_gives_up(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APITimeoutError):
        await oai.with_options(timeout=0.3).chat.completions.create(
            model="m", messages=user("hi"), extra_headers={"x-sim-fault": "timeout"}
        )


async def test_pacing_headers_delay_the_stream(oai: openai.AsyncOpenAI) -> None:
    import time

    started = time.monotonic()
    stream = await oai.chat.completions.create(
        model="m",
        messages=user("two words"),
        stream=True,
        extra_headers={"x-sim-ttft-ms": "150", "x-sim-chunk-ms": "5"},
    )
    first_at = None
    async for _chunk in stream:
        first_at = first_at or time.monotonic()
    finished = time.monotonic()
    assert first_at is not None and first_at - started >= 0.15
    assert finished - first_at >= 0.005 * 10

"""The Azure OpenAI surface, driven by openai.AzureOpenAI and the plain client on /openai/v1."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from modelgate.simulator import SimulatorThread, count_tokens, message_tokens
from tests.simulator.conftest import API_KEY, post_json

API_VERSION = "2024-10-21"


def azure(sim: SimulatorThread, **kwargs: Any) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        api_key=kwargs.pop("api_key", API_KEY),
        api_version=API_VERSION,
        azure_endpoint=sim.base_url,
        max_retries=0,
        **kwargs,
    )


def user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


def test_deployment_chat_uses_deployment_as_model(sim_thread: SimulatorThread) -> None:
    raw = azure(sim_thread).chat.completions.with_raw_response.create(model="my-gpt4o", messages=user("hello azure"))
    completion = raw.parse()
    assert completion.model == "my-gpt4o"
    assert (completion.choices[0].message.content or "").startswith("Simulated reply from my-gpt4o to: hello azure. ")
    assert completion.usage is not None and completion.usage.prompt_tokens == message_tokens("hello azure")
    dumped = completion.model_dump()
    assert dumped["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"] is False
    assert dumped["choices"][0]["content_filter_results"]["violence"]["severity"] == "safe"
    assert raw.headers["apim-request-id"] == raw.headers["x-request-id"]


def test_deployment_stream_starts_with_prompt_filter_chunk(sim_thread: SimulatorThread) -> None:
    stream = azure(sim_thread).chat.completions.create(
        model="dep", messages=user("stream on azure"), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    first = chunks[0].model_dump()
    assert first["choices"] == [] and first["prompt_filter_results"][0]["prompt_index"] == 0
    text = "".join(c.choices[0].delta.content or "" for c in chunks[1:] if c.choices)
    assert text.startswith("Simulated reply from dep to: stream on azure. ")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == count_tokens(text)


def test_deployment_embeddings(sim_thread: SimulatorThread) -> None:
    result = azure(sim_thread).embeddings.create(model="embed-small", input=["a b", "c"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 16
    assert result.usage.prompt_tokens == 3


def test_missing_api_version_is_400(sim_thread: SimulatorThread) -> None:
    status, body = post_json(
        f"{sim_thread.base_url}/openai/deployments/dep/chat/completions", {"messages": user("hi")}, {"api-key": API_KEY}
    )
    assert status == 400 and body["error"]["code"] == "MissingApiVersionParameter"


def test_wrong_key_is_401_in_azure_words(sim_thread: SimulatorThread) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        azure(sim_thread, api_key="nope").chat.completions.create(model="dep", messages=user("hi"))
    assert caught.value.code == "401" and "Access denied" in caught.value.message


def test_v1_routes_without_api_version(sim_thread: SimulatorThread) -> None:
    c = openai.OpenAI(base_url=f"{sim_thread.base_url}/openai/v1", api_key=API_KEY, max_retries=0)
    completion = c.chat.completions.create(
        model="gpt-4o-mini", messages=user("v1 route"), tools=[{"type": "function", "function": {"name": "lookup"}}]
    )
    calls = completion.choices[0].message.tool_calls or []
    assert [call.function.name for call in calls if call.type == "function"] == ["lookup"] and len(calls) == 1
    assert calls[0].type == "function" and json.loads(calls[0].function.arguments) == {}
    assert len(c.embeddings.create(model="e", input="x").data[0].embedding) == 8


def test_azure_fault_uses_openai_error_shape(sim_thread: SimulatorThread) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        azure(sim_thread).chat.completions.create(
            model="dep", messages=user("hi"), extra_headers={"x-sim-fault": "status=429;retry_after=7"}
        )
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.body == {
        "message": "Rate limit reached (simulated).",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }

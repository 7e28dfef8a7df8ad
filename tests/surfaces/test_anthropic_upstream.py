"""What an Anthropic client's request becomes upstream, seen on a recording upstream, and a client
that leaves an Anthropic stream cancelling the upstream request."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import anthropic
import httpx
from aiohttp import web
from anthropic.types import Base64ImageSourceParam

from tests.support import DEADLINE_S, RecordingUpstream, gateway_in_thread

IMAGE: Base64ImageSourceParam = {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}


def _deployment(upstream: RecordingUpstream, kind: str, **provider: Any) -> dict[str, Any]:
    base_url = f"{upstream.base_url}/v1" if kind == "openai" else upstream.base_url
    return {"providers": {"p": {"type": kind, "base_url": base_url, "api_key": "k", **provider}},
            "deployments": [{"name": "m", "provider": "p", "model": "upstream-model"}]}


def test_an_openai_compatible_upstream_gets_chat_completions() -> None:
    with RecordingUpstream() as upstream, \
            gateway_in_thread(_deployment(upstream, "openai", flavor="deepseek")) as gateway, \
            anthropic.Anthropic(base_url=gateway.base_url, api_key="k", max_retries=0) as client:
        message = client.messages.create(
            model="m", max_tokens=500, stop_sequences=["###"], metadata={"user_id": "u-7"},
            extra_body={"temperature": 0.5},  # this SDK version has no temperature argument
            system=[{"type": "text", "text": "Be exact.", "cache_control": {"type": "ephemeral"}}],
            tools=[{"name": "look", "input_schema": {"type": "object", "properties": {"at": {"type": "string"}}}}],
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
            messages=[
                {"role": "user", "content": [{"type": "text", "text": "Look at this"},
                                             {"type": "image", "source": IMAGE}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "I should look.", "signature": ""},
                    {"type": "tool_use", "id": "call_1", "name": "look", "input": {"at": "corner"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "a cat", "is_error": False},
                    {"type": "text", "text": "And now?"}]},
            ])
    assert message.content[0].text == "ok"  # type: ignore[union-attr]
    (sent,) = upstream.requests
    assert sent["path"] == "/v1/chat/completions"
    body = sent["json"]
    assert body["messages"] == [
        {"role": "system", "content": "Be exact."},
        {"role": "user", "content": [{"type": "text", "text": "Look at this"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}]},
        # DeepSeek's reasoning goes back as reasoning_content: it came to the client as a thinking block.
        {"role": "assistant", "content": None, "reasoning_content": "I should look.",
         "tool_calls": [{"id": "call_1", "type": "function",
                         "function": {"name": "look", "arguments": '{"at":"corner"}'}}]},
        {"role": "tool", "content": "a cat", "tool_call_id": "call_1"},
        {"role": "user", "content": "And now?"},
    ]
    assert (body["max_tokens"], body["temperature"], body["stop"], body["user"]) == (500, 0.5, ["###"], "u-7")
    assert (body["tool_choice"], body["parallel_tool_calls"]) == ("required", False)
    assert body["tools"] == [{"type": "function", "function": {
        "name": "look", "parameters": {"type": "object", "properties": {"at": {"type": "string"}}}}}]
    # Anthropic-only fields stay away from an OpenAI-compatible upstream.
    assert "metadata" not in body and "system" not in body


async def _anthropic_message(request: web.Request) -> web.Response:
    return web.json_response({
        "id": "msg_up", "type": "message", "role": "assistant", "model": "upstream-model",
        "content": [{"type": "text", "text": "fine"}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 1, "cache_read_input_tokens": 2,
                  "cache_creation_input_tokens": 0}})


def test_an_anthropic_upstream_gets_what_only_it_understands() -> None:
    with RecordingUpstream(_anthropic_message) as upstream, \
            gateway_in_thread(_deployment(upstream, "anthropic")) as gateway, \
            anthropic.Anthropic(base_url=gateway.base_url, api_key="k", max_retries=0) as client:
        message = client.messages.create(
            model="m", max_tokens=2000, service_tier="auto", extra_body={"top_k": 5},
            thinking={"type": "adaptive"}, output_config={"effort": "low"},
            messages=[{"role": "user", "content": "Hi"}],
            extra_headers={"anthropic-beta": "context-1m-2025-08-07"})
    assert message.usage.input_tokens == 5 and message.usage.cache_read_input_tokens == 2
    (sent,) = upstream.requests
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["anthropic-beta"] == "context-1m-2025-08-07"
    body = sent["json"]
    assert (body["top_k"], body["service_tier"]) == (5, "auto")
    assert body["thinking"] == {"type": "adaptive"} and body["output_config"] == {"effort": "low"}


class SlowStream(RecordingUpstream):
    """Streams an OpenAI chunk every 50 ms for a minute, noting when its client leaves (the stream
    ends before that only if the gateway cancels it)."""

    def __init__(self) -> None:
        super().__init__(self.slow)
        self.cancelled = threading.Event()

    async def slow(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            for i in range(1200):
                await response.write(b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
                                     b'"choices":[{"index":0,"delta":{"content":"tick ' + str(i).encode()
                                     + b' "}}]}\n\n')
                await asyncio.sleep(0.05)
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled.set()
            raise
        return response


def test_a_client_leaving_a_stream_cancels_the_upstream() -> None:
    with SlowStream() as upstream, gateway_in_thread(_deployment(upstream, "openai")) as gateway:
        body = {"model": "m", "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "Go"}]}
        with httpx.stream("POST", f"{gateway.base_url}/v1/messages", json=body, timeout=10) as response:
            deltas = 0
            for line in response.iter_lines():
                deltas += line.startswith("event: content_block_delta")
                if deltas >= 3:
                    break
        assert upstream.cancelled.wait(DEADLINE_S), "the upstream never saw the client leave"

"""Provider type ``openai``: every OpenAI-compatible chat completions API.

OpenAI, xAI, DeepSeek, Mistral, Groq, Together, Fireworks, GitHub Models, vLLM, Ollama's /v1 and
LM Studio differ only in base URL and the quirks of ``openai_profiles``. Azure OpenAI differs in
URL layout and auth header and subclasses this (``azure.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from modelgate.http.sse import iter_sse
from modelgate.providers.base import TRANSPORT_ERRORS, Provider, UpstreamCall, upstream_error
from modelgate.providers.openai_profiles import OpenAIProfile, profile_for
from modelgate.providers.openai_wire import (
    ChunkDecoder,
    error_from_openai,
    events_from_response,
    request_to_openai,
)
from modelgate.providers.settings import ProviderSettings
from modelgate.providers.transport import HTTPClient, Response
from modelgate.schema.errors import UpstreamError, UpstreamMalformed
from modelgate.schema.events import Embeddings, Event, Start, Usage
from modelgate.schema.request import ChatRequest, EmbeddingRequest


class OpenAICompatProvider(Provider):
    profile_name: str | None = None

    def __init__(self, settings: ProviderSettings, http: HTTPClient) -> None:
        super().__init__(settings, http)
        self.profile: OpenAIProfile = profile_for(self.profile_name or settings.flavor)
        headers = {"content-type": "application/json", **self.auth_headers()}
        headers.update(settings.headers)
        self.headers = headers

    def auth_headers(self) -> dict[str, str]:
        key = self.settings.api_key
        return {"authorization": f"Bearer {key}"} if key else {}

    def url(self, operation: str, model: str) -> str:
        """The URL of ``operation`` ("chat/completions", "embeddings") for ``model``."""
        return f"{self.settings.base_url}/{operation}"

    async def chat(self, request: ChatRequest, call: UpstreamCall) -> AsyncIterator[Event]:
        body = request_to_openai(request, call.model, self.profile, call.params, call.facts)
        # Per-request headers are in the client's wire format (anthropic-beta from the Anthropic
        # surface): only an OpenAI-format request's travel to an OpenAI-compatible upstream.
        headers = request.upstream_headers if request.source == "openai" else {}
        async for event in self._exchange("chat/completions", body, call, request.stream, headers):
            yield event

    async def embed(self, request: EmbeddingRequest, call: UpstreamCall) -> AsyncIterator[Event]:
        # Ask for the client's encoding where the upstream can produce it: base64 avoids
        # a float round trip through Python; otherwise the surface encodes.
        encoding = request.encoding_format if self.profile.embeddings_base64 else "float"
        body: dict[str, Any] = {"model": call.model, "input": request.input, "encoding_format": encoding}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        if request.user is not None:
            body["user"] = request.user
        body.update(request.extra)
        body.update(call.params)
        async for event in self._exchange("embeddings", body, call, False, {}):
            yield event

    async def _exchange(
        self, operation: str, body: dict[str, Any], call: UpstreamCall, stream: bool,
        extra_headers: dict[str, str],
    ) -> AsyncIterator[Event]:
        headers = {**self.headers, **extra_headers} if extra_headers else self.headers
        try:
            async with self.http.post(
                self.url(operation, call.model), data=orjson.dumps(body), headers=headers,
                timeout=self.timeout(call),
            ) as response:
                if response.status >= 400:
                    raise await self._error(response)
                if stream:
                    async for event in self._stream_events(response):
                        yield event
                    return
                raw = await response.read()
                try:
                    payload = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    raise self.malformed(raw, "JSON") from None
                if operation == "embeddings":
                    for event in _embedding_events(payload):
                        yield event
                else:
                    for event in events_from_response(payload):
                        yield event
        except TRANSPORT_ERRORS as exc:
            raise self.transport_error(exc, call) from exc

    async def _stream_events(self, response: Response) -> AsyncIterator[Event]:
        decoder = ChunkDecoder()
        async for sse in iter_sse(response.iter_chunks()):
            if sse.data == "[DONE]":
                return
            try:
                chunk = orjson.loads(sse.data)
            except orjson.JSONDecodeError:
                raise self.malformed(sse.data.encode(), "JSON") from None
            if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
                message, etype, code, _ = error_from_openai(chunk)
                raise UpstreamError(f"provider '{self.name}' failed mid-stream: {message}",
                                    provider=self.name, status=502, upstream_type=etype or "upstream_error",
                                    code=code)
            for event in decoder.decode(chunk):
                yield event
        # The stream ended without [DONE]: the connection was cut after a clean HTTP end.
        raise UpstreamMalformed(f"provider '{self.name}' ended the stream before it was complete",
                                provider=self.name, code="upstream_stream_cut")

    async def _error(self, response: Response) -> UpstreamError:
        raw = await response.read()
        try:
            message, etype, code, param = error_from_openai(orjson.loads(raw))
        except orjson.JSONDecodeError:
            message, etype, code, param = raw.decode("utf-8", "replace")[:500], None, None, None
        return upstream_error(self.name, response.status, response.headers,
                              f"provider '{self.name}' answered {response.status}: {message}",
                              type=etype, code=code, param=param)



def _embedding_events(payload: dict[str, Any]) -> list[Event]:
    data = sorted(payload.get("data") or (), key=lambda item: item.get("index", 0))
    usage = payload.get("usage") or {}
    return [
        Start(model=payload.get("model") or ""),
        Embeddings([item["embedding"] for item in data]),
        Usage(input_tokens=usage.get("prompt_tokens") or 0),
    ]

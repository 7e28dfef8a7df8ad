"""Provider type ``openai``: every OpenAI-compatible chat completions API, and OpenAI's
Responses API for targets that say ``api: responses``.

OpenAI, xAI, DeepSeek, Mistral, Groq, Together, Fireworks, GitHub Models, vLLM, Ollama's /v1 and
LM Studio differ only in base URL and the quirks of ``openai_profiles``. Azure OpenAI differs in
URL layout and auth header and subclasses this (``azure.py``). Translation lives in
``openai_wire`` (chat completions) and ``openai_responses_wire`` (Responses); this module does the I/O.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from modelgate.http.sse import iter_sse
from modelgate.providers.base import Provider, UpstreamCall, upstream_error
from modelgate.providers.openai_profiles import OpenAIProfile, profile_for
from modelgate.providers.openai_responses_wire import ResponseDecoder, request_headers, request_to_responses
from modelgate.providers.openai_responses_wire import events_from_response as events_from_responses
from modelgate.providers.openai_wire import (
    ChunkDecoder,
    error_from_openai,
    events_from_response,
    request_to_openai,
)
from modelgate.providers.settings import ProviderSettings
from modelgate.providers.transport import Headers, Transport
from modelgate.providers.untrusted import count, items, label, mapping
from modelgate.schema.errors import UpstreamError, UpstreamMalformed
from modelgate.schema.events import Embeddings, Event, ModerationResult, ModerationScores, Start, Usage
from modelgate.schema.request import ChatRequest, EmbeddingRequest, ModerationRequest, OpenAIPassthrough


class OpenAICompatProvider(Provider):
    profile_name: str | None = None
    serves_moderations = True  # https://platform.openai.com/docs/api-reference/moderations

    def __init__(self, settings: ProviderSettings, transport: Transport) -> None:
        super().__init__(settings, transport)
        self.profile: OpenAIProfile = profile_for(self.profile_name or settings.flavor)
        headers = {"content-type": "application/json", **self.auth_headers()}
        headers.update(settings.headers)
        self.headers = headers

    def auth_headers(self) -> dict[str, str]:
        key = self.settings.api_key
        return {"authorization": f"Bearer {key}"} if key else {}

    def url(self, operation: str, model: str) -> str:
        """The URL of ``operation`` ("chat/completions", "responses", "embeddings") for ``model``."""
        return f"{self.settings.base_url}/{operation}"

    def chat(self, request: ChatRequest, call: UpstreamCall) -> AsyncGenerator[Event, None]:
        if call.api == "responses":
            return self._responses(request, call)
        body = request_to_openai(request, call.model, self.profile, call.params, call.facts)
        # Per-request headers come only in an OpenAI-format request's pass-through.
        passthrough = request.passthrough
        extra = passthrough.headers if isinstance(passthrough, OpenAIPassthrough) else None
        headers = {**self.headers, **extra} if extra else self.headers
        return self.exchange(call, self.url("chat/completions", call.model), headers, body,
                             self._stream_events if request.stream else None, self._chat_events)

    def _responses(self, request: ChatRequest, call: UpstreamCall) -> AsyncGenerator[Event, None]:
        body = request_to_responses(request, call.model, call.params, call.facts)
        extra = request_headers(request)
        headers = {**self.headers, **extra} if extra else self.headers
        return self.exchange(call, self.url("responses", call.model), headers, body,
                             self._response_stream if request.stream else None, self._response_events)

    def embed(self, request: EmbeddingRequest, call: UpstreamCall) -> AsyncGenerator[Event, None]:
        # Ask for the client's encoding where the upstream can produce it: base64 avoids
        # a float round trip through Python; otherwise the surface encodes.
        encoding = request.encoding_format if self.profile.embeddings_base64 else "float"
        body: dict[str, Any] = {"model": call.model, "input": request.input, "encoding_format": encoding}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        if request.user is not None:
            body["user"] = request.user
        if request.passthrough is not None:
            body.update(request.passthrough.fields)
        body.update(call.params)
        return self.exchange(call, self.url("embeddings", call.model), self.headers, body, None,
                             self._embedding_events)

    def moderate(self, request: ModerationRequest, call: UpstreamCall) -> AsyncGenerator[Event, None]:
        if not self.serves_moderations:  # a subclass for an API without it (Azure)
            return super().moderate(request, call)
        body: dict[str, Any] = {"model": call.model, "input": request.input}
        body.update(call.params)
        return self.exchange(call, self.url("moderations", call.model), self.headers, body, None,
                             self._moderation_events)

    def _moderation_events(self, raw: bytes) -> list[Event]:
        return moderation_events(self._json(raw))

    def _json(self, raw: bytes) -> dict[str, Any]:
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise self.malformed(raw, "JSON") from None
        if not isinstance(payload, dict):
            raise self.malformed(raw)
        return payload

    def _chat_events(self, raw: bytes) -> list[Event]:
        return events_from_response(self._json(raw))

    def _embedding_events(self, raw: bytes) -> list[Event]:
        return _embedding_events(self._json(raw))

    async def _stream_events(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[Event]:
        decoder = ChunkDecoder()
        async for sse in iter_sse(chunks):
            if sse.data == "[DONE]":
                return
            try:
                chunk = orjson.loads(sse.data)
            except orjson.JSONDecodeError:
                raise self.malformed(sse.data.encode(), "JSON") from None
            if not isinstance(chunk, dict):
                raise self.malformed(sse.data.encode(), "a JSON object")
            if "error" in chunk and "choices" not in chunk:
                message, etype, code, _ = error_from_openai(chunk)
                raise UpstreamError(f"provider '{self.name}' failed mid-stream: {message}",
                                    provider=self.name, status=502, upstream_type=etype or "upstream_error",
                                    code=code)
            for event in decoder.decode(chunk):
                yield event
        # The stream ended without [DONE]: the connection was cut after a clean HTTP end.
        raise UpstreamMalformed(f"provider '{self.name}' ended the stream before it was complete",
                                provider=self.name, code="upstream_stream_cut")

    def _response_events(self, raw: bytes) -> list[Event]:
        return events_from_responses(self._json(raw), self.name)

    async def _response_stream(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[Event]:
        decoder = ResponseDecoder(self.name)
        async for sse in iter_sse(chunks):
            try:
                data = orjson.loads(sse.data)
            except orjson.JSONDecodeError:
                raise self.malformed(sse.data.encode(), "JSON") from None
            if not isinstance(data, dict):
                raise self.malformed(sse.data.encode(), "a JSON object")
            # The event name and data.type agree; data.type is what the SDK reads.
            for event in decoder.decode(str(data.get("type") or sse.event or ""), data):
                yield event
            if decoder.done:
                return
        # Responses streams have no [DONE]: the answer is whole at response.completed or .incomplete.
        raise UpstreamMalformed(f"provider '{self.name}' ended the stream before response.completed",
                                provider=self.name, code="upstream_stream_cut")

    def status_error(self, status: int, headers: Headers, raw: bytes) -> UpstreamError:
        try:
            message, etype, code, param = error_from_openai(orjson.loads(raw))
        except orjson.JSONDecodeError:
            message, etype, code, param = raw.decode("utf-8", "replace")[:500], None, None, None
        return upstream_error(self.name, status, headers, f"provider '{self.name}' answered {status}: {message}",
                              type=etype, code=code, param=param)


def _embedding_events(payload: dict[str, Any]) -> list[Event]:
    data = sorted((item for item in items(payload.get("data")) if isinstance(item, dict)), key=_position)
    usage = mapping(payload.get("usage"))
    return [
        Start(model=label(payload.get("model"))),
        Embeddings([item["embedding"] for item in data]),
        Usage(input_tokens=count(usage.get("prompt_tokens"))),
    ]


def moderation_events(payload: dict[str, Any]) -> list[Event]:
    """A moderations answer's ``results[i]``: its ``category_scores``, each a number in 0..1, and
    its ``categories`` flagged (anything else is left out: a category missing is not scored)."""
    results = []
    for result in items(payload.get("results")):
        scores = mapping(mapping(result).get("category_scores"))
        flags = mapping(mapping(result).get("categories"))
        results.append(ModerationResult(
            {name: min(max(float(score), 0.0), 1.0) for name, score in scores.items()
             if isinstance(score, (int, float)) and not isinstance(score, bool)},
            {name: flag for name, flag in flags.items() if isinstance(flag, bool)}))
    return [Start(model=label(payload.get("model"))), ModerationScores(results)]


def _position(item: dict[str, Any]) -> int:
    position = item.get("index")
    return position if isinstance(position, int) else 0

"""Provider type ``anthropic``: Anthropic's Messages API (``POST /v1/messages``, and
``/v1/messages/count_tokens`` for the Anthropic surface's token counts).

Also serves other hosts of the same API (e.g. DeepSeek's ``https://api.deepseek.com/anthropic``):
``base_url`` is the root the SDK would take as ``ANTHROPIC_BASE_URL``. Translation lives in
``anthropic_wire``; this module does the I/O.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

import orjson

from modelgate.http.sse import iter_sse
from modelgate.providers.anthropic_wire import (
    MessageDecoder,
    count_tokens_body,
    events_from_message,
    request_headers,
    request_to_anthropic,
    status_error,
)
from modelgate.providers.base import Provider, UpstreamCall, json_or_text
from modelgate.providers.settings import ProviderSettings
from modelgate.providers.transport import Headers, Transport
from modelgate.providers.untrusted import count, retry_after
from modelgate.schema.errors import UpstreamError, UpstreamMalformed
from modelgate.schema.events import Event
from modelgate.schema.request import ChatRequest

API_VERSION = "2023-06-01"  # the SDK's default anthropic-version header


class AnthropicProvider(Provider):
    def __init__(self, settings: ProviderSettings, transport: Transport) -> None:
        super().__init__(settings, transport)
        base = settings.base_url
        self.url = f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"
        self.count_url = f"{self.url}/count_tokens"
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if settings.api_key:
            headers["x-api-key"] = settings.api_key
        # Lower-case names, so that a configured anthropic-beta meets the client's (request_headers).
        headers.update({name.lower(): value for name, value in settings.headers.items()})
        self.headers = headers

    def chat(self, request: ChatRequest, call: UpstreamCall) -> AsyncGenerator[Event, None]:
        body = request_to_anthropic(request, call.model, call.facts.max_output_tokens, call.params)
        extra = request_headers(request, self.headers)
        headers = {**self.headers, **extra} if extra else self.headers
        return self.exchange(call, self.url, headers, body, self._stream if request.stream else None,
                             self._message)

    async def count_tokens(self, request: ChatRequest, call: UpstreamCall) -> int:
        """``POST /v1/messages/count_tokens`` (protocols.md §3.6)."""
        body = count_tokens_body(request, call.model, call.params)
        extra = request_headers(request, self.headers)
        answer = await self.post_json(call, self.count_url, {**self.headers, **extra}, body)
        if not isinstance(answer, dict) or "input_tokens" not in answer:
            raise self.malformed(orjson.dumps(answer), "a count_tokens answer {\"input_tokens\": ...}")
        return count(answer["input_tokens"])

    def status_error(self, status: int, headers: Headers, raw: bytes) -> UpstreamError:
        return status_error(self.name, status, json_or_text(raw), retry_after(headers))

    def _message(self, raw: bytes) -> list[Event]:
        payload = json_or_text(raw)
        if not isinstance(payload, dict):
            raise self.malformed(raw)
        return events_from_message(payload, self.name)

    async def _stream(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[Event]:
        decoder = MessageDecoder(self.name)
        async for sse in iter_sse(chunks):
            try:
                data = orjson.loads(sse.data)
            except orjson.JSONDecodeError:
                raise self.malformed(sse.data.encode()) from None
            if not isinstance(data, dict):
                raise self.malformed(sse.data.encode())
            # The event name and data.type agree; data.type is what the SDK reads.
            for event in decoder.decode(str(data.get("type") or sse.event or ""), data):
                yield event
            if decoder.done:
                return
        raise UpstreamMalformed(f"provider '{self.name}' ended the stream before message_stop",
                                provider=self.name, code="upstream_stream_cut")

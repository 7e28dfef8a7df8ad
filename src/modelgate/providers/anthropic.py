"""Provider type ``anthropic``: Anthropic's Messages API (``POST /v1/messages``).

Also serves other hosts of the same API (e.g. DeepSeek's ``https://api.deepseek.com/anthropic``):
``base_url`` is the root the SDK would take as ``ANTHROPIC_BASE_URL``. Translation lives in
``anthropic_wire``; this module does the I/O.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from modelgate.http.sse import iter_sse
from modelgate.providers.anthropic_wire import (
    MessageDecoder,
    events_from_message,
    request_headers,
    request_to_anthropic,
    status_error,
)
from modelgate.providers.base import TRANSPORT_ERRORS, Provider, UpstreamCall, json_or_text, retry_after
from modelgate.providers.settings import ProviderSettings
from modelgate.providers.transport import HTTPClient, Response
from modelgate.schema.errors import UpstreamMalformed
from modelgate.schema.events import Event
from modelgate.schema.request import ChatRequest

API_VERSION = "2023-06-01"  # the SDK's default anthropic-version header


class AnthropicProvider(Provider):
    def __init__(self, settings: ProviderSettings, http: HTTPClient) -> None:
        super().__init__(settings, http)
        base = settings.base_url
        self.url = f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if settings.api_key:
            headers["x-api-key"] = settings.api_key
        # Lower-case names, so that a configured anthropic-beta meets the client's (request_headers).
        headers.update({name.lower(): value for name, value in settings.headers.items()})
        self.headers = headers

    async def chat(self, request: ChatRequest, call: UpstreamCall) -> AsyncIterator[Event]:
        body = request_to_anthropic(request, call.model, call.facts.max_output_tokens, call.params)
        extra = request_headers(request, self.headers)
        headers = {**self.headers, **extra} if extra else self.headers
        try:
            async with self.http.post(self.url, data=orjson.dumps(body), headers=headers,
                                      timeout=self.timeout(call)) as response:
                if response.status >= 400:
                    raw = await response.read()
                    raise status_error(self.name, response.status, json_or_text(raw),
                                       retry_after(response.headers))
                if request.stream:
                    async for event in self._stream(response):
                        yield event
                    return
                raw = await response.read()
                payload = json_or_text(raw)
                if not isinstance(payload, dict):
                    raise self.malformed(raw)
                for event in events_from_message(payload, self.name):
                    yield event
        except TRANSPORT_ERRORS as exc:
            raise self.transport_error(exc, call) from exc

    async def _stream(self, response: Response) -> AsyncIterator[Event]:
        decoder = MessageDecoder(self.name)
        async for sse in iter_sse(response.iter_chunks()):
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



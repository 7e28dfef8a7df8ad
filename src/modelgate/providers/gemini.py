"""Provider type ``gemini``: Google's Gemini API, native (``generateContent``).

``POST {base}/v1beta/models/{model}:generateContent``, and ``:streamGenerateContent?alt=sse``
for streams, where each ``data:`` line is a whole ``GenerateContentResponse`` and no terminator
follows the last (protocols.md §6.1). Auth is the ``x-goog-api-key`` header. Translation lives
in ``gemini_wire``; this module does the I/O.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from urllib.parse import quote

import orjson

from modelgate.http.sse import iter_sse
from modelgate.providers.base import Provider, UpstreamCall, json_or_text
from modelgate.providers.gemini_wire import ResponseDecoder, events_from_response, request_to_gemini, status_error
from modelgate.providers.settings import ProviderSettings
from modelgate.providers.transport import Headers, Transport
from modelgate.providers.untrusted import retry_after
from modelgate.schema.errors import UpstreamError
from modelgate.schema.events import Event
from modelgate.schema.request import ChatRequest

API_VERSION = "v1beta"  # the SDK's default for the Gemini Developer API


class GeminiProvider(Provider):
    def __init__(self, settings: ProviderSettings, transport: Transport) -> None:
        super().__init__(settings, transport)
        base = settings.base_url
        # A base_url that already names the API version is taken as is.
        self.root = base if base.rsplit("/", 1)[-1].startswith("v1") else f"{base}/{API_VERSION}"
        headers = {"content-type": "application/json"}
        if settings.api_key:
            headers["x-goog-api-key"] = settings.api_key
        headers.update(settings.headers)
        self.headers = headers

    def url(self, model: str, stream: bool) -> str:
        name = quote(model.removeprefix("models/"), safe="")
        if stream:
            return f"{self.root}/models/{name}:streamGenerateContent?alt=sse"
        return f"{self.root}/models/{name}:generateContent"

    def chat(self, request: ChatRequest, call: UpstreamCall) -> AsyncGenerator[Event, None]:
        body = request_to_gemini(request, call.params, call.model)
        return self.exchange(call, self.url(call.model, request.stream), self.headers, body,
                             self._stream if request.stream else None, self._response)

    def status_error(self, status: int, headers: Headers, raw: bytes) -> UpstreamError:
        return status_error(self.name, status, json_or_text(raw), retry_after(headers))

    def _response(self, raw: bytes) -> list[Event]:
        payload = json_or_text(raw)
        if not isinstance(payload, dict):
            raise self.malformed(raw)
        return events_from_response(payload, self.name)

    async def _stream(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[Event]:
        decoder = ResponseDecoder(self.name)
        async for sse in iter_sse(chunks):
            try:
                chunk = orjson.loads(sse.data)
            except orjson.JSONDecodeError:
                raise self.malformed(sse.data.encode()) from None
            if isinstance(chunk, list) and chunk:  # errors sometimes come wrapped in a list
                chunk = chunk[0]
            if not isinstance(chunk, dict):
                raise self.malformed(sse.data.encode())
            for event in decoder.decode(chunk):
                yield event
        for event in decoder.end():
            yield event

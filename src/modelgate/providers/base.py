"""The provider interface: the one extension point every upstream API plugs into.

Contract for an implementer of ``Provider``:

* ``chat`` takes the canonical request and an ``UpstreamCall`` (the upstream model id, the
  first-byte timeout, the deadline for the whole answer, catalog facts and per-deployment params)
  and yields canonical events:
  ``Start`` first, then deltas, ``Finish`` per choice and ``Usage`` when the upstream reports it.
  For ``request.stream`` false it makes a non-streaming upstream call and yields the same events.
  It returns an async generator (the gateway closes it with ``aclose()``); a request the upstream
  cannot take (``InvalidRequest``) may be refused by the call itself, before anything is sent.
* Errors are raised, never yielded: an ``UpstreamError`` (or subclass) carrying the upstream's
  status, message and Retry-After. After the first event has been yielded a failure is still
  raised; the surface decides how to end the stream.
* It must not read settings files or the environment, touch storage, or retry: retries and
  failover belong to routing. It must not buffer a stream: yield each event as it arrives.
* Cancellation (the client went away) arrives as ``CancelledError`` at an ``await``; let it
  propagate so that the upstream connection is closed.

An adapter reaches its upstream through a ``Transport`` (``transport.py``) and runs one exchange
template, ``Provider.exchange``: send, map an error status with the adapter's ``status_error``,
decode the stream or the whole body with the decoders it passes, map transport failures. It
supplies only the URL, headers and body of a request, its decoders and its error mapping.

Nothing an upstream sends is trusted. Decoders read its values through ``untrusted`` (bounded
counts and indexes, single-line names and ids, Retry-After within bounds); an answer whose shape
a decoder cannot read is ``UpstreamMalformed``; and every error leaving the exchange, whatever
raised it (an error status, an error mid-stream, a malformed answer), has its message, code and
type masked of credentials and cut to length (``Provider.mask``) before anyone sees it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelgate.catalog.facts import ModelFacts
from modelgate.engines.settings import EngineSettings
from modelgate.providers.settings import ProviderSettings
from modelgate.providers.tracecontext import with_trace_context
from modelgate.providers.transport import (
    ConnectError,
    DeadlineExceeded,
    Headers,
    Timeout,
    Transport,
    TransportError,
    UpstreamRequest,
)
from modelgate.providers.untrusted import Masker, retry_after
from modelgate.schema.errors import (
    InvalidRequest,
    UpstreamError,
    UpstreamMalformed,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from modelgate.schema.events import Event
from modelgate.schema.request import ChatRequest, EmbeddingRequest, ModerationRequest

log = logging.getLogger("modelgate.providers")

MAX_DURATION_S = 600.0  # the default deadline of one upstream answer, streams included
MAX_CODE_CHARS = 100  # an upstream's error code, type or param
# The largest whole (non-streamed) answer read: room for the largest embeddings batch as JSON
# floats (2,048 inputs of 3,072 dimensions), with margin. An error body is read to a smaller bound.
MAX_BODY_BYTES = 512 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 1024 * 1024


@dataclass(slots=True)
class UpstreamCall:
    """Where one attempt goes: the upstream's model id and what the deployment says about it."""

    model: str
    timeout: float = 60.0  # seconds to the status line and headers, and of silence between bytes
    max_duration: float = MAX_DURATION_S  # seconds for the whole answer
    facts: ModelFacts = field(default_factory=ModelFacts)
    params: dict[str, Any] = field(default_factory=dict)
    # Which of the upstream's APIs answers: "chat" (chat completions, or the provider's own API)
    # or "responses" (OpenAI's Responses API, for provider types openai and azure).
    api: str = "chat"
    # The engine that runs the model, for a provider of type local (providers/local.py).
    engine: EngineSettings | None = None


# The body of an answer streamed, as it arrives → events; the body of a whole answer → events.
StreamDecoder = Callable[[AsyncIterator[bytes]], AsyncIterator[Event]]
BodyDecoder = Callable[[bytes], Iterable[Event]]


class Provider:
    """Base of every provider adapter; see the module docstring for the contract."""

    def __init__(self, settings: ProviderSettings, transport: Transport) -> None:
        self.settings = settings
        self.name = settings.name
        self.transport = transport
        # The provider's own credentials and configured header values are masked wherever an
        # upstream echoes them, besides anything shaped like a key.
        self.mask = Masker([settings.api_key or "", *settings.headers.values()])

    def chat(self, request: ChatRequest, call: UpstreamCall) -> AsyncGenerator[Event, None]:
        raise NotImplementedError

    async def start(self, calls: Iterable[UpstreamCall]) -> None:
        """Start what the adapter runs itself for ``calls``, the targets that name this provider
        (a local provider's engines); most adapters run nothing. Must return once started, not
        once ready: requests wait for readiness themselves."""

    async def close(self) -> None:
        """Stop what ``start`` started, letting requests in flight finish first."""

    def embed(self, request: EmbeddingRequest, call: UpstreamCall) -> AsyncGenerator[Event, None]:
        raise InvalidRequest(
            f"provider '{self.name}' (type {self.settings.type}) does not serve embeddings; "
            "use a deployment of an embedding model", param="model", code="model_not_supported")

    # Whether the upstream answers OpenAI's /v1/moderations (``moderate``); a moderation check
    # asks any other deployment as a judge, with a chat request (safety/moderation.py).
    serves_moderations = False

    def moderate(self, request: ModerationRequest, call: UpstreamCall) -> AsyncGenerator[Event, None]:
        raise InvalidRequest(
            f"provider '{self.name}' (type {self.settings.type}) does not serve moderations; "
            "use a deployment of an OpenAI moderation model", param="model", code="model_not_supported")

    async def count_tokens(self, request: ChatRequest, call: UpstreamCall) -> int | None:
        """The input tokens of ``request`` as the upstream counts them, where its API has an
        endpoint for that; None where it has none (the caller estimates instead)."""
        return None

    def status_error(self, status: int, headers: Headers, raw: bytes) -> UpstreamError:
        """The error for an answer with an error status (``raw``: its whole body)."""
        raise NotImplementedError

    async def post_json(self, call: UpstreamCall, url: str, headers: Mapping[str, str], body: Any) -> Any:
        """POST ``body`` as JSON to ``url`` and return the answer's JSON, for the calls that yield
        no events (count_tokens); errors are mapped and masked as ``exchange`` maps them."""
        request = UpstreamRequest("POST", url, with_trace_context(headers), orjson.dumps(body), self.timeout(call),
                                  self.settings.proxy)
        try:
            async with self.transport.send(request) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise self.status_error(response.status, response.headers, raw)
        except TRANSPORT_ERRORS as exc:
            raise self.masked(self.transport_error(exc, call)) from exc
        except UpstreamError as error:
            self.masked(error)
            raise
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise self.masked(self.malformed(raw)) from None

    async def exchange(
        self, call: UpstreamCall, url: str, headers: Mapping[str, str], body: Any,
        stream: StreamDecoder | None, decode: BodyDecoder,
    ) -> AsyncGenerator[Event, None]:
        """POST ``body`` as JSON to ``url`` and yield the answer's events: decoded by ``stream``
        as the body arrives when given, else by ``decode`` once it is whole."""
        request = UpstreamRequest("POST", url, with_trace_context(headers), orjson.dumps(body), self.timeout(call),
                                  self.settings.proxy)
        try:
            async with self.transport.send(request) as response:
                if response.status >= 400:
                    raise self.status_error(response.status, response.headers,
                                            await self.read_bounded(response.iter_chunks(), MAX_ERROR_BODY_BYTES,
                                                                    cut=True))
                if stream is not None:
                    async for event in stream(response.iter_chunks()):
                        yield event
                    return
                for event in decode(await self.read_bounded(response.iter_chunks(), MAX_BODY_BYTES)):
                    yield event
        except TRANSPORT_ERRORS as exc:
            raise self.masked(self.transport_error(exc, call)) from exc
        except UpstreamError as error:
            self.masked(error)
            raise
        except UNREADABLE as exc:
            # A decoder met a value of a shape it does not expect: the answer cannot be read.
            log.warning("provider '%s' sent an answer the adapter cannot read", self.name, exc_info=True)
            raise self.masked(UpstreamMalformed(
                f"provider '{self.name}' sent an answer that cannot be read ({type(exc).__name__}: {exc})",
                provider=self.name)) from None

    async def read_bounded(self, chunks: AsyncIterator[bytes], limit: int, *, cut: bool = False) -> bytes:
        """A whole body of at most ``limit`` bytes. Past it, the first ``limit`` bytes when ``cut``
        (an error body: its start says what went wrong), else ``UpstreamMalformed``; the rest is
        not read, and the connection is closed rather than reused."""
        parts: list[bytes] = []
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                if cut:
                    parts.append(chunk[:len(chunk) - (size - limit)])
                    break
                raise UpstreamMalformed(f"provider '{self.name}' sent an answer of more than {limit} bytes",
                                        provider=self.name)
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def masked(self, error: UpstreamError) -> UpstreamError:
        """``error`` with its message, code, type and param masked of credentials and cut to
        length, in place (every error that leaves ``exchange`` comes through here)."""
        mask = self.mask
        error.message = mask(error.message)
        error.args = (error.message,)
        if error.code is not None:
            error.code = mask(error.code, MAX_CODE_CHARS)
        if error.upstream_type is not None:
            error.upstream_type = mask(error.upstream_type, MAX_CODE_CHARS)
        if error.param is not None:
            error.param = mask(error.param, MAX_CODE_CHARS)
        return error

    def timeout(self, call: UpstreamCall) -> Timeout:
        # read bounds the wait for the status line and headers and every later gap between
        # bytes; total the whole answer.
        return Timeout(connect=self.settings.connect_timeout, read=call.timeout, total=call.max_duration)

    def malformed(self, raw: bytes, expected: str = "a JSON object") -> UpstreamError:
        """The error for an upstream answer that cannot be read as ``expected``."""
        return UpstreamMalformed(
            f"provider '{self.name}' sent a body that is not {expected}: "
            f"{raw[:200].decode('utf-8', 'replace')!r}",
            provider=self.name)

    def transport_error(self, exc: BaseException, call: UpstreamCall) -> UpstreamError:
        """Turn a transport or timeout exception into the error clients see."""
        where = self.settings.base_url
        if isinstance(exc, DeadlineExceeded):
            return UpstreamTimeout(
                f"provider '{self.name}' did not finish its answer within {call.max_duration:g}s, the "
                f"deployment's max_duration ({where})", provider=self.name)
        if isinstance(exc, TimeoutError):
            return UpstreamTimeout(
                f"provider '{self.name}' did not answer within {call.timeout:g}s ({where})",
                provider=self.name)
        if isinstance(exc, ConnectError):
            return UpstreamUnreachable(
                f"provider '{self.name}' is unreachable at {where}: {exc.strerror or exc}",
                provider=self.name)
        return UpstreamUnreachable(
            f"provider '{self.name}' broke off the response: {type(exc).__name__}: {exc}",
            provider=self.name)


TRANSPORT_ERRORS = (TransportError, TimeoutError)
# What a decoder raises when an upstream's value is not of the shape it reads.
UNREADABLE = (AttributeError, TypeError, KeyError, IndexError, ValueError)


def json_or_text(raw: bytes) -> Any:
    """An error body as JSON where it is JSON, else its first 500 characters of text."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")[:500]


def upstream_error(
    provider: str, status: int, headers: Mapping[str, str], message: str,
    type: str | None = None, code: str | None = None, param: str | None = None,
) -> UpstreamError:
    return UpstreamError(
        message or f"provider '{provider}' answered HTTP {status}",
        provider=provider, status=status, upstream_type=type, code=code, param=param,
        retry_after=retry_after(headers))

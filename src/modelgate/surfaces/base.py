"""What a surface is, and what it may use of the running gateway.

A surface serves one wire format under one path prefix. It declares its routes, and renders the
gateway's errors in its format; the application picks the surface by the longest prefix that
matches a path, so an unknown route or an unexpected failure under ``/v1/messages`` is answered
in Anthropic's format and one under ``/v1`` in OpenAI's.

Routes that run a model call describe the call's translation as an ``Operation`` (a parser, a
folded answer, a stream) and hand it to ``serve_call`` (``surfaces/lifecycle.py``), which does the
rest the same way for every format: adding a wire format means writing its parser and renderers.
An operation whose calls continue from stored state (the Responses API's ``previous_response_id``)
is also a ``StatefulOperation``: it completes its request from the store before the call runs,
and keeps the answer once it is whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from modelgate.config.settings import DeploymentSettings
from modelgate.http.routing import Route
from modelgate.pipeline.contract import Call, Handler, Principal
from modelgate.schema.errors import GatewayError
from modelgate.schema.events import Event
from modelgate.schema.request import ChatRequest, EmbeddingRequest, ModerationRequest
from modelgate.storage.responses import StoredResponse
from modelgate.telemetry.requestlog import RequestLog
from modelgate.telemetry.tracing import Tracing


class Sealer(Protocol):
    """Seals state a client carries for the gateway (``pipeline/sealing.py``): authenticated
    encryption, so that the client can neither read nor forge it."""

    def seal(self, payload: dict[str, Any]) -> str: ...

    def open(self, token: str) -> dict[str, Any] | None:
        """The payload of a token this gateway sealed; None for anything else."""
        ...


class ResponseStore(Protocol):
    """Stored responses (``storage/responses.py``); another project's response is never found."""

    async def put(self, stored: StoredResponse) -> None: ...

    async def get(self, id: str, project: str | None) -> StoredResponse | None: ...

    async def delete(self, id: str, project: str | None) -> bool: ...

    async def lineage(self, id: str, project: str | None) -> list[StoredResponse]:
        """``id`` and its ancestors, oldest first; [] if ``id`` is not found."""
        ...


class Core(Protocol):
    """What a surface needs of the running gateway: who is calling, which deployment, and the
    chain that answers a call."""

    @property
    def started_at(self) -> int: ...

    @property
    def handler(self) -> Handler: ...

    @property
    def deployments(self) -> Mapping[str, DeploymentSettings]: ...

    @property
    def responses(self) -> ResponseStore: ...

    @property
    def sealer(self) -> Sealer: ...

    @property
    def tracing(self) -> Tracing | None:
        """Spans of requests and attempts; None where the gateway does not trace."""
        ...

    @property
    def request_log(self) -> RequestLog | None:
        """Where each request's entry goes as it ends; None where the gateway keeps no request log."""
        ...

    def authenticate(self, headers: Mapping[str, str]) -> Principal: ...

    def deployment(self, name: str, principal: Principal) -> DeploymentSettings:
        """The deployment a principal asked for; ``NotFound`` if it does not exist for it."""
        ...

    async def count_tokens(self, request: ChatRequest, deployment: DeploymentSettings) -> int | None:
        """The input tokens of ``request`` as the deployment's upstream counts them; None where
        its upstream has no way to count them."""
        ...


class Surface(Protocol):
    prefix: str  # the paths it answers for, e.g. "/v1" or "/v1/messages"

    def routes(self) -> list[Route]: ...

    def error_response(self, error: GatewayError, request_id: str) -> tuple[bytes, dict[str, str]]:
        """The body and headers (besides content type and length) that carry ``error``."""
        ...

    def no_route(self, method: str, path: str, path_known: bool) -> GatewayError:
        """The 404 (or 405 when ``path_known``) for a path under the prefix that has no endpoint."""
        ...


class Fold(Protocol):
    """A non-streaming answer, built from the events as they come."""

    def add(self, event: Event) -> None: ...

    def body(self) -> bytes: ...


class StreamRender(Protocol):
    """A streaming answer: each event framed for the wire (``b""`` when it shows nothing)."""

    def render(self, event: Event) -> bytes: ...

    def close(self) -> bytes:
        """The frames that end a complete stream."""
        ...

    def fail(self, error: GatewayError) -> bytes:
        """The frame that ends a stream which failed after it started."""
        ...


class Operation(Protocol):
    """One model call's translation in one wire format."""

    route: str  # how usage records name it: "chat", "messages", "embeddings", "responses"

    def parse(self, body: Any, headers: Mapping[str, str]) -> ChatRequest | EmbeddingRequest | ModerationRequest: ...

    def headers(self, call: Call) -> dict[str, str]:
        """The response headers of an answer (what answered, the request id)."""
        ...

    def fold(self, call: Call) -> Fold: ...

    def stream(self, call: Call) -> StreamRender: ...


class StatefulOperation(Operation, Protocol):
    """An operation whose calls read and keep state. One instance serves one request, so that
    what ``parse`` learns stays with it until the answer is kept."""

    async def prepare(self, call: Call) -> None:
        """Complete ``call.request`` from stored state (a conversation to continue), once the
        caller and the deployment are known and before the call runs."""
        ...

    async def keep(self, call: Call) -> None:
        """Keep the answer, once it is whole and before its last bytes go out (not called for
        an answer that failed)."""
        ...

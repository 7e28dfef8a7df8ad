"""The per-API contract: how one wire format authenticates, names its request ids and shapes its errors.

Every API module (OpenAI, Azure, Anthropic, Gemini) provides one :class:`Surface` subclass. The shared request
pipeline in :mod:`modelgate.simulator.exchange` only talks to this interface, so faults, pacing and auth
behave identically on every API while each error body stays in its provider's own format.

Contract for implementers: methods are pure (no I/O), never raise, and return complete wire values.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from typing import Any

from aiohttp import web


class SimError(Exception):
    """An error reply, raised anywhere in a handler and rendered by the request's :class:`Surface`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}


class Surface(ABC):
    """One provider wire format as seen by the shared request pipeline."""

    #: name used in stats (``by_api``) and logs
    name: str = ""
    #: response header that carries the request id
    request_id_header: str = "x-request-id"

    def new_request_id(self) -> str:
        return f"req_{uuid.uuid4().hex[:24]}"

    def extra_headers(self, request_id: str) -> dict[str, str]:
        """Headers this API adds to every response besides the request id."""
        return {}

    @abstractmethod
    def api_key(self, request: web.Request) -> str | None:
        """The key the caller sent, from wherever this API expects it."""

    def auth_error(self, key: str | None) -> SimError:
        """The error for a missing (``key is None``) or wrong key; 401 unless the provider differs."""
        if key is None:
            return SimError(401, "Missing API key.", code="missing_api_key")
        return SimError(401, "Incorrect API key provided.", code="invalid_api_key")

    @abstractmethod
    def error_body(self, error: SimError, request_id: str) -> dict[str, Any]:
        """The JSON body of an error reply in this API's format."""

    @abstractmethod
    def stream_error_frame(self, request_id: str, message: str | None = None) -> bytes:
        """The SSE frame this API uses to report a failure after a stream has started (with
        ``message`` in place of its usual text)."""

    def stream_error_frame_at(self, request_id: str, message: str | None, sent: int) -> bytes:
        """``stream_error_frame`` after ``sent`` frames, for APIs that number their events."""
        return self.stream_error_frame(request_id, message)

    def carries_content(self, data: Any) -> bool:
        """Whether ``data``, the JSON of one frame of this API's streams, carries answer content."""
        return False

    def malformed_frame(self) -> bytes:
        """A ``data:`` line whose payload is not JSON."""
        return b'data: {"this is not": json\n\n'

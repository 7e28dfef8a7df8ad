"""Every error the gateway raises on purpose; each surface renders them in its own wire format.

    GatewayError                    status, code, message, param, retry_after, headers
    ├── InternalError           500  a bug of ours; the log has the details
    ├── InvalidRequest          400  a client's mistake in the request
    │   ├── ContentFiltered     400  a content policy blocked the prompt; carries its verdicts
    │   ├── RequestTooLarge     413  the body is over the limit
    │   ├── UnsupportedMediaType 415 a body that is not JSON
    │   └── ClientDisconnected  499  the client left before its body was complete (answered to no one)
    ├── AuthenticationFailed    401  missing or wrong key
    ├── PermissionDenied        403  the key may not use this
    ├── NotFound                404  unknown route, deployment or record
    ├── MethodNotAllowed        405  the path exists under another method
    ├── Conflict                409  the record exists already
    ├── RateLimited             429  a limit of ours; carries retry_after
    │   └── BudgetExceeded      429  a budget is spent (OpenAI's insufficient_quota)
    ├── ServiceUnavailable      503  a check that cannot be made now is refused; carries retry_after
    └── UpstreamError           the provider said no: keeps its status, type and Retry-After
        ├── UpstreamUnreachable 502  connection refused or broken
        ├── UpstreamTimeout     504  no answer in time
        └── UpstreamMalformed   502  an answer that cannot be read, or a stream cut short

An error carries what happened (status, code, message), never how a wire format names it: each
surface maps the class and status to its own vocabulary (``surfaces/openai_format/render.py``,
``surfaces/anthropic/render.py``). The one exception is ``UpstreamError.upstream_type``, the
type an OpenAI-compatible upstream named itself, which OpenAI-format clients get back as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from modelgate.schema.verdicts import Verdict

__all__ = [
    "AuthenticationFailed",
    "BudgetExceeded",
    "ClientDisconnected",
    "Conflict",
    "ContentFiltered",
    "GatewayError",
    "InternalError",
    "InvalidRequest",
    "MethodNotAllowed",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "RequestTooLarge",
    "ServiceUnavailable",
    "UnsupportedMediaType",
    "UpstreamError",
    "UpstreamMalformed",
    "UpstreamTimeout",
    "UpstreamUnreachable",
]


class GatewayError(Exception):
    """Base of the tree. ``status`` and ``code`` default per class; ``code`` may be given per
    error. ``headers`` are response headers the answer carries besides its body (x-ratelimit-*
    on a 429)."""

    status: int = 500
    default_code: ClassVar[str | None] = None

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.default_code
        self.param = param
        self.retry_after = retry_after
        self.headers: dict[str, str] = {}


class InternalError(GatewayError):
    status = 500
    default_code = "internal_error"


class InvalidRequest(GatewayError):
    status = 400


class ContentFiltered(InvalidRequest):
    """A content policy blocked the prompt (safety/): ``policy`` names it, ``verdicts`` say what
    each of its checks found, for the surfaces to report (Azure's ``innererror``)."""

    default_code = "content_filter"

    def __init__(self, message: str, *, policy: str, verdicts: Sequence[Verdict]) -> None:
        super().__init__(message, param="prompt")
        self.policy = policy
        self.verdicts = tuple(verdicts)


class RequestTooLarge(InvalidRequest):
    status = 413
    default_code = "request_too_large"


class UnsupportedMediaType(InvalidRequest):
    status = 415
    default_code = "unsupported_media_type"


class ClientDisconnected(InvalidRequest):
    """The connection closed before the request body was complete: nobody reads the answer, and
    nothing went wrong on our side (nginx's 499)."""

    status = 499
    default_code = "client_disconnected"


class AuthenticationFailed(GatewayError):
    status = 401
    default_code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403


class NotFound(GatewayError):
    status = 404


class MethodNotAllowed(GatewayError):
    status = 405
    default_code = "method_not_allowed"


class Conflict(GatewayError):
    status = 409
    default_code = "already_exists"


class RateLimited(GatewayError):
    status = 429
    default_code = "rate_limit_exceeded"


class BudgetExceeded(RateLimited):
    """A key's or project's budget is spent: 429, as OpenAI answers a spent quota."""

    default_code = "insufficient_quota"


class ServiceUnavailable(GatewayError):
    """A check the request needs cannot be made now (the store of limits or budgets is unreachable)
    and the gateway is set to refuse rather than let it pass unchecked: 503, with ``Retry-After``."""

    status = 503
    default_code = "service_unavailable"


class UpstreamError(GatewayError):
    """An error answer from a provider, or a failure to get one.

    ``provider`` names the configured provider; ``status`` is what the provider answered (or
    what stands for its failure); ``upstream_type`` is the error type an OpenAI-compatible
    upstream gave, if any. ``retryable`` says whether the same request may succeed if sent again
    (429, 5xx, 529, refused connections, timeouts).
    """

    def __init__(self, message: str, *, provider: str, status: int = 502, upstream_type: str | None = None,
                 code: str | None = None, param: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, code=code, param=param, retry_after=retry_after)
        self.provider = provider
        self.status = status
        self.upstream_type = upstream_type

    @property
    def retryable(self) -> bool:
        return self.status in (408, 409, 429) or self.status >= 500

    def restated(self, message: str, *, code: str | None = None) -> UpstreamError:
        """The same error, of the same class, with another message (and code)."""
        other = self.__class__.__new__(self.__class__)
        other.__dict__.update(self.__dict__)
        Exception.__init__(other, message)
        other.message = message
        if code is not None:
            other.code = code
        return other


class UpstreamUnreachable(UpstreamError):
    def __init__(self, message: str, *, provider: str) -> None:
        super().__init__(message, provider=provider, status=502, code="upstream_unreachable")


class UpstreamTimeout(UpstreamError):
    def __init__(self, message: str, *, provider: str) -> None:
        super().__init__(message, provider=provider, status=504, code="upstream_timeout")


class UpstreamMalformed(UpstreamError):
    """The provider's answer could not be read: not the JSON it should be, or a stream cut short
    (``code`` says which).

    ``upstream_healthy``: the upstream answered whole, as a working one does, and the answer fails
    what the request asked of it (a local model's structured output that is not JSON of its
    schema). The router may still try a fallback, but no breaker counts it against the target."""

    def __init__(self, message: str, *, provider: str, code: str = "upstream_malformed",
                 upstream_healthy: bool = False) -> None:
        super().__init__(message, provider=provider, status=502, code=code)
        self.upstream_healthy = upstream_healthy

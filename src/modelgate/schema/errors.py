"""Errors raised anywhere in the gateway; each surface renders them in its own wire format.

    GatewayError                    status, type, code, message, param, retry_after
    ├── InvalidRequest              400  a client's mistake in the request
    ├── AuthenticationFailed        401  missing or wrong key
    ├── PermissionDenied            403  the key may not use this
    ├── NotFound                    404  unknown route or deployment
    ├── RateLimited                 429  a limit of ours; carries retry_after
    └── UpstreamError               the provider said no: keeps its status and Retry-After
        ├── UpstreamUnreachable     502  connection refused or broken
        └── UpstreamTimeout         504  no answer in time

``type`` follows OpenAI's vocabulary (invalid_request_error, authentication_error, ...); surfaces
for other formats map it to theirs.
"""

from __future__ import annotations


class GatewayError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.param = param
        self.retry_after = retry_after
        # Response headers an error answer carries besides its body (x-ratelimit-* on a 429).
        self.headers: dict[str, str] = {}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamError(GatewayError):
    """An error answer from a provider, or a failure to get one.

    ``provider`` names the configured provider; ``retryable`` says whether the same request may
    succeed if sent again (429, 5xx, 529, refused connections, timeouts).
    """

    type = "upstream_error"

    def __init__(self, message: str, *, provider: str, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.provider = provider

    @property
    def retryable(self) -> bool:
        return self.status in (408, 409, 429) or self.status >= 500


class UpstreamUnreachable(UpstreamError):
    status = 502
    type = "upstream_unreachable"
    code = "upstream_unreachable"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "upstream_timeout"
    code = "upstream_timeout"


def error_type_for_status(status: int) -> str:
    """OpenAI's error type for an HTTP status."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    if status < 500:
        return "invalid_request_error"
    return "server_error"

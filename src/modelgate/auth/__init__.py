"""Who is calling: API keys from the request headers, checked without leaving the process."""

from modelgate.auth.keys import NO_LIMITS, Authenticator, Limits, Principal, key_from_headers

__all__ = ["NO_LIMITS", "Authenticator", "Limits", "Principal", "key_from_headers"]

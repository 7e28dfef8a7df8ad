"""Who is calling: API keys from the request headers, checked without leaving the process."""

from modelgate.auth.keys import Authenticator, key_from_headers
from modelgate.pipeline.contract import NO_LIMITS, Limits, Principal

__all__ = ["NO_LIMITS", "Authenticator", "Limits", "Principal", "key_from_headers"]

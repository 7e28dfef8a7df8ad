"""Who is calling: API keys from the request headers, checked without leaving the process."""

from modelgate.auth.keys import Authenticator, Principal, key_from_headers

__all__ = ["Authenticator", "Principal", "key_from_headers"]

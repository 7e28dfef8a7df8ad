"""API key authentication.

Clients send the key the way their SDK does: ``Authorization: Bearer`` (openai), ``x-api-key``
(anthropic) or ``api-key`` (Azure clients). A gateway without a master key is open: every caller
is the master, which suits the demo and a laptop, and start-up says so in the log.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Protocol

from modelgate.pipeline.contract import Principal
from modelgate.schema.errors import AuthenticationFailed

MASTER = Principal(key_id="master")


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if value:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return headers.get("x-api-key") or headers.get("api-key") or None


class KeyLookup(Protocol):
    def lookup(self, key: str) -> Principal | None: ...


class Authenticator:
    """The master key, and project keys through ``keys`` (auth/keystore.py's in-memory
    ``KeyCache``): authenticating never leaves the process."""

    def __init__(self, master_key: str | None, keys: KeyLookup | None = None) -> None:
        self._master = master_key.encode() if master_key else None
        self._keys = keys

    @property
    def open(self) -> bool:
        return self._master is None

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        key = key_from_headers(headers)
        if key is not None and self._keys is not None:
            # A project key keeps its limits even on an open gateway.
            principal = self._keys.lookup(key)
            if principal is not None:
                return principal
        if self._master is None:
            return MASTER
        if key is None:
            raise AuthenticationFailed(
                "No API key provided. Send it as 'Authorization: Bearer <key>', 'x-api-key' or 'api-key'.",
                code="missing_api_key")
        if hmac.compare_digest(key.encode(), self._master):
            return MASTER
        raise AuthenticationFailed(
            "Incorrect API key provided. Use the gateway's master key or a key from 'modelgate keys create'.")

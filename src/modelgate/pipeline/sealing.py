"""Sealed tokens: state the gateway hands a client to send back, which the client can neither read
nor forge (the Responses API's ``encrypted_content`` of reasoning items).

A token is URL-safe base64, without padding, of::

    version (1 byte, 1) | nonce (12 random bytes) | AES-256-GCM ciphertext of the payload's JSON, with its 16-byte tag

The associated data names the token's use (``b"modelgate.reasoning.v1"``), so a token sealed for one
use does not open for another even under the same key. The AES key is derived from the gateway's
secret (``secret_key`` in the config, or the one kept in the database: ``storage/secrets.py``) with
HKDF-SHA256, so any secret of 32 characters or more makes a full-strength key.

``open`` answers None for anything that is not a token this gateway sealed for this use: altered,
truncated, padded, not base64, another version, another key. It never raises for what a client sent.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from modelgate.config.secret import secret_problem

VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
REASONING = b"modelgate.reasoning.v1"
_HEADER = bytes([VERSION])
_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def derive_key(secret: str) -> bytes:
    """The 256-bit AES key of a secret."""
    problem = secret_problem(secret)
    if problem:
        raise ValueError(f"the sealing secret {problem}")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"modelgate sealing key v1")
    return hkdf.derive(secret.encode("utf-8", "surrogatepass"))


class Sealer:
    """Seals payloads into tokens and opens them again, for one use (``purpose``)."""

    __slots__ = ("_aead", "purpose")

    def __init__(self, key: bytes, purpose: bytes = REASONING) -> None:
        if len(key) != 32:
            raise ValueError(f"a sealing key has 32 bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self.purpose = purpose

    @classmethod
    def from_secret(cls, secret: str, purpose: bytes = REASONING) -> Sealer:
        return cls(derive_key(secret), purpose)

    def seal(self, payload: dict[str, Any]) -> str:
        """The token of ``payload`` (anything orjson writes as JSON)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, orjson.dumps(payload), self.purpose)
        return base64.urlsafe_b64encode(_HEADER + nonce + sealed).rstrip(b"=").decode("ascii")

    def open(self, token: str) -> dict[str, Any] | None:
        """The payload of a token this sealer made, or None."""
        raw = _decode(token)
        if raw is None or len(raw) < 1 + NONCE_BYTES + TAG_BYTES or raw[0] != VERSION:
            return None
        try:
            plain = self._aead.decrypt(raw[1:1 + NONCE_BYTES], raw[1 + NONCE_BYTES:], self.purpose)
        except InvalidTag:
            return None
        try:
            payload = orjson.loads(plain)
        except orjson.JSONDecodeError:
            return None  # sealed by this key, so never expected
        return payload if isinstance(payload, dict) else None


def _decode(token: object) -> bytes | None:
    """The bytes of a token, only from its one canonical text: no padding, no other alphabet, no
    stray bits in the last character (base64 decoders ignore those, so two texts would open alike)."""
    if not isinstance(token, str) or not token or len(token) % 4 == 1 or not _URLSAFE.issuperset(token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        return None
    return raw

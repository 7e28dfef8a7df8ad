"""Sealed tokens: state the gateway hands a client to carry and later gets back unchanged.

A token is a JSON object encrypted and authenticated with the gateway's key (AES-256-GCM), as
URL-safe base64: ``version byte | 12-byte nonce | ciphertext and tag``. Clients can neither read
nor alter it; ``open`` answers None for anything the key did not seal (altered, truncated, sealed
with another key, or not a token at all), and the caller decides what that means.

The Responses API's ``encrypted_content`` is such a token: it carries the reasoning state an
upstream needs on the next turn (thinking signatures, thought signatures, raw reasoning text).
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = b"\x01"
NONCE_BYTES = 12
KEY_BYTES = 32
# Bound to every token, so that a token sealed for another purpose with the same key never opens here.
CONTEXT = b"modelgate sealed state v1"


class AESGCMSealer:
    """Seals and opens tokens with one 32-byte key."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a sealing key is {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)

    def seal(self, payload: dict[str, Any]) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, orjson.dumps(payload), CONTEXT)
        return base64.urlsafe_b64encode(VERSION + nonce + sealed).decode("ascii")

    def open(self, token: str) -> dict[str, Any] | None:
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return None
        if len(raw) <= 1 + NONCE_BYTES or raw[:1] != VERSION:
            return None
        try:
            plain = self._aead.decrypt(raw[1:1 + NONCE_BYTES], raw[1 + NONCE_BYTES:], CONTEXT)
        except InvalidTag:
            return None
        payload = orjson.loads(plain)  # sealed by us, so JSON
        return payload if isinstance(payload, dict) else None

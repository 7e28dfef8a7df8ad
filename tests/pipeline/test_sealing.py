"""Sealed tokens open only as they were sealed, with the key that sealed them."""

from __future__ import annotations

import base64

import pytest

from modelgate.pipeline.sealing import KEY_BYTES, AESGCMSealer

KEY = bytes(range(KEY_BYTES))
PAYLOAD = {"origin": "anthropic", "text": "Let me think.", "signature": "sig", "calls": {"call_1": "ts"}}


def test_a_token_opens_to_its_payload_and_hides_it() -> None:
    sealer = AESGCMSealer(KEY)
    token = sealer.seal(PAYLOAD)
    assert sealer.open(token) == PAYLOAD
    assert "think" not in base64.urlsafe_b64decode(token).decode("latin-1")
    assert sealer.seal(PAYLOAD) != token  # a fresh nonce each time


def test_anything_else_does_not_open() -> None:
    sealer = AESGCMSealer(KEY)
    token = sealer.seal(PAYLOAD)
    raw = bytearray(base64.urlsafe_b64decode(token))
    raw[-1] ^= 1
    altered = base64.urlsafe_b64encode(bytes(raw)).decode()
    other = AESGCMSealer(bytes(KEY_BYTES)).seal(PAYLOAD)
    wrong_version = base64.urlsafe_b64encode(b"\x02" * 40).decode()
    for forged in (altered, other, token[:-4], "", "not base64 !", "é", wrong_version):
        assert sealer.open(forged) is None


def test_the_key_has_its_size() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        AESGCMSealer(b"short")

"""Sealed tokens: they open only as sealed, under the key and for the use they were sealed with."""

from __future__ import annotations

import base64

import pytest

from modelgate.pipeline.sealing import NONCE_BYTES, TAG_BYTES, Sealer, derive_key

SECRET = "a-test-secret-of-more-than-32-characters"
PAYLOAD = {"origin": "anthropic", "text": "thinking…", "signature": "EqQBCkgIARAB", "redacted": False,
           "id": "rs_1", "calls": {"call_1": "c2lnbmF0dXJl"}}


def raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def text(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_payload_comes_back_as_it_was_sealed() -> None:
    sealer = Sealer.from_secret(SECRET)
    token = sealer.seal(PAYLOAD)
    assert sealer.open(token) == PAYLOAD
    # Another sealer of the same secret (another process) opens it too.
    assert Sealer.from_secret(SECRET).open(token) == PAYLOAD
    # URL-safe, unpadded, and the payload is not readable in it.
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert b"EqQBCkgIARAB" not in raw(token)
    # A fresh nonce each time: the same payload never makes the same token twice.
    assert sealer.seal(PAYLOAD) != token


def test_every_altered_byte_is_refused() -> None:
    sealer = Sealer.from_secret(SECRET)
    data = raw(sealer.seal(PAYLOAD))
    regions = {"version": range(0, 1), "nonce": range(1, 1 + NONCE_BYTES),
               "ciphertext": range(1 + NONCE_BYTES, len(data) - TAG_BYTES),
               "tag": range(len(data) - TAG_BYTES, len(data))}
    for region, positions in regions.items():
        for i in positions:
            for flip in (0x01, 0x80):
                altered = bytearray(data)
                altered[i] ^= flip
                assert sealer.open(text(bytes(altered))) is None, (region, i, flip)


def test_truncated_extended_and_spliced_tokens_are_refused() -> None:
    sealer = Sealer.from_secret(SECRET)
    token = sealer.seal(PAYLOAD)
    data = raw(token)
    for cut in (0, 1, 1 + NONCE_BYTES, 1 + NONCE_BYTES + TAG_BYTES - 1, len(data) - 1):
        assert sealer.open(text(data[:cut])) is None
    assert sealer.open(text(data + b"\x00")) is None
    # The nonce of one token with the ciphertext of another.
    other = raw(sealer.seal(PAYLOAD))
    assert sealer.open(text(data[:1 + NONCE_BYTES] + other[1 + NONCE_BYTES:])) is None
    for cut in range(1, 4):
        assert sealer.open(token[:-cut]) is None


def test_only_the_canonical_text_of_a_token_opens() -> None:
    sealer = Sealer.from_secret(SECRET)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # Payloads of three lengths in a row: tokens ending with each of the partial last groups.
    tokens = [sealer.seal({"text": "x" * n}) for n in range(3)]
    assert sorted(len(t) % 4 for t in tokens) == [0, 2, 3]
    for token in tokens:
        assert sealer.open(token) is not None
        assert sealer.open(token + "==") is None  # padded
        assert sealer.open(" " + token) is None
        assert sealer.open(token + "\n") is None
        standard = token.replace("-", "+").replace("_", "/")
        if standard != token:
            assert sealer.open(standard) is None  # the other alphabet
        unused_bits = {0: 0, 2: 4, 3: 2}[len(token) % 4]
        if unused_bits:
            # The last character carries bits that decoders drop: a twin differing only there
            # decodes to the same bytes, and is still refused.
            twin = token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]
            assert raw(twin) == raw(token)
            assert sealer.open(twin) is None


def test_another_key_or_another_use_does_not_open_it() -> None:
    token = Sealer.from_secret(SECRET).seal(PAYLOAD)
    assert Sealer.from_secret(SECRET + "!").open(token) is None
    assert Sealer.from_secret(SECRET, purpose=b"modelgate.other.v1").open(token) is None
    assert Sealer(bytes(32)).open(token) is None


@pytest.mark.parametrize("garbage", ["", "A", "AAAA", "not a token", "%%%%", "\udc80", "é" * 10,
                                     "A" * 10_000, "AQ", text(b"\x02" + bytes(40)), text(b"\x01" + bytes(40))])
def test_garbage_opens_to_none(garbage: str) -> None:
    assert Sealer.from_secret(SECRET).open(garbage) is None


def test_what_is_not_a_string_opens_to_none() -> None:
    sealer = Sealer.from_secret(SECRET)
    for value in (None, 5, b"bytes", ["list"]):
        assert sealer.open(value) is None  # type: ignore[arg-type]


def test_a_short_secret_or_key_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"at least 32 random characters .*openssl rand -base64 32"):
        Sealer.from_secret("short")
    with pytest.raises(ValueError, match="32 bytes, not 16"):
        Sealer(bytes(16))
    assert len(derive_key("x" * 32)) == 32
    assert derive_key("x" * 32) != derive_key("x" * 33)

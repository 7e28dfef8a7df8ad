"""Values from an upstream made safe: Retry-After, counts, indexes, names, and error text masked of
credentials and cut to length."""

from __future__ import annotations

import email.utils
import time

import pytest

from modelgate.providers.transport import Headers
from modelgate.providers.untrusted import (
    MASK,
    MAX_COUNT,
    MAX_ERROR_CHARS,
    MAX_RETRY_AFTER_S,
    Masker,
    count,
    index,
    json_text,
    label,
    retry_after,
    text,
)


@pytest.mark.parametrize(("headers", "expected"), [
    ({"retry-after": "7"}, 7.0),
    ({"retry-after": "1.5"}, 1.5),
    ({"retry-after": "0"}, 0.0),
    ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
    ({"retry-after": "86400"}, MAX_RETRY_AFTER_S),  # a day: capped
    ({"retry-after": "nan"}, None),
    ({"retry-after": "NaN"}, None),
    ({"retry-after": "inf"}, None),
    ({"retry-after": "-Infinity"}, None),
    ({"retry-after": "1e400"}, None),
    ({"retry-after": "-5"}, None),
    ({"retry-after": "not-a-date"}, None),
    ({"retry-after": "Sun, 99 Foo 20xx 25:61:61 GMT"}, None),
    ({"retry-after": "Fri, 31 Dec 99999 23:59:59 GMT"}, None),
    ({"retry-after": "x" * 10_000}, None),
    ({"retry-after-ms": "nan", "retry-after": "3"}, 3.0),  # an unusable ms value falls back to seconds
    ({"retry-after-ms": "1e400"}, None),
    ({"retry-after-ms": "-1"}, None),
    ({}, None),
])
def test_retry_after_is_a_bounded_finite_number_of_seconds_or_none(headers: dict[str, str],
                                                                    expected: float | None) -> None:
    assert retry_after(Headers(headers)) == expected


def test_retry_after_as_an_http_date() -> None:
    later = retry_after(Headers({"retry-after": email.utils.formatdate(time.time() + 30, usegmt=True)}))
    assert later is not None and 25 < later <= 30
    # A date that passed: retry now. A date without a zone ("-0000") is UTC.
    assert retry_after(Headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    far = email.utils.formatdate(time.time() + 30, usegmt=True).replace("GMT", "-0000")
    naive = retry_after(Headers({"retry-after": far}))
    assert naive is not None and 25 < naive <= 30
    year_ahead = email.utils.formatdate(time.time() + 365 * 86400, usegmt=True)
    assert retry_after(Headers({"retry-after": year_ahead})) == MAX_RETRY_AFTER_S


def test_counts_and_indexes_are_bounded_ints() -> None:
    assert [count(v) for v in (12, 0, -3, 2**70, 1e308, 3.9, "12", None, True, [1], float("nan"))] == [
        12, 0, 0, MAX_COUNT, MAX_COUNT, 3, 0, 0, 0, 0, 0]
    assert [index(v) for v in (0, 3, -1, 10**9, "1", None, False, 1.0)] == [0, 3, 0, 0, 0, 0, 0, 0]


def test_labels_are_short_single_lines() -> None:
    assert label("gpt-4o") == "gpt-4o"
    assert label("gpt\r\nx-evil: 1") == "gptx-evil: 1"
    assert label("\u6a21\u578b") == "\u6a21\u578b"
    assert label("a\x00b\x7fc\x85d") == "abcd"
    assert [label(v) for v in (42, None, {"a": 1}, ["x"])] == ["", "", "", ""]
    assert label("m" * 10_000) == "m" * 256 and label("m\n" * 10_000) == "m" * 256


def test_text_and_arguments() -> None:
    assert text("hi") == "hi" and text(None) == "" and text(5) == ""
    assert text([{"type": "text", "text": "a"}, {"text": 5}, "x", {"text": "b"}]) == "ab"
    assert json_text('{"a":1}') == '{"a":1}' and json_text({"a": 1}) == '{"a":1}' and json_text(3) == ""


SECRET = "my-own-configured-secret"


@pytest.mark.parametrize(("message", "masked"), [
    # The provider's own key and header values, exactly, whatever their shape.
    (f"bad key {SECRET}!", f"bad key {MASK}!"),
    ("header value tenant-ABCDEF echoed", f"header value {MASK} echoed"),
    # Shapes of well-known keys.
    ("Incorrect API key provided: sk-proj-abc123DEF456ghi789.", f"Incorrect API key provided: {MASK}."),
    ("sk-ant-api03-AbCdEf0123456789-xyz_ABC is revoked", f"{MASK} is revoked"),
    ("key=AIzaSyA1234567890abcdefghijklmnopqrstu", f"key={MASK}"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789 used", f"token {MASK} used"),
    ("id AKIAIOSFODNN7EXAMPLE here", f"id {MASK} here"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJl ok", f"jwt {MASK} ok"),
    ("Authorization: Bearer abc.DEF-123_xyz", f"Authorization: Bearer {MASK}"),
    ("proxy said Basic dXNlcjpwYXNzd29yZA==", f"proxy said Basic {MASK}"),
    # A long token with a digit after a word that names a credential.
    ("api-key: 0123456789abcdef0123456789abcdef", f"api-key: {MASK}"),
    ("x-goog-api-key=ZZZZ1111YYYY2222", f"x-goog-api-key={MASK}"),
    ("the token is 'A1b2C3d4E5f6G7h8'", f"the token is '{MASK}'"),
    ('"password": "hunter2hunter2"', f'"password": "{MASK}"'),
    # Ordinary error text stays as it is.
    ("This model's maximum context length is 128000 tokens.", None),
    ("context_length_exceeded: max_tokens 4096 is too large", None),
    ("Invalid 'messages[0].content': expected a string", None),
    ("The API key is invalid.", None),
    ("Rate limit reached for requests; retry after 20s (request req_0123456789abcdef)", None),
])
def test_error_text_is_masked_of_anything_like_a_credential(message: str, masked: str | None) -> None:
    mask = Masker([SECRET, "tenant-ABCDEF", "1", ""])  # values too short to be secrets are left alone
    assert mask(message) == (masked if masked is not None else message)


def test_error_text_is_cut_to_length_after_masking_and_loses_control_characters() -> None:
    mask = Masker([SECRET])
    long = "x" * (MAX_ERROR_CHARS - 10) + SECRET + "y" * 5000
    cut = mask(long)
    assert len(cut) == MAX_ERROR_CHARS and cut.endswith("…") and SECRET[:10] not in cut
    assert mask("a\x00b\x1bc\nd\te") == "abc\nd\te"
    short = mask(f"{SECRET} " * 3)
    assert short == f"{MASK} {MASK} {MASK} " and not short.endswith("…")
    huge = mask("z" * 10_000_000)
    assert len(huge) == MAX_ERROR_CHARS

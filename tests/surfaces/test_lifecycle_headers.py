"""The headers every surface derives from a call and its errors stay valid HTTP whatever an upstream
sent: what answered, and Retry-After."""

from __future__ import annotations

import pytest

from modelgate.schema.errors import RateLimited, UpstreamError
from modelgate.surfaces.lifecycle import MAX_HEADER_CHARS, error_headers, header_value


@pytest.mark.parametrize(("value", "shown"), [
    ("gpt-4o-2024-08-06", "gpt-4o-2024-08-06"),
    ("models/gemini-2.5-flash", "models/gemini-2.5-flash"),
    ("gpt\r\nx-evil: 1", "gpt%0D%0Ax-evil: 1"),
    ("\u6a21\u578b", "%E6%A8%A1%E5%9E%8B"),
    ("caf\u00e9", "caf%C3%A9"),  # Latin-1, but not ASCII: encoded too, so clients read it one way
    ("50%", "50%25"),
    (42, ""),
    (None, ""),
])
def test_header_values_are_visible_ascii(value: object, shown: str) -> None:
    assert header_value(value) == shown and header_value(value).isascii()


def test_a_long_header_value_is_cut_without_cutting_an_escape() -> None:
    assert header_value("m" * 1000) == "m" * MAX_HEADER_CHARS
    cut = header_value("\u6a21" * 1000)
    assert len(cut) <= MAX_HEADER_CHARS and cut == "%E6%A8%A1" * (MAX_HEADER_CHARS // 9)
    assert header_value("\ud800x") == "%3Fx"  # a lone surrogate cannot be UTF-8: replaced


@pytest.mark.parametrize(("wait", "header"), [
    (7.0, "7"), (0.2, "1"), (2.5, "2"), (1e9, "86400"),
    (float("nan"), None), (float("inf"), None), (float("-inf"), None), (None, None),
])
def test_retry_after_is_whole_seconds_or_left_out(wait: float | None, header: str | None) -> None:
    for error in (UpstreamError("x", provider="p", status=429, retry_after=wait), RateLimited("y", retry_after=wait)):
        headers = error_headers(error, {"x-request-id": "req_1"})
        assert headers.get("retry-after") == header and headers["x-request-id"] == "req_1"

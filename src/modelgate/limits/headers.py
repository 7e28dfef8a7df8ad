"""The rate-limit response headers: OpenAI's, and Anthropic's made from them.

OpenAI's are ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``, all six on every answer;
the reset values are Go duration strings as OpenAI sends them: ``12ms``, ``1s``, ``6m0s``,
``23h18m29.144s`` (https://platform.openai.com/docs/guides/rate-limits#rate-limits-in-headers).
A kind the gateway does not limit for the caller is reported as ``UNLIMITED`` units, all of them
left, reset ``0s``: clients that pace themselves by these headers read every one of them, and
such a caller never runs out.

Anthropic's are ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}``
with the reset as an RFC 3339 time (https://docs.claude.com/en/api/rate-limits#response-headers),
only for the kinds that are limited. The gateway counts input and output tokens against one
tokens-per-minute limit, so the three token kinds report the same counter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from modelgate.limits.gcra import Counter, CounterState

UNLIMITED = 2**31 - 1  # what a client that reads the header into a 32-bit integer can still hold
KINDS = ("requests", "tokens")
UNLIMITED_HEADERS: dict[str, str] = {
    header: value
    for kind in KINDS
    for header, value in ((f"x-ratelimit-limit-{kind}", str(UNLIMITED)),
                          (f"x-ratelimit-remaining-{kind}", str(UNLIMITED)),
                          (f"x-ratelimit-reset-{kind}", "0s"))
}
# Anthropic's names for what each of OpenAI's kinds counts.
ANTHROPIC_KINDS: dict[str, tuple[str, ...]] = {
    "requests": ("requests",),
    "tokens": ("tokens", "input-tokens", "output-tokens"),
}
GO_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(\d+(?:\.\d+)?)s")


def go_duration(ms: float) -> str:
    """A duration as Go's ``time.Duration.String`` writes it, to the millisecond."""
    total = round(ms)
    if total <= 0:
        return "0s"
    if total < 1000:
        return f"{total}ms"
    hours, rest = divmod(total, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    text = f"{seconds}.{millis:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def go_duration_ms(text: str) -> float | None:
    """The milliseconds of a duration ``go_duration`` wrote; None for anything else."""
    if text.endswith("ms") and text[:-2].isdigit():
        return float(text[:-2])
    match = GO_DURATION.fullmatch(text)
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return (int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds)) * 1000


def ratelimit_headers(counters: Sequence[Counter], states: Sequence[CounterState]) -> dict[str, str]:
    """All six headers: for each kind its tightest counter (fewest remaining, then longest reset),
    or ``UNLIMITED`` where no counter of that kind applies."""
    requests: CounterState | None = None
    tokens: CounterState | None = None
    for i in range(len(counters)):
        state = states[i]
        if counters[i].kind == "requests":
            if requests is None or _tighter(state, requests):
                requests = state
        elif tokens is None or _tighter(state, tokens):
            tokens = state
    headers = dict(UNLIMITED_HEADERS)
    for kind, tightest in (("requests", requests), ("tokens", tokens)):
        if tightest is not None:
            headers[f"x-ratelimit-limit-{kind}"] = str(tightest.limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(tightest.remaining)
            headers[f"x-ratelimit-reset-{kind}"] = go_duration(tightest.reset_ms)
    return headers


def anthropic_ratelimit_headers(headers: Mapping[str, str], now: float) -> dict[str, str]:
    """Anthropic's rate-limit headers for the limited kinds among OpenAI's ``headers`` (those the
    rate-limit stage set), resets as RFC 3339 times after ``now`` (unix seconds)."""
    out: dict[str, str] = {}
    for kind, names in ANTHROPIC_KINDS.items():
        limit, remaining = headers.get(f"x-ratelimit-limit-{kind}"), headers.get(f"x-ratelimit-remaining-{kind}")
        reset_ms = go_duration_ms(headers.get(f"x-ratelimit-reset-{kind}", ""))
        if limit is None or remaining is None or reset_ms is None or limit == str(UNLIMITED):
            continue
        reset = datetime.fromtimestamp(math.ceil(now + reset_ms / 1000), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for name in names:
            out[f"anthropic-ratelimit-{name}-limit"] = limit
            out[f"anthropic-ratelimit-{name}-remaining"] = remaining
            out[f"anthropic-ratelimit-{name}-reset"] = reset
    return out


def _tighter(a: CounterState, b: CounterState) -> bool:
    return a.remaining < b.remaining or (a.remaining == b.remaining and a.reset_ms > b.reset_ms)

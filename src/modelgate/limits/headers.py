"""OpenAI's rate-limit response headers.

``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``; the reset values are Go duration
strings as OpenAI sends them: ``12ms``, ``1s``, ``6m0s``, ``23h18m29.144s``
(https://platform.openai.com/docs/guides/rate-limits#rate-limits-in-headers).
"""

from __future__ import annotations

from collections.abc import Sequence

from modelgate.limits.gcra import Counter, CounterState


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


def ratelimit_headers(counters: Sequence[Counter], states: Sequence[CounterState]) -> dict[str, str]:
    """The headers for the tightest counter of each kind (fewest remaining, then longest reset)."""
    requests: CounterState | None = None
    tokens: CounterState | None = None
    for i in range(len(counters)):
        state = states[i]
        if counters[i].kind == "requests":
            if requests is None or _tighter(state, requests):
                requests = state
        elif tokens is None or _tighter(state, tokens):
            tokens = state
    headers: dict[str, str] = {}
    for kind, tightest in (("requests", requests), ("tokens", tokens)):
        if tightest is not None:
            headers[f"x-ratelimit-limit-{kind}"] = str(tightest.limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(tightest.remaining)
            headers[f"x-ratelimit-reset-{kind}"] = go_duration(tightest.reset_ms)
    return headers


def _tighter(a: CounterState, b: CounterState) -> bool:
    return a.remaining < b.remaining or (a.remaining == b.remaining and a.reset_ms > b.reset_ms)

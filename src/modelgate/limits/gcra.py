"""The rate-limit algorithm: GCRA, a token bucket kept as one number per counter.

A counter with a limit of L units per minute is a bucket of L units that refills continuously at
L per minute. Its whole state is the *theoretical arrival time* (TAT): the moment the bucket will
be full again. Taking n units moves the TAT n * (60 s / L) later; the bucket has room when the
TAT stays within one window (60 s) of now. From the TAT follow OpenAI's headers: remaining =
the units the bucket holds now, reset = time until it is full.

This is what OpenAI's own limiter reports (``x-ratelimit-reset-requests: 1s`` with 59 of 60
left), it takes O(1) memory per counter whatever the limit, and a correction after the fact
(tokens per minute: the estimate charged at the start, the real count at the end) is one more
move of the TAT, in either direction.

The same arithmetic runs in-process (``local.py``) and in a Redis Lua script (``redis.py``);
times here are milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

WINDOW_MS = 60_000.0
# Float slack: ten requests of 6,000 ms each must fit a 60,000 ms window exactly.
EPSILON_MS = 0.001

Kind = Literal["requests", "tokens"]


@dataclass(slots=True)
class Counter:
    """One limit that applies to a request: its storage key, units per minute, and what it counts."""

    key: str
    limit: int
    kind: Kind
    scope: str  # "key", "project" or "deployment": for messages
    owner: str  # the key id, project name or deployment name



@dataclass(slots=True)
class CounterState:
    """A counter after a decision, as the x-ratelimit-* headers report it."""

    limit: int
    remaining: int
    reset_ms: float  # until the bucket is full again


@dataclass(slots=True)
class Decision:
    allowed: bool
    states: tuple[CounterState, ...]  # in the order of the counters asked about
    retry_after_ms: float = 0.0  # when refused: until the request would fit (unchecked: may be checked)
    blocked: int = -1  # when refused: the index of the counter that is furthest from fitting
    unchecked: str | None = None  # why the counters could not be consulted (Redis unreachable)


def state_of(counter: Counter, tat: float, now: float) -> CounterState:
    backlog = tat - now if tat > now else 0.0
    limit = counter.limit
    remaining = int((WINDOW_MS - backlog + EPSILON_MS) // (WINDOW_MS / limit))
    return CounterState(limit, 0 if remaining < 0 else remaining if remaining < limit else limit, backlog)


def charge(counters: tuple[Counter, ...], costs: tuple[int, ...], tats: list[float], now: float) -> Decision:
    """Take ``costs`` from every counter, or from none: ``tats`` are updated in place when allowed.

    A cost above a counter's whole limit is charged as the limit: such a request waits for a full
    bucket instead of never passing, and the correction at its end charges the rest.
    """
    # Plain loops: this runs on every request, with up to six counters.
    new = []
    retry = 0.0
    blocked = -1
    for i in range(len(counters)):
        limit = counters[i].limit
        tat = tats[i]
        cost = costs[i]
        after = (tat if tat > now else now) + (cost if cost < limit else limit) * (WINDOW_MS / limit)
        new.append(after)
        wait = after - now - WINDOW_MS
        if wait > EPSILON_MS and wait > retry:
            retry, blocked = wait, i
    allowed = blocked < 0
    if allowed:
        tats[:] = new
    states = []
    for i in range(len(counters)):
        states.append(state_of(counters[i], tats[i], now))
    return Decision(allowed, tuple(states), retry, blocked)


def adjust(counter: Counter, tat: float, delta: int, now: float) -> float:
    """The TAT after a correction of ``delta`` units (negative gives units back)."""
    return max(now, max(tat, now) + delta * (WINDOW_MS / counter.limit))

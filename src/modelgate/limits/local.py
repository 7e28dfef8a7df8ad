"""Rate limits held in this process: for one gateway process, or when no ``redis_url`` is set."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from modelgate.limits.gcra import Counter, Decision, adjust, charge


class LocalLimiter:
    """GCRA counters in a dict; every operation is synchronous and never waits on I/O.

    Counters whose bucket is full again are dropped now and then, so the dict holds only the keys
    that were busy in the last minute.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._tats: dict[str, float] = {}
        self._clock = clock
        self._next_sweep = 0.0

    def _now(self) -> float:
        return self._clock() * 1000.0

    async def acquire(self, counters: tuple[Counter, ...], costs: tuple[int, ...]) -> Decision:
        now = self._now()
        if now >= self._next_sweep:
            self._sweep(now)
        tats = [self._tats.get(c.key, now) for c in counters]
        decision = charge(counters, costs, tats, now)
        if decision.allowed:
            for counter, tat in zip(counters, tats, strict=True):
                self._tats[counter.key] = tat
        return decision

    def adjust(self, counters: Sequence[Counter], deltas: Sequence[int]) -> None:
        now = self._now()
        for counter, delta in zip(counters, deltas, strict=True):
            if delta:
                self._tats[counter.key] = adjust(counter, self._tats.get(counter.key, now), delta, now)

    def _sweep(self, now: float) -> None:
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        self._next_sweep = now + 60_000.0

    async def flush(self) -> None:
        """Corrections apply at once here; for symmetry with ``RedisLimiter.flush``."""

    async def close(self) -> None:
        return None

"""The circuit around Redis: after a failure, requests stop waiting on it until a probe sees it back.

``closed``: commands go to Redis. A command that fails there (no answer within the timeout, the
connection refused, or lost with replies outstanding) opens the circuit. ``open``: every command,
script run, subscription and blocking command fails at once with ``RedisUnavailable`` (a
``ConnectionError``, so every caller's handling of an unreachable Redis applies) without touching
the network, while one background task probes Redis: a new connection and a ``PING``, at once,
then after ``FIRST_INTERVAL_S``, doubling up to ``MAX_INTERVAL_S``. The first probe answered closes
the circuit and its connection becomes the one commands share.

So an outage costs the requests in flight when it begins one timeout, and nothing after that,
however long it lasts: a Redis that neither answers nor refuses is waited on by the probe alone.
Only the probe closes the circuit; every other user of the client (limits, budgets, key and
breaker sync) can open it with a failure, and while it is open they fail fast and retry on their
own schedules, which reach Redis again once the probe has.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

log = logging.getLogger("modelgate.redis")

FIRST_INTERVAL_S = 0.25
MAX_INTERVAL_S = 5.0

State = Literal["closed", "open"]


class RedisUnavailable(ConnectionError):
    """The circuit is open: Redis failed recently and no probe has reached it since."""


class Circuit:
    """One per ``RedisClient``; ``probe`` connects and pings (raising on failure)."""

    def __init__(self, probe: Callable[[], Awaitable[None]], *, first_interval: float = FIRST_INTERVAL_S,
                 max_interval: float = MAX_INTERVAL_S, probe_timeout: float = 0.5) -> None:
        self._probe = probe
        self.first_interval = first_interval
        self.max_interval = max_interval
        self.probe_timeout = probe_timeout  # how long one probe may take: for Retry-After
        self.state: State = "closed"
        self.since = time.monotonic()
        self.error: str | None = None  # the failure that opened it (then the last probe's)
        self.opened = 0  # times the circuit opened
        self.probes = 0  # probes sent, answered or not
        self.failed_fast = 0  # commands failed at once while open
        self.interval = 0.0  # the pause before the probe in progress (the backoff)
        self._next_probe = 0.0  # monotonic time the next probe starts
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    def check(self) -> None:
        """Raise ``RedisUnavailable`` while the circuit is open."""
        if self.state == "open":
            self.failed_fast += 1
            raise RedisUnavailable(f"Redis is unavailable (since {time.monotonic() - self.since:.1f}s: "
                                   f"{self.error}); waiting for a probe to reach it")

    def failed(self, error: BaseException) -> None:
        """A command failed on Redis: open the circuit (if it is not already) and start probing."""
        if self.state == "open" or self._stopped:
            return
        self.state = "open"
        self.since = time.monotonic()
        self.error = str(error) or type(error).__name__
        self.opened += 1
        log.error("Redis unreachable (%s): commands fail at once until a probe reaches it again", self.error)
        self._next_probe = self.since
        self._task = asyncio.get_running_loop().create_task(self._probing(), name="modelgate-redis-probe")

    def retry_after(self) -> float:
        """Seconds until Redis may be back at the earliest: until the next probe has had its answer."""
        if self.state != "open":
            return 0.0
        return max(0.0, self._next_probe - time.monotonic()) + self.probe_timeout

    async def _probing(self) -> None:
        self.interval = 0.0
        wait = self.first_interval
        while True:
            self.probes += 1
            try:
                await self._probe()
            except Exception as error:  # whatever stops the probe keeps the circuit open
                self.error = str(error) or type(error).__name__
                self.interval = wait
                self._next_probe = time.monotonic() + wait
                await asyncio.sleep(wait)
                wait = min(wait * 2, self.max_interval)
                continue
            break
        down = time.monotonic() - self.since
        self.state = "closed"
        self.since = time.monotonic()
        self._task = None
        log.warning("Redis answers again after %.1fs; the circuit around it is closed", down)

    def status(self) -> dict[str, Any]:
        """What ``/health/deployments`` shows: the state, for how long, why, and the counters."""
        now = time.monotonic()
        return {"state": self.state, "for_s": round(now - self.since, 3),
                "error": self.error if self.state == "open" else None,
                "next_probe_in_s": round(max(0.0, self._next_probe - now), 3) if self.state == "open" else None,
                "opened": self.opened, "probes": self.probes, "failed_fast": self.failed_fast}

    async def close(self) -> None:
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

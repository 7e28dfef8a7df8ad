"""Work for Redis kept off the request path: corrections queued and sent in the background, and
an outage logged once in a while rather than on every request.

Limits and budgets charge Redis on the request path in one script run; what they learn later
(the real token count, the real cost) is queued here, carried along by the next request's run
or sent on its own shortly after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("modelgate.redis")

# Queued corrections wait this long for a request to carry them in its own script run.
CARRY_DELAY_S = 0.05
CARRY_MAX = 100
UNREACHABLE = OSError  # refused, reset, timed out (ConnectionError and TimeoutError are OSErrors)


class OutageLog:
    """Logs an unreachable Redis at most once per ``every`` seconds: what it stops, what happens meanwhile."""

    def __init__(self, what: str, meanwhile: str, every: float = 10.0) -> None:
        self.what = what
        self.meanwhile = meanwhile
        self.every = every
        self._last = -every

    def failed(self, error: BaseException | str) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            log.error("redis unreachable (%s): %s; %s", self.what, error, self.meanwhile)


class Sender:
    """Runs ``flush`` in a background task whenever woken; one flush at a time.

    Stopped by a flag, not by cancelling the task: a cancellation landing mid-flush would drop the
    batch in hand, while stopping by the flag lets the flush in progress end.
    """

    def __init__(self, flush: Callable[[], Awaitable[bool]], delay: float = 0.0, retry_after: float = 1.0) -> None:
        self._flush = flush
        self.delay = delay
        self.retry_after = retry_after
        self.lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        if self._task is None and not self._stop.is_set():
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):  # the pause is over (or cut short by stop())
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _run(self) -> None:
        while not self._stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            if self.delay:
                # Requests carry queued work along with their own script run; what is still
                # queued after a moment goes on its own.
                await self._pause(self.delay)
            if not self._stop.is_set() and not await self._flush():
                await self._pause(self.retry_after)  # Redis is away: try again shortly
                self._wake.set()

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

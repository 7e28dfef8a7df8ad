"""Spend from the database into the ledger: at start-up, so that a restart does not reset a
budget, and every minute after, so that the ledger never shows less than the database.

Merging only ever raises an account (``max``): the database lags the ledger by the records still
on their way, and the ledger misses what it never saw (other processes without Redis, Redis
restarted without persistence, settlements lost while Redis was away).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Literal, Protocol

from modelgate.budgets.ledger import Ledger
from modelgate.budgets.periods import period_id, period_start
from modelgate.metering.pricing import NANO
from modelgate.storage.errors import StorageError

log = logging.getLogger("modelgate.budgets")

SYNC_INTERVAL_S = 60.0


class SpendSource(Protocol):
    async def spend_all(self, scope: Literal["key", "project"], since: datetime) -> dict[str, float]: ...


class SpendSync:
    def __init__(self, source: SpendSource, ledger: Ledger, interval: float = SYNC_INTERVAL_S) -> None:
        self.source = source
        self.ledger = ledger
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def sync(self) -> None:
        """Merge the spend of every key and project in the current day and month (4 queries)."""
        now = datetime.now(UTC)
        for period in ("day", "month"):
            start = period_start(period, now)
            for scope in ("key", "project"):
                totals = await self.source.spend_all(scope, start)
                await self.ledger.merge_spent(scope, period_id(period, start),
                                              {owner: round(usd * NANO) for owner, usd in totals.items()})

    async def start(self) -> None:
        """A first sync now (logged, not raised, if the database is away), then one a minute."""
        await self._sync_logged()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _sync_logged(self) -> bool:
        try:
            await self.sync()
        except StorageError as error:
            log.warning("budgets: spend not read from the database (%s); trying again in %.0fs", error, self.interval)
            return False
        return True

    async def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):  # the interval passed
                await asyncio.wait_for(self._stop.wait(), self.interval)
            if not self._stop.is_set():
                await self._sync_logged()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

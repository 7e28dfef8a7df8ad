"""Spend from the database into the ledger: at start-up, so that a restart does not reset a
budget, and every minute after, so that the ledger never shows less than the database.

Only while some key or project has a budget (``wanted``): a gateway without budgets never reads
its usage. A budget that appears (``wake``) is synced at once rather than at the next minute.
Each sync reads the day totals of the current day and month (``storage.usage``), so its cost
follows the groups used this month, not the usage stored.

Merging only ever raises an account (``max``): the database lags the ledger by the records still
on their way, and the ledger misses what it never saw (other processes without Redis, Redis
restarted without persistence, settlements lost while Redis was away).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
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
    def __init__(self, source: SpendSource, ledger: Ledger, interval: float = SYNC_INTERVAL_S,
                 wanted: Callable[[], bool] | None = None) -> None:
        """``wanted``: whether any budget exists now (None: always sync)."""
        self.source = source
        self.ledger = ledger
        self.interval = interval
        self.wanted = wanted
        self.checks = 0  # times a sync was due (at start, each interval, each wake)
        self.syncs = 0  # syncs that read the database
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Sync now rather than at the next interval (a budget was added)."""
        self._wake.set()

    async def sync(self) -> None:
        """Merge the spend of every key and project in the current day and month (4 queries)."""
        self.syncs += 1
        now = datetime.now(UTC)
        for period in ("day", "month"):
            start = period_start(period, now)
            for scope in ("key", "project"):
                totals = await self.source.spend_all(scope, start)
                await self.ledger.merge_spent(scope, period_id(period, start),
                                              {owner: round(usd * NANO) for owner, usd in totals.items()})

    async def start(self) -> None:
        """A first sync now where budgets exist (logged, not raised, if the database is away),
        then one each interval, or at once when woken."""
        self._wake.clear()  # budgets loaded before now are read by this first sync
        await self._sync_logged()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _sync_logged(self) -> bool:
        self.checks += 1
        if self.wanted is not None and not self.wanted():
            return True
        try:
            await self.sync()
        except StorageError as error:
            log.warning("budgets: spend not read from the database (%s); trying again in %.0fs", error, self.interval)
            return False
        return True

    async def _loop(self) -> None:
        while not self._stop.is_set():
            stop, wake = asyncio.ensure_future(self._stop.wait()), asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait((stop, wake), timeout=self.interval, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                wake.cancel()
            self._wake.clear()
            if not self._stop.is_set():
                await self._sync_logged()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

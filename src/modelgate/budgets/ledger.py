"""Budget accounts: what each key and project has spent and holds reserved in the current period.

A request reserves its most expensive outcome before it starts (``reserve``: every budget that
applies must have room for it, or none is touched) and settles with what it really cost when it
ends (``settle``: the reservation is released and the real cost added to the spend). Concurrent
requests therefore see each other's reservations and cannot overspend together. A reservation
may be flexible (``least``): as much of ``amount`` as every budget has room for, but no less than
``least``; the request is then made to fit what it got (its ``max_tokens`` lowered).

Amounts are integer nano-dollars (``metering.pricing.NANO``). ``LocalLedger`` keeps the accounts
in this process; ``budgets.redis.RedisLedger`` in Redis, shared by every gateway process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from modelgate.budgets.periods import period_end, period_id, period_start
from modelgate.metering.pricing import NANO
from modelgate.pipeline.contract import Principal


@dataclass(slots=True)
class Budget:
    """One budget that applies to a request."""

    scope: str  # "key" | "project"
    owner: str  # key id or project name
    limit: int  # nano-dollars per period
    period: str  # "day" | "month"


@dataclass(slots=True)
class Hold:
    """A reservation: settled exactly once, against the periods it was taken in."""

    budgets: tuple[Budget, ...]
    periods: tuple[str, ...]  # period id of each budget when the reservation was taken
    amount: int
    member: str = ""  # the reservation's name where the ledger keeps one (Redis)


@dataclass(slots=True)
class Verdict:
    hold: Hold | None  # None: refused
    blocked: int = -1  # the budget without room
    spent: int = 0  # of the blocked budget
    reserved: int = 0  # of the blocked budget, by requests in flight
    unchecked: str | None = None  # why the accounts could not be consulted (Redis unreachable)
    retry_after: float = 0.0  # unchecked: seconds until they may be again


class Ledger(Protocol):
    """Where the accounts live. ``settle`` must not wait on I/O (it runs as a request ends)."""

    async def reserve(self, budgets: tuple[Budget, ...], amount: int, least: int | None = None) -> Verdict:
        """Hold ``amount`` on every budget, or as much of it as each has room for down to ``least``
        (default: all of it); the hold says how much it took."""

    def settle(self, hold: Hold, actual: int) -> None: ...

    async def merge_spent(self, scope: str, period_id: str, totals: Mapping[str, int]) -> None:
        """Raise each account's spend to at least the database's total (never lower it)."""

    async def close(self) -> None: ...


def budgets_for(principal: Principal) -> tuple[Budget, ...]:
    budgets = []
    if principal.key_limits.budget is not None:
        budgets.append(Budget("key", principal.key_id, round(principal.key_limits.budget * NANO),
                              principal.key_limits.budget_period))
    if principal.project is not None and principal.project_limits.budget is not None:
        budgets.append(Budget("project", principal.project, round(principal.project_limits.budget * NANO),
                              principal.project_limits.budget_period))
    return tuple(budgets)


class PeriodClock:
    """The ids of the current day and month, recomputed only when one of them ends."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._until = 0.0
        self._ids = {"day": "", "month": ""}

    def current(self, period: str) -> str:
        now = self._clock()
        if now >= self._until:
            moment = datetime.fromtimestamp(now, UTC)
            day = period_start("day", moment)
            self._ids = {"day": period_id("day", day), "month": period_id("month", period_start("month", moment))}
            self._until = period_end("day", day).timestamp()
        return self._ids[period]

    def seconds_left(self, period: str) -> float:
        """Seconds until the current ``period`` ends."""
        moment = datetime.fromtimestamp(self._clock(), UTC)
        return (period_end(period, period_start(period, moment)) - moment).total_seconds()


class LocalLedger:
    """Accounts in a dict: (scope, owner, period id) → [spent, reserved]."""

    def __init__(self, periods: PeriodClock | None = None) -> None:
        self.periods = periods or PeriodClock()
        self._accounts: dict[tuple[str, str, str], list[int]] = {}

    def account(self, scope: str, owner: str, period: str) -> list[int]:
        key = (scope, owner, period)
        found = self._accounts.get(key)
        if found is None:
            found = self._accounts[key] = [0, 0]
        return found

    async def reserve(self, budgets: tuple[Budget, ...], amount: int, least: int | None = None) -> Verdict:
        least = amount if least is None else least
        periods = tuple(self.periods.current(b.period) for b in budgets)
        accounts = [self.account(b.scope, b.owner, p) for b, p in zip(budgets, periods, strict=True)]
        take = amount
        for i, (budget, (spent, reserved)) in enumerate(zip(budgets, accounts, strict=True)):
            room = budget.limit - spent - reserved
            if room < least:
                return Verdict(None, i, spent, reserved)
            take = min(take, room)
        for entry in accounts:
            entry[1] += take
        return Verdict(Hold(budgets, periods, take))

    def settle(self, hold: Hold, actual: int) -> None:
        for budget, period in zip(hold.budgets, hold.periods, strict=True):
            entry = self.account(budget.scope, budget.owner, period)
            entry[1] -= hold.amount
            entry[0] += actual

    async def merge_spent(self, scope: str, period_id: str, totals: Mapping[str, int]) -> None:
        for owner, total in totals.items():
            entry = self.account(scope, owner, period_id)
            entry[0] = max(entry[0], total)
        # Accounts of periods that ended and hold no reservation are no longer needed.
        current = {self.periods.current("day"), self.periods.current("month")}
        self._accounts = {k: v for k, v in self._accounts.items() if k[2] in current or v[1]}

    async def flush(self) -> None:
        """Settlements apply at once here; for symmetry with ``RedisLedger.flush``."""

    async def close(self) -> None:
        return None

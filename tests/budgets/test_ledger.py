"""Budget accounts, in-process and on the real Redis: reserve, settle, merge, never overspend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from modelgate.budgets import Budget, LocalLedger, PeriodClock
from modelgate.budgets.redis import RedisLedger
from modelgate.redis_client import RedisClient
from tests.redis_scratch import scratch_redis
from tests.support import eventually

Ledger = LocalLedger | RedisLedger


def key_budget(limit: int, owner: str = "key_1", period: str = "month") -> Budget:
    return Budget("key", owner, limit, period)


async def test_reservations_count_against_the_budget_until_settled(ledger: Ledger) -> None:
    budget = (key_budget(1000),)
    first = await ledger.reserve(budget, 600)
    assert first.hold is not None
    refused = await ledger.reserve(budget, 500)
    assert refused.hold is None
    assert (refused.blocked, refused.spent, refused.reserved) == (0, 0, 600)
    ledger.settle(first.hold, 100)  # it cost less than the most it could have
    await ledger.flush()
    assert (await ledger.reserve(budget, 900)).hold is not None
    refused = await ledger.reserve(budget, 1)
    assert (refused.hold, refused.spent, refused.reserved) == (None, 100, 900)


async def test_a_settlement_counts_for_the_very_next_reservation(ledger: Ledger) -> None:
    budget = (key_budget(1000),)
    hold = (await ledger.reserve(budget, 600)).hold
    assert hold is not None
    ledger.settle(hold, 100)  # no flush: the next reservation's own script run carries it
    assert (await ledger.reserve(budget, 900)).hold is not None
    refused = await ledger.reserve(budget, 1)
    assert (refused.hold, refused.spent, refused.reserved) == (None, 100, 900)


async def test_concurrent_requests_cannot_overspend(ledger: Ledger) -> None:
    budget = (key_budget(1000),)
    verdicts = await asyncio.gather(*(ledger.reserve(budget, 30) for _ in range(100)))
    assert sum(v.hold is not None for v in verdicts) == 33  # 33 * 30 = 990; a 34th would pass 1000


async def test_every_budget_must_have_room_or_none_is_touched(ledger: Ledger) -> None:
    key, project = key_budget(1000), Budget("project", "p1", 300, "day")
    refused = await ledger.reserve((key, project), 400)
    assert refused.hold is None and refused.blocked == 1
    assert (await ledger.reserve((key,), 1000)).hold is not None  # the key kept all of its room


async def test_the_database_total_raises_the_spend_but_never_lowers_it(ledger: Ledger) -> None:
    budget = key_budget(1000)
    month = ledger.periods.current("month")
    await ledger.merge_spent("key", month, {"key_1": 700, "key_2": 50})
    assert (await ledger.reserve((budget,), 301)).hold is None
    hold = (await ledger.reserve((budget,), 300)).hold
    assert hold is not None
    ledger.settle(hold, 200)
    await ledger.flush()
    await ledger.merge_spent("key", month, {"key_1": 800})  # the database lags: 900 is spent
    refused = await ledger.reserve((budget,), 101)
    assert refused.spent == 900


async def test_day_and_month_budgets_are_kept_apart(ledger: Ledger) -> None:
    hold = (await ledger.reserve((key_budget(1000, period="day"),), 1000)).hold
    assert hold is not None
    assert (await ledger.reserve((key_budget(1000, period="month"),), 1000)).hold is not None


async def test_a_new_period_starts_a_new_account() -> None:
    now = [datetime(2030, 1, 31, 23, 59, 59, tzinfo=UTC).timestamp()]
    ledger = LocalLedger(PeriodClock(lambda: now[0]))
    day, month = key_budget(100, period="day"), key_budget(100, period="month")
    hold = (await ledger.reserve((day, month), 100)).hold
    assert hold is not None
    assert hold.periods == ("2030-01-31", "2030-01")
    assert (await ledger.reserve((day,), 1)).hold is None
    now[0] += 2  # February 1st
    late = (await ledger.reserve((day, month), 100)).hold
    assert late is not None and late.periods == ("2030-02-01", "2030-02")
    ledger.settle(hold, 100)  # settles against January, where it was reserved
    assert ledger.account("key", "key_1", "2030-01")[:] == [100, 0]
    assert ledger.account("key", "key_1", "2030-02")[:] == [0, 100]


async def test_reservations_of_a_dead_process_expire(redis_url: str) -> None:
    async with scratch_redis(redis_url) as (client, prefix):
        # Held for 3 s: the survivor's first try comes well within them, however slow the machine.
        crashed = RedisLedger(client, prefix, hold_ttl_ms=3000)
        assert (await crashed.reserve((key_budget(1000),), 900)).hold is not None  # never settled
        survivor = RedisLedger(client, prefix)
        assert (await survivor.reserve((key_budget(1000),), 900)).hold is None

        async def reserved() -> bool:  # a refusal reserves nothing, so trying again is harmless
            return (await survivor.reserve((key_budget(1000),), 900)).hold is not None

        await eventually(reserved, what="the dead process's hold expiring")


async def test_two_processes_share_one_budget_through_redis(redis_url: str) -> None:
    async with scratch_redis(redis_url) as (client, prefix):
        other = RedisClient.from_url(redis_url)
        try:
            ledgers = [RedisLedger(client, prefix), RedisLedger(other, prefix)]
            verdicts = await asyncio.gather(*(ledgers[i % 2].reserve((key_budget(10_000),), 700) for i in range(40)))
            holds = [v.hold for v in verdicts if v.hold is not None]
            assert len(holds) == 14
            for i, hold in enumerate(holds):
                ledgers[i % 2].settle(hold, 500)
            for ledger in ledgers:
                await ledger.flush()
            refused = await ledgers[0].reserve((key_budget(10_000),), 3001)
            assert (refused.hold, refused.spent, refused.reserved) == (None, 7000, 0)
        finally:
            await other.close()


async def test_an_unreachable_redis_leaves_the_verdict_unchecked_and_settlements_wait() -> None:
    client = RedisClient.from_url("redis://127.0.0.1:1/0")
    try:
        ledger = RedisLedger(client)
        verdict = await ledger.reserve((key_budget(1),), 1000)
        assert verdict.hold is not None and verdict.unchecked  # the stage's redis_outage decides
        assert verdict.retry_after > 0
        ledger.settle(verdict.hold, 10)
        assert not await ledger.flush()  # kept for when Redis is back
        await ledger.merge_spent("key", "2030-01", {"key_1": 5})  # skipped, not raised
    finally:
        await client.close()


async def test_a_flexible_reservation_takes_what_every_budget_has_room_for(ledger: Ledger) -> None:
    key, project = key_budget(1000), Budget("project", "p1", 700, "month")
    assert (await ledger.reserve((key, project), 300)).hold is not None
    verdict = await ledger.reserve((key, project), 900, least=200)
    assert verdict.hold is not None and verdict.hold.amount == 400  # the project's room
    refused = await ledger.reserve((key, project), 900, least=1)
    assert (refused.hold, refused.blocked, refused.reserved) == (None, 1, 700)
    ledger.settle(verdict.hold, 150)
    await ledger.flush()
    taken = await ledger.reserve((key, project), 900, least=100)
    assert taken.hold is not None and taken.hold.amount == 250  # 700 - 300 held - 150 spent

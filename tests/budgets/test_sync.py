"""Spend from the real database into the ledger: a restart does not reset a budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modelgate.budgets import Budget, LocalLedger, SpendSync
from modelgate.budgets.periods import period_id, period_start
from modelgate.metering import NANO
from modelgate.storage import Storage, UsageRecord


def record(request_id: str, key: str, project: str, price: float, created_at: datetime) -> UsageRecord:
    return UsageRecord(request_id=request_id, created_at=created_at, project=project, key_id=key,
                       deployment="chat", provider="openai", model="gpt-4o", route="chat", price=price)


async def test_the_ledger_starts_from_the_spend_in_the_database(storage: Storage) -> None:
    now = datetime.now(UTC)
    month_start = period_start("month", now)
    await storage.write_usage([
        record("r1", "key_a", "p1", 0.25, now),
        record("r2", "key_a", "p1", 0.50, now - timedelta(seconds=5)),
        record("r3", "key_b", "p1", 1.00, now),
        record("r4", "key_a", "p1", 9.00, month_start - timedelta(seconds=1)),  # last month
    ])
    ledger = LocalLedger()
    await SpendSync(storage, ledger).sync()
    month = period_id("month", month_start)
    assert ledger.account("key", "key_a", month)[0] == round(0.75 * NANO)
    assert ledger.account("project", "p1", month)[0] == round(1.75 * NANO)
    day = ledger.periods.current("day")
    if period_start("day", now) <= now - timedelta(seconds=5):
        assert ledger.account("key", "key_a", day)[0] == round(0.75 * NANO)
    refused = await ledger.reserve((Budget("key", "key_a", NANO, "month"),), round(0.26 * NANO))
    assert refused.hold is None and refused.spent == round(0.75 * NANO)

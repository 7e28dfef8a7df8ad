"""Spend from the real database into the ledger: a restart does not reset a budget."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event

from modelgate.budgets import Budget, LocalLedger, SpendSync
from modelgate.budgets.periods import period_id, period_start
from modelgate.config import parse_settings
from modelgate.config.settings import Settings
from modelgate.metering import NANO
from modelgate.server.services import build_services
from modelgate.storage import LimitFields, Storage, UsageRecord
from tests.support import eventually


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


def gateway_settings(database_url: str, journal: Path) -> Settings:
    return parse_settings({
        "database_url": database_url, "journal_dir": str(journal),
        "providers": {"up": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}},
        "deployments": [{"name": "chat", "provider": "up", "model": "gpt-4o"}]}, {})


@contextmanager
def usage_reads(storage: Storage) -> Iterator[list[str]]:
    """The statements in the block that read usage (records or day totals)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "usage" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    event.listen(storage.db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(storage.db.engine.sync_engine, "before_cursor_execute", record)


async def test_without_budgets_the_gateway_never_reads_usage(migrated_database_url: str, tmp_path: Path) -> None:
    services = await build_services(gateway_settings(migrated_database_url, tmp_path / "journal"))
    await services.storage.write_usage([record("r1", "key_a", "p1", 0.25, datetime.now(UTC))])
    services.spend_sync.interval = 0.02
    try:
        with usage_reads(services.storage) as reads:
            await services.start()
            # The start-up check and several intervals pass.
            await eventually(lambda: services.spend_sync.checks >= 5, what="five checks of the spend sync")
            assert reads == [] and services.spend_sync.syncs == 0
    finally:
        await services.stop()


async def test_a_budget_added_is_synced_at_once(migrated_database_url: str, tmp_path: Path) -> None:
    services = await build_services(gateway_settings(migrated_database_url, tmp_path / "journal"))
    now = datetime.now(UTC)
    await services.storage.write_usage([record("r1", "key_a", "p1", 0.25, now), record("r2", "key_b", "p1", 0.5, now)])
    services.spend_sync.interval = 3600  # only a wake can bring the sync now
    try:
        await services.start()
        assert services.spend_sync.syncs == 0
        await services.storage.keys.create_project("p1", LimitFields(budget=10.0))
        await services.key_sync.refresh()
        month = period_id("month", period_start("month", now))
        assert isinstance(services.ledger, LocalLedger)
        ledger = services.ledger
        await eventually(lambda: ledger.account("project", "p1", month)[0] == round(0.75 * NANO),
                         what="the project's spend merged into the ledger")
        assert services.spend_sync.syncs == 1
    finally:
        await services.stop()

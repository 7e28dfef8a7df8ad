"""Usage records: idempotent batch writes, spend for budgets, report queries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from modelgate.storage import Storage, StorageError, UsageFilters, UsageRecord

T0 = datetime(2030, 1, 31, 23, 30, tzinfo=UTC)


def record(request_id: str, **fields: object) -> UsageRecord:
    values: dict[str, object] = {
        "created_at": T0, "project": "p", "key_id": "key_a", "deployment": "chat", "provider": "openai",
        "model": "gpt-4o", "route": "chat", "input_tokens": 100, "cached_input_tokens": 20,
        "cache_write_tokens": 5, "reasoning_tokens": 7, "output_tokens": 50, "cost": 0.25, "price": 0.5,
        "latency_ms": 120.5, "ttft_ms": 30.0, "status": 200, "attempts": 1, "error": None}
    values.update(fields)
    return UsageRecord(request_id=request_id, **values)  # type: ignore[arg-type]


async def test_write_is_idempotent_by_request_id(storage: Storage) -> None:
    assert await storage.write_usage([record("r1"), record("r2")]) == 2
    # A batch written again after a crash, with one new record: only the new one is inserted.
    assert await storage.write_usage([record("r1"), record("r2"), record("r3")]) == 1
    assert await storage.write_usage([]) == 0
    [total] = await storage.query_usage(UsageFilters())
    assert total.requests == 3


async def test_a_record_reads_back_field_for_field(storage: Storage) -> None:
    # A time in another zone is stored as the same instant in UTC.
    local = T0.astimezone(timezone(timedelta(hours=5)))
    await storage.write_usage([record("r1", created_at=local, status=502, error="upstream down", ttft_ms=None)])
    [row] = await storage.query_usage(UsageFilters(since=T0, until=T0 + timedelta(seconds=1)), ["day"])
    assert (row.day, row.requests, row.errors) == ("2030-01-31", 1, 1)
    assert (row.input_tokens, row.cached_input_tokens, row.cache_write_tokens, row.reasoning_tokens,
            row.output_tokens) == (100, 20, 5, 7, 50)
    assert (row.cost, row.revenue, row.margin) == (0.25, 0.5, 0.25)


async def test_concurrent_writers_of_overlapping_batches_insert_each_record_once(storage: Storage) -> None:
    batches = [[record(f"r{i}") for i in range(start, start + 50)] for start in range(0, 200, 25)]
    inserted = await asyncio.gather(*(storage.write_usage(batch) for batch in batches))
    assert sum(inserted) == 225
    [total] = await storage.query_usage(UsageFilters())
    assert total.requests == 225


async def test_a_batch_larger_than_one_statement_is_written_whole(storage: Storage) -> None:
    # 2500 records x 20 columns is past what one statement may bind on either dialect.
    batch = [record(f"r{i}", price=0.001) for i in range(2500)]
    assert await storage.write_usage(batch) == 2500
    assert await storage.write_usage(batch[-10:]) == 0
    assert round(await storage.spend("project", "p", T0), 9) == 2.5


async def test_naive_times_are_taken_as_utc(storage: Storage) -> None:
    await storage.write_usage([record("r1", created_at=datetime(2030, 1, 1, 23, 59))])
    since = datetime(2030, 1, 1, 23, 59, tzinfo=UTC)
    assert [r.day for r in await storage.query_usage(UsageFilters(since=since), ["day"])] == ["2030-01-01"]
    assert await storage.query_usage(UsageFilters(since=since + timedelta(seconds=1))) == []


async def test_spend_sums_the_customer_price_since_a_time(storage: Storage) -> None:
    await storage.write_usage([
        record("old", created_at=T0 - timedelta(days=40), price=100.0),
        record("a1", price=1.25), record("a2", price=2.0, status=500),
        record("b1", key_id="key_b", price=4.0),
        record("q1", project="q", key_id="key_q", price=8.0),
    ])
    since = T0 - timedelta(days=1)
    assert await storage.spend("key", "key_a", since) == 3.25
    assert await storage.spend("project", "p", since) == 7.25
    assert await storage.spend("project", "p", T0 - timedelta(days=41)) == 107.25
    assert await storage.spend("key", "nobody", since) == 0.0
    assert await storage.spend_all("project", since) == {"p": 7.25, "q": 8.0}
    assert await storage.spend_all("key", since) == {"key_a": 3.25, "key_b": 4.0, "key_q": 8.0}
    with pytest.raises(StorageError, match="scope"):
        await storage.spend("team", "x", since)  # type: ignore[arg-type]


async def test_reports_filter_and_group(storage: Storage) -> None:
    await storage.write_usage([
        record("1", created_at=T0 - timedelta(days=1)),
        record("2"),
        record("3", deployment="fast", provider="xai", model="grok-3", cost=1.0, price=1.5),
        record("4", project="q", key_id="key_q", created_at=T0 + timedelta(hours=1)),
        record("5", provider=None, model=None, status=429, cost=0.0, price=0.0),
    ])
    by_day = await storage.query_usage(UsageFilters(), ["day"])
    assert [(r.day, r.requests) for r in by_day] == [("2030-01-30", 1), ("2030-01-31", 3), ("2030-02-01", 1)]

    by_provider = await storage.query_usage(UsageFilters(project="p"), ["provider", "model"])
    assert [(r.provider, r.model, r.requests, r.cost) for r in by_provider] == [
        ("openai", "gpt-4o", 2, 0.5), ("xai", "grok-3", 1, 1.0), (None, None, 1, 0.0)]

    by_key = await storage.query_usage(UsageFilters(since=T0, until=T0 + timedelta(days=1)), ["project", "key"])
    assert [(r.project, r.key_id, r.requests, r.errors) for r in by_key] == [
        ("p", "key_a", 3, 1), ("q", "key_q", 1, 0)]

    [only] = await storage.query_usage(UsageFilters(deployment="fast", provider="xai", model="grok-3"))
    assert (only.requests, only.cost, only.revenue, only.margin) == (1, 1.0, 1.5, 0.5)
    assert await storage.query_usage(UsageFilters(key_id="nobody")) == []
    assert await storage.query_usage(UsageFilters(key_id="nobody"), ["day"]) == []
    with pytest.raises(StorageError, match="cannot group usage by 'colour'"):
        await storage.query_usage(UsageFilters(), ["colour"])

"""Usage reports and budgets read day totals (``usage_daily``) for whole days and the records for
the part days at either end: every answer must equal the sum of the records themselves."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, select, text

from modelgate.storage import Storage, UsageFilters, UsageRecord, UsageRow
from modelgate.storage.migrations import MIGRATIONS
from modelgate.storage.tables import schema_migrations, usage_daily

DAY0 = datetime(2030, 3, 1, tzinfo=UTC)
GROUPS = ("project", "key", "deployment", "provider", "model", "day")


def records(count: int, seed: int, start: datetime = DAY0, days: int = 5) -> list[UsageRecord]:
    rng = random.Random(seed)
    made = []
    for i in range(count):
        provider = rng.choice(["openai", "xai", None])
        hit = provider is not None and rng.random() < 0.2
        made.append(UsageRecord(
            request_id=f"req-{seed}-{i}", created_at=start + timedelta(seconds=rng.random() * days * 86400),
            project=rng.choice(["p", "q", None]), key_id=rng.choice(["key_a", "key_b", "key_q", None]),
            deployment=rng.choice(["chat", "fast"]), provider=provider,
            # "" and None are different models: they must stay apart in the totals.
            model=None if provider is None else rng.choice(["gpt-4o", "grok-3", ""]),
            route="chat", input_tokens=rng.randint(0, 500), cached_input_tokens=rng.randint(0, 50),
            cache_write_tokens=rng.randint(0, 5), reasoning_tokens=rng.randint(0, 20),
            output_tokens=rng.randint(0, 300), cost=rng.random() / 100, price=rng.random() / 50,
            status=rng.choice([200, 200, 200, 429, 500]), cache_hit=hit, saved=rng.random() / 100 if hit else 0.0))
    return made


def expected(stored: Sequence[UsageRecord], filters: UsageFilters, group_by: Sequence[str]) -> list[UsageRow]:
    """The report computed from the records in Python: what the database must answer."""
    rows: dict[tuple[Any, ...], UsageRow] = {}
    for record in stored:
        when = record.created_at
        if filters.since is not None and when < filters.since:
            continue
        if filters.until is not None and when >= filters.until:
            continue
        if any(getattr(filters, name) is not None and getattr(filters, name) != getattr(record, name)
               for name in ("project", "key_id", "deployment", "provider", "model")):
            continue
        values = {name: when.strftime("%Y-%m-%d") if name == "day" else
                  getattr(record, "key_id" if name == "key" else name) for name in group_by}
        row = rows.get(tuple(values.values()))
        if row is None:
            row = rows[tuple(values.values())] = UsageRow()
            for name, value in values.items():
                setattr(row, "key_id" if name == "key" else name, value)
        row.requests += 1
        row.errors += record.status >= 400
        for name in ("input_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "output_tokens"):
            setattr(row, name, getattr(row, name) + getattr(record, name))
        row.cost += record.cost
        row.revenue += record.price
        row.cache_hits += record.cache_hit
        row.saved += record.saved
    # NULLs last, as the database sorts them.
    return [rows[k] for k in sorted(rows, key=lambda k: tuple((v is None, str(v or "")) for v in k))]


def same(found: list[UsageRow], wanted: list[UsageRow]) -> None:
    assert len(found) == len(wanted)
    for a, b in zip(found, wanted, strict=True):
        assert (a.project, a.key_id, a.deployment, a.provider, a.model, a.day, a.cache_hit) == \
            (b.project, b.key_id, b.deployment, b.provider, b.model, b.day, b.cache_hit)
        assert a.cache_hits == b.cache_hits and a.saved == pytest.approx(b.saved, abs=1e-9)
        assert (a.requests, a.errors, a.input_tokens, a.cached_input_tokens, a.cache_write_tokens,
                a.reasoning_tokens, a.output_tokens) == (b.requests, b.errors, b.input_tokens,
                                                          b.cached_input_tokens, b.cache_write_tokens,
                                                          b.reasoning_tokens, b.output_tokens)
        assert a.cost == pytest.approx(b.cost, abs=1e-9) and a.revenue == pytest.approx(b.revenue, abs=1e-9)


CASES: list[tuple[UsageFilters, list[str]]] = [
    (UsageFilters(), []),
    (UsageFilters(), ["project", "deployment"]),
    (UsageFilters(), list(GROUPS)),
    (UsageFilters(), ["provider", "model"]),
    (UsageFilters(project="p"), ["key", "day"]),
    (UsageFilters(key_id="key_b", provider="openai"), ["model"]),
    (UsageFilters(model=""), ["provider"]),
    # Whole days only; part days at both ends; within one day; across one midnight.
    (UsageFilters(since=DAY0 + timedelta(days=1), until=DAY0 + timedelta(days=3)), ["day", "project"]),
    (UsageFilters(since=DAY0 + timedelta(hours=30), until=DAY0 + timedelta(hours=101)), ["deployment", "day"]),
    (UsageFilters(since=DAY0 + timedelta(hours=26), until=DAY0 + timedelta(hours=27)), ["key"]),
    (UsageFilters(since=DAY0 + timedelta(hours=20), until=DAY0 + timedelta(hours=28)), ["day"]),
    (UsageFilters(since=DAY0 + timedelta(hours=40)), ["project"]),
    (UsageFilters(until=DAY0 + timedelta(hours=40, minutes=5)), ["provider", "model"]),
    (UsageFilters(), ["cache_hit"]),
    (UsageFilters(since=DAY0 + timedelta(hours=30), until=DAY0 + timedelta(hours=101)), ["cache_hit", "project"]),
]


async def test_reports_equal_the_sums_of_the_records_before_and_after_new_writes(storage: Storage) -> None:
    first = records(400, seed=1)
    assert await storage.write_usage(first) == 400
    for filters, group_by in CASES:
        same(await storage.query_usage(filters, group_by), expected(first, filters, group_by))
    # New records on the same days and groups, and the first batch again (a journal replayed):
    # the totals grow by the new records only.
    second = records(300, seed=2)
    assert await storage.write_usage([*first[:100], *second, *second[:10]]) == 300
    stored = [*first, *second]
    for filters, group_by in CASES:
        same(await storage.query_usage(filters, group_by), expected(stored, filters, group_by))
    since = DAY0 + timedelta(days=2)
    assert await storage.spend_all("key", since) == pytest.approx(
        {row.key_id: row.revenue for row in expected(stored, UsageFilters(since=since), ["key"])
         if row.key_id is not None})
    assert await storage.spend("project", "q", DAY0 + timedelta(hours=50)) == pytest.approx(
        sum(r.price for r in stored if r.project == "q" and r.created_at >= DAY0 + timedelta(hours=50)))


async def test_a_record_with_a_reused_id_at_another_time_is_another_record(storage: Storage) -> None:
    one = records(1, seed=3)[0]
    again = UsageRecord(**{**{name: getattr(one, name) for name in one.__slots__},
                           "created_at": one.created_at + timedelta(days=1)})
    assert await storage.write_usage([one, one]) == 1
    assert await storage.write_usage([one, again]) == 1
    [total] = await storage.query_usage(UsageFilters())
    assert total.requests == 2


async def test_day_totals_hold_one_row_per_day_and_group(storage: Storage) -> None:
    stored = records(500, seed=4)
    await storage.write_usage(stored)
    groups = {(r.created_at.strftime("%Y-%m-%d"), r.project, r.key_id, r.deployment, r.provider, r.model,
               r.cache_hit) for r in stored}
    async with storage.db.read() as conn:
        found = (await conn.execute(select(usage_daily.c.day, usage_daily.c.project, usage_daily.c.key_id,
                                           usage_daily.c.deployment, usage_daily.c.provider,
                                           usage_daily.c.model, usage_daily.c.cache_hit))).all()
    assert sorted(map(tuple, found), key=repr) == sorted(groups, key=repr)


@contextmanager
def statements(storage: Storage) -> Iterator[list[tuple[str, Any]]]:
    """The SQL the storage sends in the block, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        seen.append((statement, parameters))

    engine = storage.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_the_budget_sync_reads_the_current_period_through_the_day_totals_key(storage: Storage) -> None:
    await storage.write_usage(records(200, seed=5))
    with statements(storage) as seen:
        await storage.spend_all("key", DAY0 + timedelta(days=3))
    [(sql, parameters)] = [(sql, parameters) for sql, parameters in seen if sql.lstrip().startswith("SELECT")]
    assert "usage_daily" in sql and "FROM usage " not in sql.replace("\n", " ") + " "
    async with storage.db.read() as conn:
        if storage.dialect == "sqlite":
            plan = " ".join(str(row[-1]) for row in (await conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + sql, tuple(parameters))).all())
            assert "SEARCH usage_daily USING PRIMARY KEY (day>?)" in plan, plan
        else:
            # The planner may prefer a scan of a table this small: ask whether the key can serve.
            await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = " ".join(row[0] for row in (await conn.exec_driver_sql("EXPLAIN " + sql, tuple(parameters))).all())
            assert "usage_daily_pkey" in plan and "Index Cond: ((day)::text >= " in plan, plan


async def test_upgrading_fills_the_day_totals_from_the_records_stored_before(database_url: str) -> None:
    stored = records(300, seed=6, start=DAY0 - timedelta(days=400), days=2) + records(300, seed=7)
    for record in stored:  # no cache before 009_cache
        record.cache_hit, record.saved = False, 0.0
    storage = await Storage.open(database_url)
    try:
        # A database of the first release, with its usage.
        name, first = MIGRATIONS[0]
        async with storage.db.write() as conn:
            await conn.run_sync(lambda sync: schema_migrations.create(sync))
            await conn.run_sync(first)
            await conn.execute(insert(schema_migrations).values(name=name, applied_at=DAY0))
            # verdict came with 006_safety, cache_hit and saved with 009_cache
            columns = [c for c in UsageRecord.__slots__ if c not in ("verdict", "cache_hit", "saved")]
            await conn.execute(
                text(f"INSERT INTO usage ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"),
                [{name: getattr(r, name) if name != "created_at" else _stored_time(r.created_at, storage.dialect)
                  for name in columns} for r in stored])
        assert await storage.upgrade() == [n for n, _ in MIGRATIONS[1:]]
        for filters, group_by in CASES:
            same(await storage.query_usage(filters, group_by), expected(stored, filters, group_by))
        # Written once more after the upgrade (a journal replayed): nothing is added.
        assert await storage.write_usage(stored[:50]) == 0
        same(await storage.query_usage(UsageFilters(), ["day"]), expected(stored, UsageFilters(), ["day"]))
    finally:
        await storage.close()


def _stored_time(moment: datetime, dialect: str) -> Any:
    """A time as the first release stored it: naive UTC text on SQLite, aware on PostgreSQL."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f") if dialect == "sqlite" else moment


async def test_naive_bounds_are_taken_as_utc(storage: Storage) -> None:
    stored = records(100, seed=8)
    await storage.write_usage(stored)
    aware = UsageFilters(since=DAY0 + timedelta(hours=30), until=DAY0 + timedelta(hours=75))
    naive = UsageFilters(since=aware.since.replace(tzinfo=None), until=aware.until.replace(tzinfo=None))  # type: ignore[union-attr]
    same(await storage.query_usage(naive, ["day"]), expected(stored, aware, ["day"]))

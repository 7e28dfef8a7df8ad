"""Usage records: written in batches, idempotently; summed for budgets and reports.

Each batch is written in one transaction together with the day totals it adds to
(``usage_daily``: per UTC day and project, key, deployment, provider, model, verdict and cache hit). Reports and
budgets read those totals for the whole days they cover and the records themselves only for the
part days at either end of a range (through the records' time-ordered key), so what they read
grows with the groups used per day, not with the requests made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, RowMapping, Select, Table, case, func, literal, select, union_all
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from modelgate.storage.engine import Database
from modelgate.storage.errors import StorageError
from modelgate.storage.records import GROUP_BY, UsageFilters, UsageRecord, UsageRow
from modelgate.storage.tables import group_hash, usage, usage_daily

Scope = Literal["key", "project"]
# Records are flat: a shallow row per record (dataclasses.asdict deep-copies every value).
_COLUMNS = tuple(f.name for f in fields(UsageRecord))
TOTALS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "output_tokens")
# What a usage_daily row adds up, in its column order.
MEASURES = ("requests", "errors", *TOTALS, "cost", "price", "cache_hits", "saved")
_DAY = timedelta(days=1)
# What one record adds to each measure.
_RECORD_MEASURES: dict[str, ColumnElement[Any]] = {
    "requests": literal(1, usage.c.input_tokens.type), "errors": case((usage.c.status >= 400, 1), else_=0),
    "cache_hits": case((usage.c.cache_hit, 1), else_=0),
    **{name: usage.c[name] for name in (*TOTALS, "cost", "price", "saved")}}


class UsageRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def write(self, records: Sequence[UsageRecord]) -> int:
        """Insert the records not stored yet (the same ``created_at`` and ``request_id``) and add
        them to their days' totals; the number inserted."""
        if not records:
            return 0
        # Once per key, in key order: rows are locked in the same order by concurrent writers.
        unique = {(_utc(record.created_at), record.request_id): record for record in reversed(records)}
        keys = sorted(unique)
        rows = [{name: getattr(unique[key], name) for name in _COLUMNS} for key in keys]
        insert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
        statement = (insert(usage).on_conflict_do_nothing(index_elements=[usage.c.created_at, usage.c.request_id])
                     .returning(usage.c.created_at, usage.c.request_id))
        add = insert(usage_daily)
        add_totals = add.on_conflict_do_update(
            index_elements=[usage_daily.c.day, usage_daily.c.group_hash],
            set_={name: usage_daily.c[name] + add.excluded[name] for name in MEASURES})
        async with self.db.write() as conn:
            # RETURNING yields only the rows inserted, so the count is exact on both dialects
            # (an executemany's rowcount is not), and only those are added to the totals.
            result = await conn.execute(statement, rows)
            inserted = [(moment, unique[(moment, request_id)])
                        for moment, request_id in ((_utc(c), r) for c, r in result.all())]
            if inserted:
                await conn.execute(add_totals, _day_totals(inserted))
            return len(inserted)

    async def spend(self, scope: Scope, id: str, since: datetime) -> float:
        """USD charged to one key or project since ``since``."""
        filters = (UsageFilters(key_id=id, since=since) if _scope_group(scope) == "key"
                   else UsageFilters(project=id, since=since))
        found = await self._summed(filters, [], ("requests", "price"))
        return float(found[0]["price"]) if found and found[0]["requests"] else 0.0

    async def spend_all(self, scope: Scope, since: datetime) -> dict[str, float]:
        """USD charged to each key or project with usage since ``since``."""
        name = _scope_group(scope)
        found = await self._summed(UsageFilters(since=since), [name], ("price",))
        return {str(row[name]): float(row["price"]) for row in found if row[name] is not None}

    async def query(self, filters: UsageFilters, group_by: Sequence[str] = ()) -> list[UsageRow]:
        for name in group_by:
            if name not in GROUP_BY:
                raise StorageError(f"cannot group usage by {name!r}; use some of {', '.join(GROUP_BY)}")
        names = list(dict.fromkeys(group_by))
        rows = []
        for found in await self._summed(filters, names, MEASURES):
            if not found["requests"]:
                continue
            row = UsageRow(requests=int(found["requests"]), errors=int(found["errors"]),
                           cost=float(found["cost"]), revenue=float(found["price"]),
                           cache_hits=int(found["cache_hits"]), saved=float(found["saved"]))
            for name in TOTALS:
                setattr(row, name, int(found[name]))
            for name in names:
                value = found[name]
                setattr(row, "key_id" if name == "key" else name, bool(value) if name == "cache_hit" else value)
            rows.append(row)
        return rows

    async def _summed(self, filters: UsageFilters, names: list[str], measures: Sequence[str]) -> Sequence[RowMapping]:
        """The ``measures`` summed per group of ``names`` over the filtered usage."""
        parts = self._parts(filters, names, measures)
        if not parts:
            return []
        source = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery()
        groups = [source.c[name] for name in names]
        query: Select[Any] = select(
            *groups, *(func.coalesce(func.sum(source.c[name]), 0).label(name) for name in measures))
        if groups:
            # NULLs (say, requests no provider answered) sort last on both dialects.
            query = query.group_by(*groups).order_by(*(c.asc().nulls_last() for c in groups))
        async with self.db.read() as conn:
            found: Sequence[RowMapping] = (await conn.execute(query)).mappings().all()
        return found

    def _parts(self, filters: UsageFilters, names: list[str], measures: Sequence[str]) -> list[Select[Any]]:
        """Selects of the same columns (the groups, then the measures) that together cover the
        filtered usage: the day totals of the whole days in the range, the records of the part
        days at its ends."""
        since = _utc(filters.since) if filters.since is not None else None
        until = _utc(filters.until) if filters.until is not None else None
        if since is not None and until is not None and until <= since:
            return []
        first_day = _day_start(since + _DAY - timedelta(microseconds=1)) if since is not None else None
        end_day = _day_start(until) if until is not None else None
        if since is not None and until is not None and first_day is not None and end_day is not None \
                and first_day >= end_day:
            return [self._records(filters, names, measures, since, until)]  # no whole day: the records alone
        parts = [self._days(filters, names, measures, first_day, end_day)]
        if since is not None and first_day is not None and since < first_day:
            parts.append(self._records(filters, names, measures, since, first_day))
        if until is not None and end_day is not None and end_day < until:
            parts.append(self._records(filters, names, measures, end_day, until))
        return parts

    def _days(self, filters: UsageFilters, names: list[str], measures: Sequence[str], first: datetime | None,
              end: datetime | None) -> Select[Any]:
        conditions = _conditions(usage_daily, filters)
        if first is not None:
            conditions.append(usage_daily.c.day >= _label(first))
        if end is not None:
            conditions.append(usage_daily.c.day < _label(end))
        groups = [(usage_daily.c.key_id if name == "key" else usage_daily.c[name]).label(name) for name in names]
        return select(*groups, *(usage_daily.c[name] for name in measures)).where(*conditions)

    def _records(self, filters: UsageFilters, names: list[str], measures: Sequence[str], since: datetime,
                 until: datetime) -> Select[Any]:
        conditions = [*_conditions(usage, filters), usage.c.created_at >= since, usage.c.created_at < until]
        groups = [self._record_group(name).label(name) for name in names]
        return select(*groups, *(_RECORD_MEASURES[name].label(name) for name in measures)).where(*conditions)

    def _record_group(self, name: str) -> ColumnElement[Any]:
        if name == "day":
            # The UTC calendar day as YYYY-MM-DD. SQLite stores naive UTC text (tables.UTCDateTime).
            if self.db.dialect == "sqlite":
                return func.substr(usage.c.created_at, 1, 10)
            return func.to_char(func.timezone("UTC", usage.c.created_at), "YYYY-MM-DD")
        return usage.c.key_id if name == "key" else usage.c[name]


def _day_totals(records: Sequence[tuple[datetime, UsageRecord]]) -> list[dict[str, Any]]:
    """The records (each with its time in UTC) added up per ``usage_daily`` row, in key order."""
    totals: dict[tuple[date, tuple[str | bool | None, ...]], dict[str, Any]] = {}
    for moment, record in records:
        group = (record.project, record.key_id, record.deployment, record.provider, record.model, record.verdict,
                 record.cache_hit)
        key = (moment.date(), group)
        found = totals.get(key)
        if found is None:
            found = totals[key] = {
                "day": key[0].isoformat(), "group_hash": group_hash(*group), "project": record.project,
                "key_id": record.key_id, "deployment": record.deployment, "provider": record.provider,
                "model": record.model, "verdict": record.verdict, "cache_hit": record.cache_hit, "requests": 0,
                "errors": 0, **dict.fromkeys(TOTALS, 0), "cost": 0.0, "price": 0.0, "cache_hits": 0, "saved": 0.0}
        found["requests"] += 1
        if record.cache_hit:
            found["cache_hits"] += 1
            found["saved"] += record.saved
        if record.status >= 400:
            found["errors"] += 1
        found["input_tokens"] += record.input_tokens
        found["cached_input_tokens"] += record.cached_input_tokens
        found["cache_write_tokens"] += record.cache_write_tokens
        found["reasoning_tokens"] += record.reasoning_tokens
        found["output_tokens"] += record.output_tokens
        found["cost"] += record.cost
        found["price"] += record.price
    return sorted(totals.values(), key=lambda row: (row["day"], row["group_hash"]))


def _utc(moment: datetime) -> datetime:
    """As ``tables.UTCDateTime`` stores it: aware UTC (naive taken as UTC)."""
    if moment.tzinfo is UTC:
        return moment
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _day_start(moment: datetime) -> datetime:
    return _utc(moment).replace(hour=0, minute=0, second=0, microsecond=0)


def _label(day: datetime) -> str:
    return day.strftime("%Y-%m-%d")


def _scope_group(scope: str) -> str:
    if scope in ("key", "project"):
        return scope
    raise StorageError(f"spend scope must be 'key' or 'project', got {scope!r}")


def _conditions(table: Table, filters: UsageFilters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for name in ("project", "key_id", "deployment", "provider", "model"):
        value = getattr(filters, name)
        if value is not None:
            conditions.append(table.c[name] == value)
    return conditions

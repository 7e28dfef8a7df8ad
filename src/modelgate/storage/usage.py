"""Usage records: written in batches, idempotently by request id; summed for budgets and reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from modelgate.storage.engine import Database
from modelgate.storage.errors import StorageError
from modelgate.storage.records import GROUP_BY, UsageFilters, UsageRecord, UsageRow
from modelgate.storage.tables import usage

Scope = Literal["key", "project"]
# Records are flat: a shallow row per record (dataclasses.asdict deep-copies every value).
_COLUMNS = tuple(f.name for f in fields(UsageRecord))
TOTALS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "output_tokens")


class UsageRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def write(self, records: Sequence[UsageRecord]) -> int:
        """Insert the records whose request id is not stored yet; the number inserted."""
        if not records:
            return 0
        rows = [{name: getattr(record, name) for name in _COLUMNS} for record in records]
        insert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
        statement = (insert(usage).on_conflict_do_nothing(index_elements=[usage.c.request_id])
                     .returning(usage.c.request_id))
        async with self.db.write() as conn:
            # RETURNING yields only the rows inserted, so the count is exact on both dialects
            # (an executemany's rowcount is not).
            result = await conn.execute(statement, rows)
            return len(result.fetchall())

    async def spend(self, scope: Scope, id: str, since: datetime) -> float:
        column = _scope_column(scope)
        query = select(func.coalesce(func.sum(usage.c.price), 0.0)).where(
            column == id, usage.c.created_at >= since)
        async with self.db.read() as conn:
            return float((await conn.execute(query)).scalar_one())

    async def spend_all(self, scope: Scope, since: datetime) -> dict[str, float]:
        column = _scope_column(scope)
        query = (select(column, func.sum(usage.c.price))
                 .where(column.is_not(None), usage.c.created_at >= since).group_by(column))
        async with self.db.read() as conn:
            return {str(name): float(total) for name, total in (await conn.execute(query)).all()}

    async def query(self, filters: UsageFilters, group_by: Sequence[str] = ()) -> list[UsageRow]:
        for name in group_by:
            if name not in GROUP_BY:
                raise StorageError(f"cannot group usage by {name!r}; use some of {', '.join(GROUP_BY)}")
        groups = {name: self._group_column(name) for name in dict.fromkeys(group_by)}
        query: Select[Any] = select(
            *(column.label(name) for name, column in groups.items()),
            func.count().label("requests"),
            func.coalesce(func.sum((usage.c.status >= 400).cast(usage.c.status.type)), 0).label("errors"),
            *(func.coalesce(func.sum(usage.c[name]), 0).label(name) for name in TOTALS),
            func.coalesce(func.sum(usage.c.cost), 0.0).label("cost"),
            func.coalesce(func.sum(usage.c.price), 0.0).label("revenue"),
        )
        query = query.where(*_conditions(filters))
        if groups:
            # NULLs (say, requests no provider answered) sort last on both dialects.
            query = query.group_by(*groups.values()).order_by(*(c.asc().nulls_last() for c in groups.values()))
        async with self.db.read() as conn:
            result = (await conn.execute(query)).mappings().all()
        rows = []
        for found in result:
            if not groups and found["requests"] == 0:
                continue
            row = UsageRow(requests=int(found["requests"]), errors=int(found["errors"]),
                           cost=float(found["cost"]), revenue=float(found["revenue"]))
            for name in TOTALS:
                setattr(row, name, int(found[name]))
            for name in groups:
                setattr(row, "key_id" if name == "key" else name, found[name])
            rows.append(row)
        return rows

    def _group_column(self, name: str) -> ColumnElement[Any]:
        if name == "day":
            # The UTC calendar day as YYYY-MM-DD. SQLite stores naive UTC text (tables.UTCDateTime).
            if self.db.dialect == "sqlite":
                return func.substr(usage.c.created_at, 1, 10)
            return func.to_char(func.timezone("UTC", usage.c.created_at), "YYYY-MM-DD")
        return _scope_column("key") if name == "key" else usage.c[name]


def _scope_column(scope: str) -> ColumnElement[Any]:
    if scope == "key":
        return usage.c.key_id
    if scope == "project":
        return usage.c.project
    raise StorageError(f"spend scope must be 'key' or 'project', got {scope!r}")


def _conditions(filters: UsageFilters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for name, column in (("project", usage.c.project), ("key_id", usage.c.key_id),
                         ("deployment", usage.c.deployment), ("provider", usage.c.provider),
                         ("model", usage.c.model)):
        value = getattr(filters, name)
        if value is not None:
            conditions.append(column == value)
    if filters.since is not None:
        conditions.append(usage.c.created_at >= filters.since)
    if filters.until is not None:
        conditions.append(usage.c.created_at < filters.until)
    return conditions

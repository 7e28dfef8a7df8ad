"""The request log: one row per request that reached a deployment, searched newest first.

    log.write(entries)             idempotent by (created_at, request_id); the number inserted
    log.search(filters, limit, after)
                                   a page, newest first, and the cursor of the next one
    log.get(request_id)            one entry with its attempts and payloads; None when not kept
    log.written_after(moment)      what batches wrote after ``moment`` (`modelgate logs --follow`)
    log.series(since, bucket_s, by) totals per time bucket and deployment or provider (the portal)
    log.latencies(since, limit)    the newest requests' latencies, for percentiles
    log.purge(before, batch_size)  retention: the rows made before a time, a bounded batch at a time

Every search is one range of an index read in order (``migrations.m007_request_log``): the key
for a time range alone, an index per project, key or deployment, and the partial indexes of
failures: by status for one code, by time for a class (5xx) and for ``q`` (on SQLite that index
holds the error text too, so a word is looked for without reading the rows). A condition the
chosen index does not hold (a provider, a second filter) is checked on the rows as they are read,
until the page is full. A cursor is the position of the last row of a page in that order.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Integer, RowMapping, Select, case, delete, func, literal_column, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from modelgate.storage.bounds import clean_text, text_length
from modelgate.storage.engine import Database
from modelgate.storage.errors import StorageError
from modelgate.storage.records import RequestFilters, RequestLogEntry, UsageRecord
from modelgate.storage.tables import request_log

_USAGE = tuple(f.name for f in fields(UsageRecord))
_TEXTS = {name: text_length(request_log, name) for name in
          ("surface", "path", "client_ip", "user_agent", "trace_id")}
# What a page lists: everything but the attempts and the payloads, which ``get`` gives.
_LISTED = [c for c in request_log.c if c.name not in ("history", "request_body", "response_body", "written_at")]
FAILED = 400  # the status the partial indexes of failures start at


class InvalidCursor(StorageError):
    """A cursor that no page of this log handed out."""


class RequestLogRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def write(self, entries: Sequence[RequestLogEntry], written_at: datetime | None = None) -> int:
        """Insert the entries not stored yet; the number inserted."""
        if not entries:
            return 0
        moment = written_at or datetime.now(UTC)
        rows = [_row(entry, moment) for entry in entries]
        insert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
        statement = (insert(request_log)
                     .on_conflict_do_nothing(index_elements=[request_log.c.created_at, request_log.c.request_id])
                     .returning(request_log.c.request_id))
        async with self.db.write() as conn:
            return len((await conn.execute(statement, rows)).all())

    async def search(self, filters: RequestFilters, limit: int, after: str | None = None
                     ) -> tuple[list[RequestLogEntry], str | None]:
        """Up to ``limit`` entries matching ``filters``, newest first, from after the ``after``
        cursor; and the cursor of the next page (None on the last)."""
        query = self.search_query(filters, limit + 1, after)
        async with self.db.read() as conn:
            found = (await conn.execute(query)).mappings().all()
        entries = [_entry(row) for row in found[:limit]]
        more = len(found) > limit
        return entries, encode_cursor(entries[-1]) if more and entries else None

    def search_query(self, filters: RequestFilters, limit: int, after: str | None) -> Select[Any]:
        t = request_log
        query: Select[Any] = select(*_LISTED).where(*self._conditions(filters))
        if after is not None:
            moment, request_id = decode_cursor(after)
            query = query.where(tuple_(t.c.created_at, t.c.request_id) < tuple_(moment, request_id))
        return query.order_by(t.c.created_at.desc(), t.c.request_id.desc()).limit(limit)

    async def get(self, request_id: str) -> RequestLogEntry | None:
        query = select(request_log).where(request_log.c.request_id == request_id).limit(1)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).mappings().first()
        return _entry(row) if row is not None else None

    async def written_after(self, moment: datetime, filters: RequestFilters, limit: int = 1000
                            ) -> list[tuple[datetime, RequestLogEntry]]:
        """Entries whose batch was written after ``moment``, in the order written, each with the
        time it was written."""
        t = request_log
        query = (select(*_LISTED, t.c.written_at).where(t.c.written_at > moment, *self._conditions(filters))
                 .order_by(t.c.written_at, t.c.created_at, t.c.request_id).limit(limit))
        async with self.db.read() as conn:
            found = (await conn.execute(query)).mappings().all()
        return [(row["written_at"], _entry(row)) for row in found]

    async def series(self, since: datetime, bucket_s: int, by: str) -> list[dict[str, Any]]:
        """Per ``bucket_s`` seconds since ``since`` and per value of ``by`` (deployment or
        provider): requests, failures, tokens, cost and price; buckets as unix seconds."""
        t = request_log
        if by not in ("deployment", "provider"):
            raise StorageError(f"a series is by deployment or provider, not {by!r}")
        if self.db.dialect == "sqlite":
            seconds: ColumnElement[Any] = func.cast(func.strftime("%s", t.c.created_at), Integer)
        else:
            seconds = func.floor(func.extract("epoch", t.c.created_at))
        bucket = (func.floor(seconds / bucket_s) * bucket_s).label("bucket")
        query = (select(bucket, t.c[by].label("group"), func.count().label("requests"),
                        func.sum(case((t.c.status >= FAILED, 1), else_=0)).label("errors"),
                        func.sum(t.c.input_tokens).label("input_tokens"),
                        func.sum(t.c.output_tokens).label("output_tokens"),
                        func.sum(t.c.cost).label("cost"), func.sum(t.c.price).label("price"))
                 .where(t.c.created_at >= since).group_by(bucket, t.c[by]).order_by(bucket))
        async with self.db.read() as conn:
            found = (await conn.execute(query)).mappings().all()
        return [{"bucket": int(row["bucket"]), "group": row["group"], "requests": int(row["requests"]),
                 "errors": int(row["errors"] or 0), "input_tokens": int(row["input_tokens"] or 0),
                 "output_tokens": int(row["output_tokens"] or 0), "cost": float(row["cost"] or 0),
                 "price": float(row["price"] or 0)} for row in found]

    async def latencies(self, since: datetime, limit: int) -> list[tuple[float, float | None]]:
        """The latency and time to first token (ms) of the newest ``limit`` requests since
        ``since`` that reached a provider."""
        t = request_log
        query = (select(t.c.latency_ms, t.c.ttft_ms).where(t.c.created_at >= since, t.c.provider.is_not(None))
                 .order_by(t.c.created_at.desc()).limit(limit))
        async with self.db.read() as conn:
            return [(float(latency), None if ttft is None else float(ttft))
                    for latency, ttft in (await conn.execute(query)).all()]

    async def purge(self, before: datetime, batch_size: int) -> int:
        """Delete the rows made before ``before``, ``batch_size`` per transaction; the number deleted."""
        t = request_log
        oldest = (select(t.c.created_at, t.c.request_id).where(t.c.created_at < before)
                  .order_by(t.c.created_at).limit(batch_size))
        total = 0
        while True:
            async with self.db.write() as conn:
                keys = (await conn.execute(oldest)).all()
                if keys:
                    await conn.execute(delete(t).where(
                        tuple_(t.c.created_at, t.c.request_id).in_([tuple(key) for key in keys])))
            total += len(keys)
            if len(keys) < batch_size:
                return total

    def _conditions(self, filters: RequestFilters) -> list[ColumnElement[bool]]:
        """The filters as SQL, written so that each database reads the index this module's
        docstring names. Where a search reads the failures newest first (``q``, a status class),
        the other conditions are written as expressions (``+0``, ``|| ''``), which no index
        serves: otherwise SQLite takes the equality's index and reads, say, every row of a big
        project to find a word. And ``status >= 400`` is SQL text, not a parameter, so that
        PostgreSQL's plan for any parameters still sees the partial indexes apply."""
        t = request_log
        conditions: list[ColumnElement[bool]] = []
        status = filters.status
        by_time = bool(filters.q) or (status is not None and status[0] != status[1] and status[0] >= FAILED)
        for name in ("project", "key_id", "deployment", "provider"):
            value = getattr(filters, name)
            if value is not None:
                column: ColumnElement[Any] = t.c[name]
                conditions.append((column.concat("") if by_time else column) == value)
        if filters.since is not None:
            conditions.append(t.c.created_at >= filters.since)
        if filters.until is not None:
            conditions.append(t.c.created_at < filters.until)
        failed = bool(filters.q)
        if status is not None:
            low, high = status
            if low == high:
                conditions.append(t.c.status == low)
            else:
                column = t.c.status + 0 if low >= FAILED else t.c.status
                conditions.append(column.between(low, high))
            failed = failed or low >= FAILED
        if filters.q:
            # Only failures have an error message: among them, so the partial index serves.
            conditions.append(t.c.error.contains(filters.q, autoescape=True))
        if failed:
            conditions.append(t.c.status >= literal_column(str(FAILED)))
        return conditions


def encode_cursor(entry: RequestLogEntry) -> str:
    text = orjson.dumps([entry.created_at.isoformat(), entry.request_id])
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        moment, request_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(moment).astimezone(UTC), str(request_id)
    except (ValueError, TypeError) as error:
        raise InvalidCursor("the cursor is not one this log handed out: pass the next_cursor of the "
                            "previous page as it was") from error


def _row(entry: RequestLogEntry, written_at: datetime) -> dict[str, Any]:
    row = {name: getattr(entry, name) for name in _USAGE}
    for name, limit in _TEXTS.items():
        value = getattr(entry, name)
        row[name] = clean_text(value, limit) if isinstance(value, str) else value
    row["written_at"] = written_at
    row["history"] = orjson.dumps(entry.history, default=str).decode()
    row["request_body"] = _clean(entry.request_body)
    row["response_body"] = _clean(entry.response_body)
    return row


def _clean(body: str | None) -> str | None:
    return clean_text(body, len(body)) if body is not None else None


def _entry(row: RowMapping) -> RequestLogEntry:
    values = {name: row[name] for name in row if name != "written_at"}
    history = values.pop("history", None)
    entry = RequestLogEntry(**values)
    if history:
        entry.history = orjson.loads(history)
    return entry

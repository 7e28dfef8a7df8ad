"""The request log: one row per request that reached a deployment, searched newest first.

    log.write(entries)             idempotent by (created_at, request_id); the number inserted
    log.search(filters, limit, after)
                                   a page, newest first, and the cursor of the next one
    log.get(request_id)            one entry with its attempts and payloads; None when not kept
    log.written_after(moment)      what batches wrote after ``moment`` (`modelgate logs --follow`)
    log.purge(before, batch_size)  retention: the rows made before a time, a bounded batch at a time

Every search is one range of an index read in order (``migrations.m007_request_log``): the key
for a time range alone, an index per project, key or deployment, and the partial indexes of
failures for a ``status`` of 400 and up and for ``q``. A condition the chosen index does not hold
(a provider, a second filter) is checked on the rows as they are read, until the page is full.
A cursor is the position of the last row of a page in that order.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, RowMapping, Select, delete, select, tuple_
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
        t = request_log
        conditions: list[ColumnElement[bool]] = []
        for name in ("project", "key_id", "deployment", "provider"):
            value = getattr(filters, name)
            if value is not None:
                conditions.append(t.c[name] == value)
        if filters.since is not None:
            conditions.append(t.c.created_at >= filters.since)
        if filters.until is not None:
            conditions.append(t.c.created_at < filters.until)
        failed = False
        if filters.status is not None:
            low, high = filters.status
            conditions.append(t.c.status == low if low == high else t.c.status.between(low, high))
            failed = low >= FAILED
        if filters.q:
            # Only failures have an error message: among them, so the partial index serves.
            conditions.append(t.c.error.contains(filters.q, autoescape=True))
            failed = True
        if failed:
            # Said in the words of the partial indexes, which SQLite needs to see to use them.
            conditions.append(t.c.status >= FAILED)
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

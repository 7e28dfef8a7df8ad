"""Content-policy blocklists whose terms and patterns are set through the admin API.

A list is named in the config (``safety.blocklists``); what is stored here replaces its terms and
patterns while it is stored. Each change takes the next ``blocklist_revision`` and stamps it on
the row, as deployments do (deployments.py), so "what changed since revision N" is one query; a
deleted list keeps its row with no body, so that a process that knew it learns it is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import RowMapping, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from modelgate.storage.engine import Database
from modelgate.storage.errors import RecordNotFound
from modelgate.storage.tables import blocklists, counters

REVISION = "blocklist_revision"


@dataclass(slots=True, kw_only=True)
class BlocklistRecord:
    name: str
    body: dict[str, Any] | None  # {"terms": [...], "patterns": [...]}; None: deleted
    updated_at: datetime
    revision: int


@dataclass(frozen=True, slots=True)
class BlocklistChanges:
    revision: int  # complete up to this revision
    records: list[BlocklistRecord]  # changed ones, deleted ones included


class BlocklistRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, name: str, body: dict[str, Any]) -> BlocklistRecord:
        """Store the list's terms and patterns, whether it had some or not."""
        async with self.db.write() as conn:
            found = await _record(conn, name)
            record = BlocklistRecord(name=name, body=body, updated_at=datetime.now(UTC),
                                     revision=await _next_revision(conn))
            values = {"body": orjson.dumps(body).decode(), "updated_at": record.updated_at,
                      "revision": record.revision}
            if found is None:
                await conn.execute(blocklists.insert().values(name=name, **values))
            else:
                await conn.execute(update(blocklists).where(blocklists.c.name == name).values(**values))
        return record

    async def delete(self, name: str) -> BlocklistRecord:
        async with self.db.write() as conn:
            record = await _record(conn, name)
            if record is None or record.body is None:
                raise RecordNotFound(f"no terms or patterns are stored for blocklist {name!r}")
            record.body = None
            record.updated_at = datetime.now(UTC)
            record.revision = await _next_revision(conn)
            await conn.execute(update(blocklists).where(blocklists.c.name == name).values(
                body=None, updated_at=record.updated_at, revision=record.revision))
        return record

    async def changes_since(self, revision: int) -> BlocklistChanges | None:
        """The lists changed (deleted ones included) after ``revision``; None if none."""
        async with self.db.read() as conn:
            current = int((await conn.execute(
                select(counters.c.value).where(counters.c.name == REVISION))).scalar_one())
            if current == revision:
                return None
            query = select(blocklists).where(blocklists.c.revision > revision)
            found = [_from_row(row) for row in (await conn.execute(query)).mappings()]
        return BlocklistChanges(revision=current, records=found)


def _from_row(row: RowMapping) -> BlocklistRecord:
    body = row["body"]
    return BlocklistRecord(name=row["name"], body=orjson.loads(body) if body is not None else None,
                           updated_at=row["updated_at"], revision=int(row["revision"]))


async def _record(conn: AsyncConnection, name: str) -> BlocklistRecord | None:
    found = (await conn.execute(select(blocklists).where(blocklists.c.name == name))).mappings().first()
    return _from_row(found) if found is not None else None


async def _next_revision(conn: AsyncConnection) -> int:
    statement = (update(counters).where(counters.c.name == REVISION)
                 .values(value=counters.c.value + 1).returning(counters.c.value))
    return int((await conn.execute(statement)).scalar_one())

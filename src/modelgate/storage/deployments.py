"""Deployments made through the admin API.

Each change takes the next value of the ``deployment_revision`` counter and stamps it on the row
it changes, as key changes do with ``key_revision`` (keys.py): the counter row is locked until the
change commits, so "what changed since revision N" is one exact query. A deleted deployment keeps
its row with no body, so that a process that knew it learns it is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import RowMapping, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from modelgate.storage.engine import Database
from modelgate.storage.errors import AlreadyExists, RecordNotFound
from modelgate.storage.tables import api_deployments, counters

REVISION = "deployment_revision"


@dataclass(slots=True, kw_only=True)
class DeploymentRecord:
    name: str
    body: dict[str, Any] | None  # None: deleted
    created_at: datetime
    updated_at: datetime
    revision: int


@dataclass(frozen=True, slots=True)
class DeploymentChanges:
    revision: int  # complete up to this revision
    records: list[DeploymentRecord]  # changed ones, deleted ones included


class DeploymentRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, name: str, body: dict[str, Any]) -> DeploymentRecord:
        async with self.db.write() as conn:
            found = await _record(conn, name)
            if found is not None and found.body is not None:
                raise AlreadyExists(f"deployment {name!r} exists already")
            revision = await _next_revision(conn)
            now = datetime.now(UTC)
            record = DeploymentRecord(name=name, body=body, created_at=now, updated_at=now, revision=revision)
            values = {"body": _text(body), "created_at": now, "updated_at": now, "revision": revision}
            if found is None:
                try:
                    await conn.execute(api_deployments.insert().values(name=name, **values))
                except IntegrityError as error:
                    raise AlreadyExists(f"deployment {name!r} exists already") from error
            else:
                await conn.execute(update(api_deployments).where(api_deployments.c.name == name).values(**values))
        return record

    async def update(self, name: str, body: dict[str, Any]) -> DeploymentRecord:
        async with self.db.write() as conn:
            record = await _record(conn, name)
            if record is None or record.body is None:
                raise RecordNotFound(f"there is no API-made deployment {name!r}")
            record.body = body
            record.updated_at = datetime.now(UTC)
            record.revision = await _next_revision(conn)
            await conn.execute(update(api_deployments).where(api_deployments.c.name == name).values(
                body=_text(body), updated_at=record.updated_at, revision=record.revision))
        return record

    async def delete(self, name: str) -> DeploymentRecord:
        async with self.db.write() as conn:
            record = await _record(conn, name)
            if record is None or record.body is None:
                raise RecordNotFound(f"there is no API-made deployment {name!r}")
            record.body = None
            record.updated_at = datetime.now(UTC)
            record.revision = await _next_revision(conn)
            await conn.execute(update(api_deployments).where(api_deployments.c.name == name).values(
                body=None, updated_at=record.updated_at, revision=record.revision))
        return record

    async def get(self, name: str) -> DeploymentRecord | None:
        async with self.db.read() as conn:
            record = await _record(conn, name)
        return record if record is not None and record.body is not None else None

    async def list(self) -> list[DeploymentRecord]:
        query = select(api_deployments).where(api_deployments.c.body.is_not(None)).order_by(api_deployments.c.name)
        async with self.db.read() as conn:
            return [_from_row(row) for row in (await conn.execute(query)).mappings()]

    async def revision(self) -> int:
        async with self.db.read() as conn:
            return await _revision(conn)

    async def changes_since(self, revision: int) -> DeploymentChanges | None:
        """The deployments changed (deleted ones included) after ``revision``; None if none."""
        async with self.db.read() as conn:
            current = await _revision(conn)  # first: rows read after it are at least as new
            if current == revision:
                return None
            query = select(api_deployments).where(api_deployments.c.revision > revision)
            found = [_from_row(row) for row in (await conn.execute(query)).mappings()]
        return DeploymentChanges(revision=current, records=found)


def _text(body: dict[str, Any]) -> str:
    return orjson.dumps(body).decode()


def _from_row(row: RowMapping) -> DeploymentRecord:
    body = row["body"]
    return DeploymentRecord(name=row["name"], body=orjson.loads(body) if body is not None else None,
                            created_at=row["created_at"], updated_at=row["updated_at"],
                            revision=int(row["revision"]))


async def _record(conn: AsyncConnection, name: str) -> DeploymentRecord | None:
    found = (await conn.execute(select(api_deployments).where(api_deployments.c.name == name))).mappings().first()
    return _from_row(found) if found is not None else None


async def _revision(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(counters.c.value).where(counters.c.name == REVISION))).scalar_one())


async def _next_revision(conn: AsyncConnection) -> int:
    statement = (update(counters).where(counters.c.name == REVISION)
                 .values(value=counters.c.value + 1).returning(counters.c.value))
    return int((await conn.execute(statement)).scalar_one())

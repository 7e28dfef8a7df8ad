"""Projects and keys.

Every change to a project or a key takes the next value of the ``key_revision`` counter and
stamps it on the rows it changes. The counter row is locked by the changing transaction until it
commits, so revisions become visible in the order they were taken: a process that has seen every
row up to revision N never later finds a new row at or below N. That makes "what changed since I
last looked" one cheap, exact query (auth/keysync.py asks it every few seconds).
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import RowMapping, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from modelgate.storage.bounds import bounded_limits
from modelgate.storage.engine import Database
from modelgate.storage.errors import AlreadyExists, RecordNotFound, StorageError
from modelgate.storage.records import (
    BUDGET_PERIODS,
    ActiveKeyRow,
    ActiveKeys,
    KeyChanges,
    KeyRecord,
    LimitFields,
    ProjectRecord,
)
from modelgate.storage.tables import api_keys, counters, projects

LIMIT_NAMES = tuple(f.name for f in fields(LimitFields))


class KeyRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- projects ----------------------------------------------------------------------------

    async def create_project(self, name: str, limits: LimitFields | None = None,
                             safety: str | None = None) -> ProjectRecord:
        values = _limit_values(limits or LimitFields())
        async with self.db.write() as conn:
            if await _project(conn, name) is not None:
                raise AlreadyExists(f"project {name!r} exists already")
            revision = await _next_revision(conn)
            record = ProjectRecord(name=name, created_at=_now(), revision=revision, safety=safety, **values)
            await conn.execute(projects.insert().values(_project_row(record)))
        return record

    async def update_project(self, name: str, changes: dict[str, Any]) -> ProjectRecord:
        """Set the named limits (``deployments``, ``rpm``, ``tpm``, ``budget``, ``budget_period``) and
        content policy (``safety``)."""
        unknown = set(changes) - set(LIMIT_NAMES) - {"safety"}
        if unknown:
            raise StorageError(f"cannot change {', '.join(sorted(unknown))} of a project")
        async with self.db.write() as conn:
            record = await _project(conn, name)
            if record is None:
                raise RecordNotFound(f"there is no project {name!r}")
            for key, value in changes.items():
                setattr(record, key, value)
            _limit_values(record)
            record.revision = await _next_revision(conn)
            await conn.execute(update(projects).where(projects.c.name == name)
                               .values(**{k: getattr(record, k) for k in LIMIT_NAMES}, safety=record.safety,
                                       revision=record.revision))
        return record

    async def get_project(self, name: str) -> ProjectRecord | None:
        async with self.db.read() as conn:
            return await _project(conn, name)

    async def list_projects(self) -> list[ProjectRecord]:
        async with self.db.read() as conn:
            result = await conn.execute(select(projects).order_by(projects.c.name))
            return [_project_record(row) for row in result.mappings()]

    # -- keys --------------------------------------------------------------------------------

    async def create_key(
        self, *, id: str, project: str, key_hash: str, prefix: str, limits: LimitFields | None = None,
        name: str | None = None, expires_at: datetime | None = None, create_project: bool = True,
    ) -> KeyRecord:
        """Store a new key; its project is created (with no limits) when missing and
        ``create_project`` is true."""
        values = _limit_values(limits or LimitFields())
        async with self.db.write() as conn:
            revision = await _next_revision(conn)
            if await _project(conn, project) is None:
                if not create_project:
                    raise RecordNotFound(f"there is no project {project!r}; create it first")
                await conn.execute(projects.insert().values(_project_row(
                    ProjectRecord(name=project, created_at=_now(), revision=revision))))
            record = KeyRecord(id=id, project=project, key_hash=key_hash, prefix=prefix, name=name,
                               expires_at=expires_at, created_at=_now(), revision=revision, **values)
            try:
                await conn.execute(api_keys.insert().values(_key_row(record)))
            except IntegrityError as error:
                raise AlreadyExists(f"a key with id {id!r} or the same hash exists already") from error
        return record

    async def revoke_key(self, id: str) -> KeyRecord:
        """Mark the key revoked (a key revoked before stays as it was)."""
        async with self.db.write() as conn:
            found = (await conn.execute(select(api_keys).where(api_keys.c.id == id))).mappings().first()
            if found is None:
                raise RecordNotFound(f"there is no key {id!r}; `modelgate keys list` shows the ids")
            record = _key_record(found)
            if record.revoked_at is None:
                record.revision = await _next_revision(conn)
                record.revoked_at = _now()
                await conn.execute(update(api_keys).where(api_keys.c.id == id)
                                   .values(revoked_at=record.revoked_at, revision=record.revision))
        return record

    async def get_key(self, id: str) -> KeyRecord | None:
        async with self.db.read() as conn:
            found = (await conn.execute(select(api_keys).where(api_keys.c.id == id))).mappings().first()
        return _key_record(found) if found is not None else None

    async def list_keys(self, project: str | None = None, include_revoked: bool = False) -> list[KeyRecord]:
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if project is not None:
            query = query.where(api_keys.c.project == project)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        async with self.db.read() as conn:
            return [_key_record(row) for row in (await conn.execute(query)).mappings()]

    # -- what the key caches of the gateway processes read -------------------------------------

    async def revision(self) -> int:
        async with self.db.read() as conn:
            return await _revision(conn)

    async def load_active(self) -> KeyChanges:
        """Every key not revoked and every project, with the revision they are complete up to."""
        async with self.db.read() as conn:
            # The counter first: rows read after it are at least as new (see the module docstring).
            revision = await _revision(conn)
            keys = (await conn.execute(select(api_keys).where(api_keys.c.revoked_at.is_(None)))).mappings()
            key_records = [_key_record(row) for row in keys]
            found = (await conn.execute(select(projects))).mappings()
            return KeyChanges(revision=revision, keys=key_records,
                              projects=[_project_record(row) for row in found])

    async def load_active_rows(self) -> ActiveKeys:
        """``load_active`` as a gateway starts: each key as the plain row its principal is made of
        (``ActiveKeyRow``), converted only when the key is first used; texts that repeat (a
        project's name, the budget period) kept once. About 0.3 s and 50 MB for 100,000 keys."""
        async with self.db.read() as conn:
            revision = await _revision(conn)  # first, as in load_active
            # Read in parts, so that the rows in transit stay few.
            keys = await conn.stream(text(_ACTIVE_KEY_ROWS).execution_options(yield_per=_LOAD_PART))
            shared: dict[str, str] = {}
            rows: list[ActiveKeyRow] = []
            async for part in keys.partitions():
                rows += [(id, shared.setdefault(project, project), key_hash, deployments, rpm, tpm, budget,
                          shared.setdefault(period, period), expires_at)
                         for id, project, key_hash, deployments, rpm, tpm, budget, period, expires_at in part]
            found = (await conn.execute(select(projects))).mappings()
            return ActiveKeys(revision=revision, rows=rows, projects=[_project_record(row) for row in found])

    async def changes_since(self, revision: int) -> KeyChanges | None:
        """Keys (revoked ones included) and projects changed after ``revision``; None if none."""
        async with self.db.read() as conn:
            current = await _revision(conn)
            if current == revision:
                return None
            keys = (await conn.execute(select(api_keys).where(api_keys.c.revision > revision))).mappings()
            key_records = [_key_record(row) for row in keys]
            found = (await conn.execute(select(projects).where(projects.c.revision > revision))).mappings()
            return KeyChanges(revision=current, keys=key_records,
                              projects=[_project_record(row) for row in found])


_LOAD_PART = 5_000
_ACTIVE_KEY_ROWS = ("SELECT id, project, key_hash, deployments, rpm, tpm, budget, budget_period, expires_at "
                    "FROM api_keys WHERE revoked_at IS NULL")


def row_deployments(value: Any) -> list[str] | None:
    """An ``ActiveKeyRow``'s deployments as the driver gives them (JSON text, or decoded)."""
    if value is None or isinstance(value, list):
        return value
    decoded = orjson.loads(value)
    return None if decoded is None else [str(name) for name in decoded]


def row_time(value: str | datetime | None) -> datetime | None:
    """A time as the driver gives it (SQLite: naive UTC text; PostgreSQL: aware) as aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value + "+00:00")  # five times faster than .replace(tzinfo=)
        except ValueError:
            return row_time(datetime.fromisoformat(value))
    if value.tzinfo is UTC:
        return value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


async def _revision(conn: AsyncConnection) -> int:
    query = select(counters.c.value).where(counters.c.name == "key_revision")
    return int((await conn.execute(query)).scalar_one())


async def _next_revision(conn: AsyncConnection) -> int:
    statement = (update(counters).where(counters.c.name == "key_revision")
                 .values(value=counters.c.value + 1).returning(counters.c.value))
    return int((await conn.execute(statement)).scalar_one())


async def _project(conn: AsyncConnection, name: str) -> ProjectRecord | None:
    found = (await conn.execute(select(projects).where(projects.c.name == name))).mappings().first()
    return _project_record(found) if found is not None else None


def _limit_values(limits: LimitFields) -> dict[str, Any]:
    if limits.budget_period not in BUDGET_PERIODS:
        raise StorageError(f"budget_period must be one of {', '.join(BUDGET_PERIODS)}, got {limits.budget_period!r}")
    return {name: getattr(limits, name) for name in LIMIT_NAMES}


def _limits_from(row: RowMapping) -> dict[str, Any]:
    deployments = row["deployments"]
    return {"deployments": list(deployments) if deployments is not None else None, "rpm": row["rpm"],
            "tpm": row["tpm"], "budget": row["budget"], "budget_period": row["budget_period"]}


def _project_row(record: ProjectRecord) -> dict[str, Any]:
    return {"name": record.name, "created_at": record.created_at, "revision": record.revision,
            "safety": record.safety, **_limit_values(record)}


def _project_record(row: RowMapping) -> ProjectRecord:
    return bounded_limits(ProjectRecord(name=row["name"], created_at=row["created_at"],
                                        revision=int(row["revision"]), safety=row["safety"], **_limits_from(row)))


def _key_row(record: KeyRecord) -> dict[str, Any]:
    return {"id": record.id, "project": record.project, "key_hash": record.key_hash, "prefix": record.prefix,
            "name": record.name, "expires_at": record.expires_at, "created_at": record.created_at,
            "revoked_at": record.revoked_at, "revision": record.revision, **_limit_values(record)}


def _key_record(row: RowMapping) -> KeyRecord:
    return bounded_limits(KeyRecord(
        id=row["id"], project=row["project"], key_hash=row["key_hash"], prefix=row["prefix"], name=row["name"],
        expires_at=row["expires_at"], created_at=row["created_at"], revoked_at=row["revoked_at"],
        revision=int(row["revision"]), **_limits_from(row)))


def limits_of(record: LimitFields) -> LimitFields:
    return LimitFields(**{name: getattr(record, name) for name in LIMIT_NAMES})


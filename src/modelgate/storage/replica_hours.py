"""Replica hours: how long each replica of a local model ran, and what that cost.

A run is one replica's child process from its launch to its end. The gateway that runs it writes
a row at the launch, moves the row's ``heartbeat_at`` on while it runs, and writes the end; a
gateway that crashed writes no end, so a run without one ends at its last heartbeat (and the next
gateway to start on the database writes that end, as ``lost``). A period's replica hours are the
runs' overlaps with it; their cost is each run's hours at the ``per_replica_hour`` in force when
it started.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from modelgate.storage.engine import Database
from modelgate.storage.tables import replica_hours

_HOUR_S = 3600.0


@dataclass(slots=True, kw_only=True)
class ReplicaRun:
    id: str
    provider: str
    model: str
    replica: int
    process: str  # host:pid of the gateway process that ran it
    per_replica_hour: float | None  # USD; None: no compute_cost was set
    started_at: datetime
    heartbeat_at: datetime
    ended_at: datetime | None = None
    end_reason: str | None = None  # failed | died | hung | stopped | lost

    @property
    def end(self) -> datetime:
        """When the run ended, or as far as it is known to have run: its last heartbeat."""
        return self.ended_at if self.ended_at is not None else self.heartbeat_at


@dataclass(slots=True, kw_only=True)
class ComputeRow:
    """One local model's replica time in a period and what it cost."""

    provider: str
    model: str
    runs: int
    replica_hours: float
    compute_cost: float | None  # USD; None where no run of it had a per_replica_hour
    per_replica_hour: float | None  # the rate, where every run had the same one


def run_hours(run: ReplicaRun, since: datetime | None = None, until: datetime | None = None) -> float:
    """The hours of ``run`` within [since, until) (either end open when None)."""
    start = run.started_at if since is None else max(run.started_at, since)
    end = run.end if until is None else min(run.end, until)
    return max(0.0, (end - start).total_seconds() / _HOUR_S)


def compute_rows(runs: Iterable[ReplicaRun], since: datetime | None = None,
                 until: datetime | None = None) -> list[ComputeRow]:
    """The runs' hours and cost within [since, until), per provider and model, in their order."""
    found: dict[tuple[str, str], ComputeRow] = {}
    rates: dict[tuple[str, str], set[float | None]] = {}
    for run in runs:
        hours = run_hours(run, since, until)
        if hours <= 0.0:
            continue
        key = (run.provider, run.model)
        row = found.get(key)
        if row is None:
            row = found[key] = ComputeRow(provider=run.provider, model=run.model, runs=0, replica_hours=0.0,
                                          compute_cost=None, per_replica_hour=None)
        row.runs += 1
        row.replica_hours += hours
        rates.setdefault(key, set()).add(run.per_replica_hour)
        if run.per_replica_hour is not None:
            row.compute_cost = (row.compute_cost or 0.0) + hours * run.per_replica_hour
    for key, row in found.items():
        used = rates[key]
        row.per_replica_hour = next(iter(used)) if len(used) == 1 else None
    return [found[key] for key in sorted(found)]


class ReplicaHoursRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def start(self, run: ReplicaRun) -> None:
        """Store a run that started; once, however often it is written."""
        insert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
        async with self.db.write() as conn:
            await conn.execute(insert(replica_hours).values(_row(run)).on_conflict_do_nothing(
                index_elements=[replica_hours.c.id]))

    async def heartbeat(self, ids: Sequence[str], at: datetime) -> None:
        """The runs ``ids`` (those not ended) were running at ``at``."""
        if not ids:
            return
        async with self.db.write() as conn:
            await conn.execute(update(replica_hours)
                               .where(replica_hours.c.id.in_(list(ids)), replica_hours.c.ended_at.is_(None))
                               .values(heartbeat_at=at))

    async def end(self, id: str, at: datetime, reason: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(update(replica_hours)
                               .where(replica_hours.c.id == id, replica_hours.c.ended_at.is_(None))
                               .values(ended_at=at, heartbeat_at=at, end_reason=reason))

    async def close_lost(self, before: datetime) -> int:
        """End every run whose gateway last beat before ``before`` at that beat; how many."""
        async with self.db.write() as conn:
            result = await conn.execute(
                update(replica_hours)
                .where(replica_hours.c.ended_at.is_(None), replica_hours.c.heartbeat_at < before)
                .values(ended_at=replica_hours.c.heartbeat_at, end_reason="lost"))
            return int(result.rowcount or 0)

    async def runs(self, since: datetime | None = None, until: datetime | None = None,
                   provider: str | None = None) -> list[ReplicaRun]:
        """The runs that overlap [since, until), oldest first."""
        conditions: list[Any] = []
        if until is not None:
            conditions.append(replica_hours.c.started_at < until)
        if since is not None:
            conditions.append(or_(replica_hours.c.ended_at > since,
                                  and_(replica_hours.c.ended_at.is_(None), replica_hours.c.heartbeat_at > since)))
        if provider is not None:
            conditions.append(replica_hours.c.provider == provider)
        query = select(replica_hours).where(*conditions).order_by(replica_hours.c.started_at, replica_hours.c.id)
        async with self.db.read() as conn:
            return [_run(row) for row in (await conn.execute(query)).mappings()]

    async def compute(self, since: datetime | None = None, until: datetime | None = None,
                      provider: str | None = None) -> list[ComputeRow]:
        return compute_rows(await self.runs(since, until, provider), since, until)

    async def count_open(self) -> int:
        async with self.db.read() as conn:
            query = select(func.count()).select_from(replica_hours).where(replica_hours.c.ended_at.is_(None))
            return int((await conn.execute(query)).scalar_one())


def _row(run: ReplicaRun) -> dict[str, Any]:
    return {"id": run.id, "provider": run.provider, "model": run.model, "replica": run.replica,
            "process": run.process, "per_replica_hour": run.per_replica_hour, "started_at": run.started_at,
            "heartbeat_at": run.heartbeat_at, "ended_at": run.ended_at, "end_reason": run.end_reason}


def _run(row: RowMapping) -> ReplicaRun:
    return ReplicaRun(id=row["id"], provider=row["provider"], model=row["model"], replica=row["replica"],
                      process=row["process"], per_replica_hour=row["per_replica_hour"],
                      started_at=row["started_at"], heartbeat_at=row["heartbeat_at"], ended_at=row["ended_at"],
                      end_reason=row["end_reason"])

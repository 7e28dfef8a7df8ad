"""Evaluation runs and their results: a run is named; its results are one row per item, repeat and
deployment, written as each answer is scored, so that a run stopped halfway resumes where it was.

    evals.start(run)                 the run of that name: made, or the stored one (``resume``)
    evals.get(name_or_id)            a run; None when there is none
    evals.runs(dataset_sha256=None)  every run, newest first (a dataset's, for its leaderboard)
    evals.done(run_id)               the (item, repeat, deployment) already answered
    evals.add(result)                one result, idempotently
    evals.results(run_id)            every result of a run, in item order
    evals.finish(run_id, status)     the run's status: running | done | stopped
    evals.describe(run_id, ...)      a run's deployments and scorers set anew (an online experiment's)
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import RowMapping, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from modelgate.storage.bounds import clean_text
from modelgate.storage.engine import Database
from modelgate.storage.errors import AlreadyExists
from modelgate.storage.tables import eval_results, eval_runs


@dataclass(slots=True, kw_only=True)
class EvalRun:
    id: str = field(default_factory=lambda: "run_" + secrets.token_hex(8))
    name: str
    dataset: str  # the file's path as given
    dataset_sha256: str
    items: int
    deployments: list[str]
    scorers: list[str]
    repeats: int = 1
    project: str = "evals"
    status: str = "running"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(slots=True, kw_only=True)
class EvalResult:
    run_id: str
    item: int
    repeat: int
    deployment: str
    request_id: str | None = None
    question: str = ""  # the item's last user turn
    output: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # scorer → {"score", "passed", "detail"}
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0  # what the provider charges for the answer
    price: float = 0.0  # what the run's project was charged for it
    scoring_price: float = 0.0  # what the scorers' own calls (a judge's) were charged
    error: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class RunMismatch(ValueError):
    """A run of that name exists with another dataset, deployments, scorers or repeats."""


class EvalRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def start(self, run: EvalRun) -> tuple[EvalRun, bool]:
        """The run named ``run.name``: ``run`` itself, stored now; or the stored one with the same
        dataset, deployments, scorers and repeats, marked running again (True: resumed).
        ``RunMismatch`` where the stored one differs."""
        found = await self.get(run.name)
        if found is not None:
            for what in ("dataset_sha256", "deployments", "scorers", "repeats"):
                if getattr(found, what) != getattr(run, what):
                    raise RunMismatch(
                        f"a run named {run.name!r} exists with other {what.replace('_sha256', '')} "
                        f"({getattr(found, what)!r}, not {getattr(run, what)!r}): give this run another --name, "
                        "or run it as it was to resume it")
            await self.finish(found.id, "running")
            found.status = "running"
            return found, True
        row = {name: getattr(run, name) for name in ("id", "name", "dataset", "dataset_sha256", "items", "repeats",
                                                     "project", "status", "created_at", "updated_at")}
        row.update(deployments=orjson.dumps(run.deployments).decode(), scorers=orjson.dumps(run.scorers).decode())
        try:
            async with self.db.write() as conn:
                await conn.execute(eval_runs.insert().values(**row))
        except AlreadyExists:  # another process started it a moment ago
            return await self.start(run)
        return run, False

    async def get(self, name_or_id: str) -> EvalRun | None:
        query = select(eval_runs).where(or_(eval_runs.c.name == name_or_id, eval_runs.c.id == name_or_id))
        async with self.db.read() as conn:
            row = (await conn.execute(query)).mappings().first()
        return _run(row) if row is not None else None

    async def runs(self, dataset_sha256: str | None = None) -> list[EvalRun]:
        query = select(eval_runs).order_by(eval_runs.c.created_at.desc())
        if dataset_sha256 is not None:
            query = query.where(eval_runs.c.dataset_sha256 == dataset_sha256)
        async with self.db.read() as conn:
            return [_run(row) for row in (await conn.execute(query)).mappings()]

    async def done(self, run_id: str) -> set[tuple[int, int, str]]:
        t = eval_results
        query = select(t.c.item, t.c.repeat, t.c.deployment).where(t.c.run_id == run_id)
        async with self.db.read() as conn:
            return {(int(i), int(r), str(d)) for i, r, d in (await conn.execute(query)).all()}

    async def add(self, result: EvalResult) -> None:
        row = {name: getattr(result, name) for name in (
            "run_id", "item", "repeat", "deployment", "request_id", "latency_ms", "ttft_ms", "input_tokens",
            "output_tokens", "cost", "price", "scoring_price", "created_at")}
        row.update(output=clean_text(result.output, len(result.output)),
                   question=clean_text(result.question, len(result.question)),
                   tool_calls=orjson.dumps(result.tool_calls).decode(),
                   scores=orjson.dumps(result.scores).decode(),
                   error=clean_text(result.error, len(result.error)) if result.error is not None else None)
        insert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
        statement = insert(eval_results).values(**row).on_conflict_do_nothing(
            index_elements=[eval_results.c.run_id, eval_results.c.item, eval_results.c.repeat,
                            eval_results.c.deployment])
        async with self.db.write() as conn:
            await conn.execute(statement)
            await conn.execute(update(eval_runs).where(eval_runs.c.id == result.run_id)
                               .values(updated_at=datetime.now(UTC)))

    async def results(self, run_id: str) -> list[EvalResult]:
        t = eval_results
        query = select(t).where(t.c.run_id == run_id).order_by(t.c.item, t.c.deployment, t.c.repeat)
        async with self.db.read() as conn:
            return [_result(row) for row in (await conn.execute(query)).mappings()]

    async def finish(self, run_id: str, status: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(update(eval_runs).where(eval_runs.c.id == run_id)
                               .values(status=status, updated_at=datetime.now(UTC)))


    async def describe(self, run_id: str, *, deployments: list[str], scorers: list[str]) -> None:
        """The deployments and scorers of a run that has no fixed ones: an online experiment's
        (server/experiments.py), which follow its deployment's config."""
        async with self.db.write() as conn:
            await conn.execute(update(eval_runs).where(eval_runs.c.id == run_id).values(
                deployments=orjson.dumps(deployments).decode(), scorers=orjson.dumps(scorers).decode(),
                updated_at=datetime.now(UTC)))


def _run(row: RowMapping) -> EvalRun:
    values = dict(row)
    values["deployments"] = orjson.loads(values["deployments"])
    values["scorers"] = orjson.loads(values["scorers"])
    return EvalRun(**values)


def _result(row: RowMapping) -> EvalResult:
    values = dict(row)
    values["tool_calls"] = orjson.loads(values["tool_calls"])
    values["scores"] = orjson.loads(values["scores"])
    return EvalResult(**values)

"""Replica hours: the arithmetic of runs over periods, and their storage on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from modelgate.storage import Storage
from modelgate.storage.replica_hours import ReplicaRun, compute_rows, run_hours

T0 = datetime(2030, 1, 31, 22, tzinfo=UTC)
HOUR = timedelta(hours=1)


def run(id: str, start: datetime, hours: float | None, *, beat: float | None = None, rate: float | None = 2.0,
        model: str = "smollm2", provider: str = "local") -> ReplicaRun:
    """A run of ``hours`` (None: not ended), last beaten ``beat`` hours after its start."""
    ended = start + timedelta(hours=hours) if hours is not None else None
    heartbeat = ended if ended is not None else start + timedelta(hours=beat or 0.0)
    return ReplicaRun(id=id, provider=provider, model=model, replica=0, process="host:1", per_replica_hour=rate,
                      started_at=start, heartbeat_at=heartbeat, ended_at=ended,
                      end_reason="stopped" if ended is not None else None)


# -- the arithmetic ----------------------------------------------------------------------------

def test_a_run_counts_its_overlap_with_the_period() -> None:
    three = run("a", T0, 3.0)  # 22:00 on Jan 31 to 01:00 on Feb 1
    assert run_hours(three) == 3.0
    assert run_hours(three, since=T0 + HOUR) == 2.0
    assert run_hours(three, until=T0 + 2 * HOUR) == 2.0
    feb = datetime(2030, 2, 1, tzinfo=UTC)
    assert run_hours(three, since=T0 - 24 * HOUR, until=feb) == 2.0  # January's part
    assert run_hours(three, since=feb, until=feb + 24 * HOUR) == 1.0  # February's part
    assert run_hours(three, since=T0 + 5 * HOUR) == 0.0  # after it
    assert run_hours(three, until=T0) == 0.0  # before it


def test_a_run_without_an_end_runs_to_its_last_heartbeat() -> None:
    open_run = run("a", T0, None, beat=1.5)  # its gateway crashed after beating 1.5 hours in
    assert open_run.end == T0 + 1.5 * HOUR
    assert run_hours(open_run) == 1.5
    assert run_hours(open_run, since=T0 + HOUR) == 0.5
    assert run_hours(open_run, since=T0 + 2 * HOUR) == 0.0
    assert run_hours(run("b", T0, None)) == 0.0  # never beaten: nothing known to have run


def test_compute_rows_sum_hours_and_cost_per_model_at_each_runs_rate() -> None:
    rows = compute_rows([
        run("a", T0, 1.0, rate=2.0), run("b", T0, 0.5, rate=4.0),  # the rate changed between runs
        run("c", T0, 2.0, rate=None, model="other"),  # no compute_cost set
        run("d", T0, 1.0, rate=3.0, model="third"), run("e", T0 + 2 * HOUR, None, beat=1.0, model="third", rate=3.0),
        run("f", T0 + 9 * HOUR, 1.0),  # outside the period
    ], since=T0, until=T0 + 4 * HOUR)
    by_model = {row.model: row for row in rows}
    assert [row.model for row in rows] == ["other", "smollm2", "third"]
    assert (by_model["smollm2"].runs, by_model["smollm2"].replica_hours) == (2, 1.5)
    assert by_model["smollm2"].compute_cost == pytest.approx(4.0)  # 1 h at 2 + 0.5 h at 4
    assert by_model["smollm2"].per_replica_hour is None  # not one rate
    assert (by_model["other"].replica_hours, by_model["other"].compute_cost) == (2.0, None)
    assert (by_model["third"].replica_hours, by_model["third"].compute_cost, by_model["third"].per_replica_hour) \
        == (2.0, 6.0, 3.0)


# -- storage -----------------------------------------------------------------------------------

async def test_runs_are_stored_beaten_ended_and_read_by_period(migrated_database_url: str) -> None:
    storage = await Storage.open(migrated_database_url)
    repo = storage.replica_hours
    try:
        stopped = run("run_a", T0, None)
        await repo.start(stopped)
        await repo.start(stopped)  # written again after a retry: stored once
        await repo.heartbeat(["run_a"], T0 + HOUR)
        await repo.end("run_a", T0 + 2 * HOUR, "stopped")
        await repo.heartbeat(["run_a"], T0 + 5 * HOUR)  # an ended run is not beaten on
        await repo.end("run_a", T0 + 6 * HOUR, "died")  # nor ended twice
        crashed = run("run_b", T0 + HOUR, None, rate=None, model="other")
        await repo.start(crashed)
        await repo.heartbeat(["run_b"], T0 + 3 * HOUR)  # then its gateway died

        [a, b] = await repo.runs()
        assert (a.id, a.ended_at, a.end_reason, a.per_replica_hour) == ("run_a", T0 + 2 * HOUR, "stopped", 2.0)
        assert (b.id, b.ended_at, b.heartbeat_at) == ("run_b", None, T0 + 3 * HOUR)
        assert await repo.count_open() == 1
        assert [r.id for r in await repo.runs(since=T0 + 2.5 * HOUR)] == ["run_b"]
        assert [r.id for r in await repo.runs(until=T0 + HOUR)] == ["run_a"]
        assert [r.id for r in await repo.runs(provider="elsewhere")] == []

        rows = await repo.compute(since=T0, until=T0 + 24 * HOUR)
        assert [(r.model, r.replica_hours, r.compute_cost) for r in rows] == [
            ("other", 2.0, None), ("smollm2", 2.0, 4.0)]

        # The next gateway to start ends the runs whose gateway stopped beating, at their last beat.
        assert await repo.close_lost(before=T0 + 2 * HOUR) == 0  # beaten since: not lost yet
        assert await repo.close_lost(before=T0 + 4 * HOUR) == 1
        [_, b] = await repo.runs()
        assert (b.ended_at, b.end_reason) == (T0 + 3 * HOUR, "lost")
        assert await repo.count_open() == 0
    finally:
        await storage.close()

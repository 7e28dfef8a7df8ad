"""The uptime recorder: replica starts and ends written off the pools' path, heartbeats, lost runs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from modelgate.engines.settings import ComputeCost, EngineSettings
from modelgate.metering import UptimeRecorder
from modelgate.storage import Storage
from tests.support import eventually


def pool(name: str = "smollm2", cost: float | None = 1.5) -> Any:
    engine = EngineSettings(compute_cost=ComputeCost(per_replica_hour=cost) if cost is not None else None)
    return SimpleNamespace(provider="local", name=name, spec=SimpleNamespace(engine=engine))


async def test_starts_and_ends_are_written_by_the_background_task(migrated_database_url: str) -> None:
    storage = await Storage.open(migrated_database_url)
    uptime = UptimeRecorder(storage.replica_hours, heartbeat=0.05)
    try:
        await uptime.start()
        one, other = pool(), pool("other", cost=None)
        uptime.replica_started(one, 0)
        uptime.replica_started(one, 1)
        uptime.replica_started(other, 0)
        assert uptime.unwritten == 3  # taken without waiting
        await eventually(lambda: uptime.unwritten == 0)
        uptime.replica_ended(one, 1, "died")
        uptime.replica_ended(one, 1, "stopped")  # already ended: nothing more
        first = {r.id: r for r in await storage.replica_hours.runs()}
        await asyncio.sleep(0.2)  # beats
        await eventually(lambda: uptime.unwritten == 0)
        runs = await storage.replica_hours.runs()
        assert sorted((r.model, r.replica, r.per_replica_hour, r.end_reason) for r in runs) == [
            ("other", 0, None, None), ("smollm2", 0, 1.5, None), ("smollm2", 1, 1.5, "died")]
        assert all(r.heartbeat_at > first[r.id].heartbeat_at for r in runs if r.end_reason is None)
        assert len(uptime.running) == 2
        uptime.replica_ended(one, 0, "stopped")
        uptime.replica_ended(other, 0, "stopped")
    finally:
        await uptime.stop()  # writes the ends still queued
        assert await storage.replica_hours.count_open() == 0
        await storage.close()


async def test_a_crashed_gateways_runs_end_at_their_last_beat_when_the_next_starts(
        migrated_database_url: str) -> None:
    storage = await Storage.open(migrated_database_url)
    try:
        crashed = UptimeRecorder(storage.replica_hours, heartbeat=3600)
        crashed.replica_started(pool(), 0)
        await crashed.flush()  # written and beaten once; then the process is gone without a stop
        [run] = await storage.replica_hours.runs()
        assert run.ended_at is None

        later = UptimeRecorder(storage.replica_hours, lost_after=0.0)
        await later.start()
        await later.stop()
        [run] = await storage.replica_hours.runs()
        assert (run.ended_at, run.end_reason) == (run.heartbeat_at, "lost")
    finally:
        await storage.close()


async def test_events_wait_in_order_while_the_database_is_down(migrated_database_url: str) -> None:
    storage = await Storage.open(migrated_database_url)
    repository = storage.replica_hours
    failing = True
    real_start = repository.start

    async def start(run: Any) -> None:
        if failing:
            from modelgate.storage import StorageUnavailable
            raise StorageUnavailable("down")
        await real_start(run)

    repository.start = start  # type: ignore[method-assign]
    uptime = UptimeRecorder(repository, heartbeat=3600, retry_interval=0.05)
    try:
        await uptime.start()
        uptime.replica_started(pool(), 0)
        uptime.replica_ended(pool(), 0, "failed")  # another pool object: not this run
        await asyncio.sleep(0.15)
        assert uptime.unwritten == 1
        failing = False
        await eventually(lambda: uptime.unwritten == 0)
        [run] = await repository.runs(since=datetime.now(UTC) - timedelta(minutes=1))
        assert run.ended_at is None
    finally:
        await uptime.stop()
        await storage.close()

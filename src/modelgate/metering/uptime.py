"""The uptime recorder: each local replica's runs, written to ``replica_hours`` off the request path.

The pools (``engines/pool.py``) tell it when a replica starts and ends; it takes each event
without waiting and a background task writes it, one small write per event: replicas start and
end a handful of times a day (at start-up, at shutdown, after a crash), so there is nothing to
batch, and a write per event keeps the stored runs as current as the events. Every
``heartbeat`` seconds the task moves ``heartbeat_at`` of this process's running replicas on, in one
update; a gateway that crashes leaves its runs ending at their last beat, at most one heartbeat
short of the truth. At start it ends the runs whose gateway has not beaten for ``lost_after``
seconds (``lost``), so they are seen as over.

While the database is unreachable the events wait in memory, in order (there are few), and are
tried again every ``retry_interval`` seconds; a stop writes what it can and logs what it cannot.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from modelgate.engines.pool import EndReason, ReplicaPool
from modelgate.storage.errors import StorageError
from modelgate.storage.replica_hours import ReplicaHoursRepository, ReplicaRun

log = logging.getLogger("modelgate.metering")

HEARTBEAT_S = 60.0
LOST_AFTER_BEATS = 5  # a run not beaten for this many heartbeats belongs to a gateway that is gone


@dataclass(frozen=True, slots=True)
class _End:
    id: str
    at: datetime
    reason: str


class UptimeRecorder:
    """A ``ReplicaWatcher`` that stores the runs it hears of; see the module docstring."""

    def __init__(self, repository: ReplicaHoursRepository, *, heartbeat: float = HEARTBEAT_S,
                 retry_interval: float = 5.0, lost_after: float | None = None) -> None:
        self.repository = repository
        self.heartbeat = heartbeat
        self.retry_interval = retry_interval
        self.lost_after = lost_after if lost_after is not None else LOST_AFTER_BEATS * heartbeat
        self.process = f"{socket.gethostname()}:{os.getpid()}"
        # (id of the pool, replica) -> the pool and the run's id; holding the pool keeps its id its own
        self._open: dict[tuple[int, int], tuple[ReplicaPool, str]] = {}
        self._events: deque[ReplicaRun | _End] = deque()  # not yet written, in order
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._next_beat = 0.0

    @property
    def running(self) -> list[str]:
        """The ids of this process's runs that have not ended."""
        return [run_id for _, run_id in self._open.values()]

    @property
    def unwritten(self) -> int:
        return len(self._events)

    def replica_started(self, pool: ReplicaPool, index: int) -> None:
        now = datetime.now(UTC)
        cost = pool.spec.engine.compute_cost
        run = ReplicaRun(id=f"run_{secrets.token_hex(12)}", provider=pool.provider, model=pool.name,
                         replica=index, process=self.process,
                         per_replica_hour=cost.per_replica_hour if cost is not None else None,
                         started_at=now, heartbeat_at=now)
        self._open[(id(pool), index)] = (pool, run.id)
        self._events.append(run)
        self._wake.set()

    def replica_ended(self, pool: ReplicaPool, index: int, reason: EndReason) -> None:
        opened = self._open.pop((id(pool), index), None)
        if opened is not None:
            self._events.append(_End(opened[1], datetime.now(UTC), reason))
            self._wake.set()

    async def start(self) -> None:
        """End the runs of gateways that are gone, then start writing."""
        try:
            lost = await self.repository.close_lost(datetime.now(UTC) - timedelta(seconds=self.lost_after))
        except StorageError as error:
            log.warning("replica hours: the runs of stopped gateways could not be ended (%s)", error)
        else:
            if lost:
                log.info("replica hours: %d run(s) of gateways that stopped without a word end at their "
                         "last heartbeat", lost)
        self._next_beat = time.monotonic() + self.heartbeat
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the task and write what is left (the pools have stopped: their ends are queued)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        try:
            await self._write()
        except StorageError as error:
            log.error("replica hours: %d start or end event(s) could not be written (%s); their runs end at "
                      "their last heartbeat", len(self._events), error)

    async def flush(self) -> None:
        """Write the events taken so far and beat once (tests, and callers that need it now)."""
        await self._write()
        await self._beat()

    async def _pause(self, seconds: float) -> None:
        """Until an event is taken, the stop, or ``seconds``."""
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({waiter}, timeout=seconds)
        finally:
            waiter.cancel()
        self._wake.clear()

    async def _run(self) -> None:
        while not self._stopping:
            await self._pause(max(0.0, self._next_beat - time.monotonic()))
            if self._stopping:
                return
            try:
                await self._write()
                if time.monotonic() >= self._next_beat:
                    await self._beat()
                    self._next_beat = time.monotonic() + self.heartbeat
            except StorageError as error:
                log.warning("replica hours: the database did not take %d event(s) (%s); trying again in %gs",
                            len(self._events), error, self.retry_interval)
                await self._pause(self.retry_interval)
                self._wake.set()
            except Exception:
                log.exception("replica hours: writing failed")
                await self._pause(self.retry_interval)

    async def _write(self) -> None:
        while self._events:
            event = self._events[0]
            if isinstance(event, ReplicaRun):
                await self.repository.start(event)
            else:
                await self.repository.end(event.id, event.at, event.reason)
            self._events.popleft()

    async def _beat(self) -> None:
        await self.repository.heartbeat(self.running, datetime.now(UTC))

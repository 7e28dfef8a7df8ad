"""Stored responses: the state behind the Responses API's ``previous_response_id`` and Anthropic's
message threads, kept per project.

    store.put(stored)              visible to get() and lineage() in this process at once, written
                                   to the database behind the request, in batches
    store.get(id, project)         None for an unknown id, and for another project's
    store.delete(id, project)      from memory and from the database; whether there was one
    store.lineage(id, project)     the response and its ancestors, oldest first
    store.purge(before)            retention: the rows made before a time, a bounded batch at a time

A response belongs to the project of the key that made it; one made with the master key has the
project None and is visible only to the master key. Another project's id reads as unknown: the
answer never says that it exists.

Writing works as the usage recorder's (metering/recorder.py): ``put`` only adds the response to a
map of pending ones and wakes a background task that writes them every ``interval`` seconds (sooner
once ``batch_size`` wait), idempotently by id. While the database is unreachable they stay pending
and the writer tries again every ``retry_interval``. A batch the database refuses is split in
halves down to the responses it refuses, which are logged with the reason and counted
(``refused``): they never hold up the others. Memory is bounded by ``max_pending_bytes``: past it
(a long outage) the oldest pending responses are dropped, each logged and counted (``dropped``).
``stop`` writes what waits, and logs by id what the database would not take.

Reads look at the pending responses first, then at the database. A response leaves memory once it
is written, so that a delete made through any process is seen by every process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from sqlalchemy import ColumnElement, RowMapping, delete, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from modelgate.storage.bounds import PROJECT_LENGTH, response_id_problem, response_problem, text_problem
from modelgate.storage.engine import Database
from modelgate.storage.errors import DataRejected, StorageError, StorageUnavailable
from modelgate.storage.tables import responses

log = logging.getLogger("modelgate.storage")

MAX_LINEAGE = 10_000  # the most ancestors one lineage query follows
_ENTRY_OVERHEAD = 200  # bytes a pending entry costs besides its body and input items


@dataclass(slots=True, kw_only=True)
class StoredResponse:
    id: str  # "resp_..." (or an Anthropic thread message id "msg_...")
    project: str | None  # the key's project; None for the master key
    kind: str  # "response" | "thread"
    created_at: int  # unix seconds
    previous_id: str | None  # previous_response_id / previous_message_id
    body: bytes  # the response object JSON as returned to a client (reasoning items sealed)
    input_items: bytes  # JSON array of this request's own input items, each with an id

    @property
    def size(self) -> int:
        return len(self.body) + len(self.input_items) + _ENTRY_OVERHEAD


def _row(stored: StoredResponse) -> dict[str, Any]:
    return {"id": stored.id, "project": stored.project, "kind": stored.kind, "created_at": stored.created_at,
            "previous_id": stored.previous_id, "body": stored.body, "input_items": stored.input_items}


def _stored(row: RowMapping) -> StoredResponse:
    return StoredResponse(id=row["id"], project=row["project"], kind=row["kind"], created_at=int(row["created_at"]),
                          previous_id=row["previous_id"], body=bytes(row["body"]),
                          input_items=bytes(row["input_items"]))


def _visible(project: str | None) -> bool:
    """Whether ``project`` can own anything: a project name the column cannot hold owns nothing."""
    return project is None or (isinstance(project, str) and text_problem(project, PROJECT_LENGTH) is None)


class ResponseRepository:
    """The ``responses`` table: each method one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.table = responses

    def _owned(self, project: str | None) -> ColumnElement[bool]:
        column = self.table.c.project
        return column.is_(None) if project is None else column == project

    async def write(self, batch: Sequence[StoredResponse]) -> int:
        """Insert the responses not stored yet (by id); the number inserted."""
        if not batch:
            return 0
        insert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
        statement = insert(self.table).on_conflict_do_nothing(index_elements=[self.table.c.id])
        async with self.db.write() as conn:
            result = await conn.execute(statement.returning(self.table.c.id), [_row(s) for s in batch])
            return len(result.all())

    async def get(self, id: str, project: str | None) -> StoredResponse | None:
        query = select(self.table).where(self.table.c.id == id, self._owned(project))
        async with self.db.read() as conn:
            found = (await conn.execute(query)).mappings().first()
        return _stored(found) if found is not None else None

    async def lineage(self, id: str, project: str | None) -> list[StoredResponse]:
        """``id`` and its ancestors of the same project, newest first, in one query."""
        t = self.table
        chain = (select(t.c.id, t.c.previous_id, literal(0).label("depth"))
                 .where(t.c.id == id, self._owned(project)).cte("chain", recursive=True))
        chain = chain.union_all(
            select(t.c.id, t.c.previous_id, (chain.c.depth + 1).label("depth"))
            .where(t.c.id == chain.c.previous_id, self._owned(project), chain.c.depth < MAX_LINEAGE))
        query = select(t).join(chain, chain.c.id == t.c.id).order_by(chain.c.depth)
        async with self.db.read() as conn:
            return [_stored(row) for row in (await conn.execute(query)).mappings()]

    async def delete(self, id: str, project: str | None) -> bool:
        async with self.db.write() as conn:
            result = await conn.execute(delete(self.table).where(self.table.c.id == id, self._owned(project)))
        return bool(result.rowcount)

    async def purge(self, before: int, batch_size: int) -> int:
        """Delete the rows made before ``before`` (unix seconds), ``batch_size`` per transaction,
        so that no transaction holds many locks or grows the log much; the number deleted."""
        t = self.table
        oldest = select(t.c.id).where(t.c.created_at < before).order_by(t.c.created_at).limit(batch_size)
        total = 0
        while True:
            async with self.db.write() as conn:
                result = await conn.execute(delete(t).where(t.c.id.in_(oldest.scalar_subquery())))
            total += result.rowcount
            if result.rowcount < batch_size:
                return total


class ResponseStore:
    """Stored responses, written behind the requests that make them (see the module docstring)."""

    def __init__(self, db: Database, *, interval: float = 0.2, batch_size: int = 200, retry_interval: float = 1.0,
                 max_pending_bytes: int = 256 * 1024 * 1024, retention_s: int = 30 * 86_400,
                 purge_interval: float = 3600.0, purge_delay: float = 60.0, purge_batch: int = 1000) -> None:
        self.repository = ResponseRepository(db)
        self.interval = interval
        self.batch_size = batch_size
        self.retry_interval = retry_interval
        self.max_pending_bytes = max_pending_bytes
        self.retention_s = retention_s
        self.purge_interval = purge_interval
        self.purge_delay = purge_delay  # the first purge waits this long: start-up stays quick
        self.purge_batch = purge_batch
        self._pending: dict[str, StoredResponse] = {}  # put, not yet written; in the order put
        self._pending_bytes = 0
        self._retry_at = 0.0
        self._failing = False
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()  # one writer at a time (the task, flush, delete)
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self.written = 0  # responses the database took
        self.refused = 0  # responses the database refused, logged
        self.dropped = 0  # responses dropped from a full memory during an outage, logged
        self.purged = 0  # rows deleted by retention

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        """Start the writer and the retention purge (the first purge after ``purge_delay``)."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._write_loop()), loop.create_task(self._purge_loop())]

    async def stop(self) -> None:
        """Write what waits; log what the database does not take now (it is lost)."""
        self._stopping = True
        self._wake.set()
        self._stop.set()
        for task in self._tasks:
            await task
        self._tasks = []
        await self.flush()
        if self._pending:
            log.error("%d stored response(s) could not be written before the gateway stopped and are lost: %s",
                      len(self._pending), ", ".join(self._pending))

    # -- the request path ------------------------------------------------------------------------

    def put_nowait(self, stored: StoredResponse) -> None:
        """Take a response to store; never waits. ``DataRejected`` when its id, project, kind or
        previous id cannot be stored (a bug of the caller: ids are the gateway's own)."""
        problem = response_problem(stored.id, stored.project, stored.kind, stored.previous_id)
        if problem:
            raise DataRejected(f"response {stored.id!r} cannot be stored: {problem}")
        replaced = self._pending.pop(stored.id, None)
        if replaced is not None:
            self._pending_bytes -= replaced.size
        self._pending[stored.id] = stored
        self._pending_bytes += stored.size
        if self._pending_bytes > self.max_pending_bytes:
            self._drop_oldest()
        if len(self._pending) >= self.batch_size:
            self._wake.set()

    async def put(self, stored: StoredResponse) -> None:
        """``put_nowait``, for callers in async code."""
        self.put_nowait(stored)

    async def get(self, id: str, project: str | None) -> StoredResponse | None:
        """The response ``id`` of ``project``; None when there is none (or it is another project's)."""
        if response_id_problem(id) or not _visible(project):
            return None
        pending = self._pending.get(id)
        if pending is not None:
            return pending if pending.project == project else None
        return await self.repository.get(id, project)

    async def lineage(self, id: str, project: str | None) -> list[StoredResponse]:
        """``id`` and the responses it continues, oldest first; [] when ``id`` is not found.
        The chain ends at the first ancestor that is gone (deleted, purged) or another project's."""
        if response_id_problem(id) or not _visible(project):
            return []
        chain: list[StoredResponse] = []
        current: str | None = id
        # The newest part of a conversation is the likeliest to be pending: memory first.
        while current is not None and len(chain) <= MAX_LINEAGE:
            pending = self._pending.get(current)
            if pending is None:
                break
            if pending.project != project:
                current = None
                break
            chain.append(pending)
            current = pending.previous_id
        if current is not None and len(chain) <= MAX_LINEAGE:
            chain += await self.repository.lineage(current, project)
        chain.reverse()
        return chain

    async def delete(self, id: str, project: str | None) -> bool:
        """Delete the response ``id`` of ``project`` wherever it is; whether there was one."""
        if response_id_problem(id) or not _visible(project):
            return False
        # Under the writer's lock: a pending response that a batch is writing right now is
        # deleted after that batch commits, never before (which would bring it back).
        async with self._lock:
            pending = self._pending.get(id)
            found = pending is not None and pending.project == project
            if found and pending is not None:
                self._forget(pending)
            in_database = await self.repository.delete(id, project)
        return found or in_database

    # -- writing behind --------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write what waits now (tests; shutdown)."""
        async with self._lock:
            self._retry_at = 0.0
            await self._write_pending()

    async def _write_loop(self) -> None:
        # Stopped by a flag, never cancelled, like the usage recorder: a cancellation inside a
        # write would leave its outcome unknown.
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            if not self._pending or time.monotonic() < self._retry_at:
                continue
            try:
                async with self._lock:
                    await self._write_pending()
            except Exception:
                # Never expected (database failures are StorageErrors); the responses stay pending.
                log.exception("response store: writing stored responses failed")
                self._retry_at = time.monotonic() + self.retry_interval

    async def _write_pending(self) -> None:
        while self._pending:
            batch = list(islice(self._pending.values(), self.batch_size))
            refused: list[tuple[StoredResponse, str]] = []
            try:
                await self._write(batch, refused)
            except StorageError as error:
                self._outage(error)
                return
            for stored in batch:
                self._forget(stored)
            for stored, reason in refused:
                self.refused += 1
                log.error("stored response %s (project %s) was refused by the database and is not stored: %s",
                          stored.id, stored.project, reason)
            if self._failing:
                self._failing = False
                log.warning("the database takes stored responses again")

    async def _write(self, batch: Sequence[StoredResponse], refused: list[tuple[StoredResponse, str]]) -> None:
        """Write ``batch``, adding what the database refuses to ``refused``. Raises the
        ``StorageError`` of a database that cannot take any now."""
        try:
            self.written += await self.repository.write(batch)
            return
        except DataRejected as error:
            reason = str(error)
        if len(batch) == 1:
            refused.append((batch[0], reason))
            return
        middle = len(batch) // 2
        await self._write(batch[:middle], refused)
        await self._write(batch[middle:], refused)

    def _outage(self, error: StorageError) -> None:
        self._retry_at = time.monotonic() + self.retry_interval
        if not self._failing:
            self._failing = True
            level = logging.WARNING if isinstance(error, StorageUnavailable) else logging.ERROR
            log.log(level, "%d stored response(s) wait in memory until the database answers: %s",
                    len(self._pending), error)

    def _forget(self, stored: StoredResponse) -> None:
        """Take ``stored`` out of the pending map, if it is still the entry under its id."""
        if self._pending.get(stored.id) is stored:
            del self._pending[stored.id]
            self._pending_bytes -= stored.size

    def _drop_oldest(self) -> None:
        while self._pending_bytes > self.max_pending_bytes and len(self._pending) > 1:
            oldest = next(iter(self._pending.values()))
            self._forget(oldest)
            self.dropped += 1
            log.error("stored response %s (project %s) dropped: %d bytes of responses wait for an unreachable "
                      "database, more than the %d kept in memory", oldest.id, oldest.project,
                      self._pending_bytes, self.max_pending_bytes)

    # -- retention -------------------------------------------------------------------------------

    async def purge(self, before: int) -> int:
        """Delete the stored responses made before ``before`` (unix seconds); the number deleted."""
        deleted = await self.repository.purge(before, self.purge_batch)
        self.purged += deleted
        return deleted

    async def _purge_loop(self) -> None:
        wait = self.purge_delay
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)
            if self._stopping:
                return
            wait = self.purge_interval
            try:
                deleted = await self.purge(int(time.time()) - self.retention_s)
            except StorageError as error:
                log.warning("stored responses past their retention could not be deleted (tried again in %.0f s): "
                            "%s", self.purge_interval, error)
                continue
            if deleted:
                log.info("deleted %d stored response(s) older than %d day(s)", deleted, self.retention_s // 86_400)

"""The usage recorder: takes one record per request without waiting, writes them in batches.

``record`` appends the record to the journal (``journal.py``) and to an in-memory batch, and
returns: the request path never waits for the database. A background task writes the batch every
``interval`` seconds, or sooner once ``batch_size`` records wait, through
``Storage.write_usage`` (idempotent by request id), then deletes the batch's journal segment.

While the database is unreachable the segments are fsync'd and kept; every ``retry_interval``
the recorder tries them again, oldest first, and goes back to normal once one goes through. At
start-up it adopts the segments that ended processes left behind and replays them.

A batch the database refuses (``DataRejected``: a value it cannot hold) is split in halves and
written again, down to single records, so that every record it takes lands; each record it still
refuses is set aside in the journal's quarantine file with the reason, counted (``quarantined``)
and logged, and its segment goes as usual. Nothing a record holds can block its batch, the
records after it, or a start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from modelgate.metering.journal import Journal, Quarantine, encode, load_segment, record_json
from modelgate.storage.bounds import storable
from modelgate.storage.errors import DataRejected, StorageError, StorageUnavailable
from modelgate.storage.records import UsageRecord

log = logging.getLogger("modelgate.metering")

ADOPT_INTERVAL_S = 60.0  # how often to look for segments of processes that died meanwhile


class UsageSink(Protocol):
    """Where records go: ``Storage``. Must be idempotent by request id, raise
    ``StorageUnavailable`` when the database cannot be reached and ``DataRejected`` when it
    refuses a record's values."""

    async def write_usage(self, records: Sequence[UsageRecord]) -> int: ...


class UsageRecorder:
    def __init__(self, sink: UsageSink, journal: Journal, *, interval: float = 0.2, batch_size: int = 500,
                 retry_interval: float = 1.0, adopt_interval: float = ADOPT_INTERVAL_S) -> None:
        self.sink = sink
        self.journal = journal
        self.interval = interval
        self.batch_size = batch_size
        self.retry_interval = retry_interval
        self.adopt_interval = adopt_interval
        self._pending: list[UsageRecord] = []  # in the journal's current segment, not yet written
        self._unsent: list[Path] = []  # closed segments waiting for the database, oldest first
        self._retry_at = 0.0
        self._next_adoption = 0.0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one writer at a time: the background task, flush(), stop()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.written = 0  # records the database took (duplicates of a replay not counted)
        self.quarantine = Quarantine(journal.directory)
        self._journal_failed = False

    @property
    def queued(self) -> int:
        """Records taken and not yet written to the database."""
        return len(self._pending)

    @property
    def backlog(self) -> int:
        """Segments kept for the database (non-zero while it is unreachable)."""
        return len(self._unsent)

    @property
    def quarantined(self) -> int:
        """Records and lines this process set aside in the quarantine file (refused by the
        database, or not records at all)."""
        return self.quarantine.count

    async def start(self) -> None:
        """Open the journal, replay what ended processes left (if the database answers), start writing."""
        try:
            self.journal.open()
        except OSError as error:
            raise RuntimeError(
                f"the usage journal directory {self.journal.directory} cannot be used ({error.strerror or error}): "
                "set journal_dir in the config to a directory this process can write") from error
        try:
            self._unsent.extend(self.journal.adopt_orphans())
        except OSError as error:
            log.error("usage journal %s: segments of ended processes cannot be adopted (%s)",
                      self.journal.directory, error)
        self._next_adoption = time.monotonic() + self.adopt_interval
        if self._unsent:
            try:
                await self._replay()
            except Exception:
                # Never expected (_replay sets aside what it cannot write); the segments stay kept
                # and the writer tries them again: the gateway starts whatever the journal holds.
                log.exception("usage journal %s: replaying failed", self.journal.directory)
                self._retry_at = time.monotonic() + self.retry_interval
        self._task = asyncio.get_running_loop().create_task(self._run())

    def record(self, record: UsageRecord) -> None:
        """Take a record; never waits. Called once per request, as it ends."""
        try:
            line = encode(record)
        except TypeError:
            # Not JSON (a lone surrogate, an integer past 64 bits): the metering stage makes
            # records storable, so only a record made elsewhere gets here.
            line = encode(storable(record))
        try:
            self.journal.append(line)
        except OSError as error:
            # The disk is full or gone: the record still goes to the database from memory, but
            # would not survive a crash. Said once per failure streak, loudly.
            if not self._journal_failed:
                log.error("usage journal %s cannot be written (%s): records are held in memory only",
                          self.journal.directory, error)
                self._journal_failed = True
        else:
            self._journal_failed = False
        self._pending.append(record)
        if len(self._pending) >= self.batch_size:
            self._wake.set()

    async def _run(self) -> None:
        # Stopped by a flag, never cancelled: a cancellation inside a database write could leave
        # the transaction's outcome unknown to us (harmless, as inserts are idempotent, but noisy).
        while not self._stopping:
            with contextlib.suppress(TimeoutError):  # the interval passed: write what there is
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                async with self._lock:
                    await self._write_pending()
                    if time.monotonic() >= self._next_adoption:
                        # Another process sharing the directory may have died since start-up.
                        self._next_adoption = time.monotonic() + self.adopt_interval
                        self._unsent.extend(await asyncio.to_thread(self.journal.adopt_orphans))
                    if self._unsent and time.monotonic() >= self._retry_at:
                        await self._replay()
            except Exception:
                # Never expected (every database failure is a StorageError); the records stay in
                # the journal, so keep the writer alive and try again on the next round.
                log.exception("usage recorder: writing records failed")
                self._retry_at = time.monotonic() + self.retry_interval

    async def _write_pending(self) -> None:
        if self._unsent:
            # The database is away: the new records join the backlog when it is next tried.
            if time.monotonic() >= self._retry_at:
                # Rotate and forget together, with no await between: a record taken meanwhile
                # must be in the new segment and in _pending, or in neither.
                segment = self.journal.rotate()
                self._pending = []
                await self._keep(segment)
            return
        if not self._pending:
            return
        segment = self.journal.rotate()
        batch, self._pending = self._pending, []  # together, as above
        try:
            refused = await self._write(batch)
        except StorageError as error:
            self._outage(error)
            await self._keep(segment)
            return
        await self._set_aside(refused, segment)
        if segment is not None:
            self.journal.remove(segment)

    async def _write(self, records: Sequence[UsageRecord]) -> list[tuple[UsageRecord, str]]:
        """Write ``records``; the ones the database refused, with its reason. Raises the
        ``StorageError`` of a database that cannot take any now (unreachable, schema outdated)."""
        refused: list[tuple[UsageRecord, str]] = []
        for start in range(0, len(records), self.batch_size):
            await self._write_batch(records[start:start + self.batch_size], refused)
        return refused

    async def _write_batch(self, records: Sequence[UsageRecord], refused: list[tuple[UsageRecord, str]]) -> None:
        try:
            self.written += await self.sink.write_usage(records)
            return
        except DataRejected as error:
            reason = str(error)
        except StorageError:
            raise
        except Exception as error:
            # Not the database's word on its state: something in these records' values.
            log.exception("usage recorder: writing %d record(s) failed", len(records))
            reason = f"{type(error).__name__}: {error}"
        if len(records) == 1:
            refused.append((records[0], reason))
            return
        # Halves, down to the records that are refused: the others land.
        middle = len(records) // 2
        await self._write_batch(records[:middle], refused)
        await self._write_batch(records[middle:], refused)

    async def _set_aside(self, refused: list[tuple[UsageRecord, str]], segment: Path | None,
                         bad_lines: Sequence[tuple[int, bytes, str]] = ()) -> None:
        """Put what the database refused, and lines that are not records, in the quarantine file
        (durably, before their segment is deleted); logged and counted."""
        source = segment.name if segment is not None else None
        entries: list[dict[str, Any]] = [{"reason": reason, "segment": source, "record": record_json(record)}
                                         for record, reason in refused]
        entries += [{"reason": f"not a usage record: {reason}", "segment": source, "line_number": number,
                     "line": line.decode("utf-8", "backslashreplace")} for number, line, reason in bad_lines]
        if not entries:
            return
        try:
            await asyncio.to_thread(self.quarantine.add, entries)
        except OSError as error:
            # The log is the last place left for them: in full, so that they can be recovered.
            log.error("usage journal %s: the quarantine file cannot be written (%s); the entries: %s",
                      self.journal.directory, error, json.dumps(entries, ensure_ascii=True, default=str))
        for record, reason in refused:
            log.error("usage record %s set aside in %s: %s", record.request_id, self.quarantine.path, reason)
        for number, _, reason in bad_lines:
            log.error("usage journal %s line %d set aside in %s: not a usage record (%s)", source, number,
                      self.quarantine.path, reason)

    def _outage(self, error: StorageError) -> None:
        self._retry_at = time.monotonic() + self.retry_interval
        if not self._unsent:
            level = logging.WARNING if isinstance(error, StorageUnavailable) else logging.ERROR
            log.log(level, "usage records go to the journal %s until the database answers: %s",
                    self.journal.directory, error)

    async def _keep(self, segment: Path | None) -> None:
        if segment is not None:
            await asyncio.to_thread(Journal.make_durable, segment)
            self._unsent.append(segment)

    async def _replay(self) -> None:
        """Write the kept segments, oldest first; stop at the first that the database cannot take
        now. A segment that cannot be read is moved aside; what it holds that is not a record, or
        that the database refuses, goes to the quarantine file."""
        while self._unsent:
            segment = self._unsent[0]
            try:
                loaded = await asyncio.to_thread(load_segment, segment)
            except OSError as error:
                moved = await asyncio.to_thread(Journal.move_aside, segment)
                log.error("usage journal segment %s cannot be read (%s); %s", segment, error,
                          f"moved aside to {moved.name}" if moved is not None else "left where it is")
                self._unsent.pop(0)
                continue
            try:
                refused = await self._write(loaded.records)
            except StorageError as error:
                self._outage(error)
                return
            await self._set_aside(refused, segment, loaded.bad_lines)
            self.journal.remove(segment)
            self._unsent.pop(0)
            if not self._unsent:
                log.warning("usage journal %s replayed: the database has every record again", self.journal.directory)

    async def flush(self) -> None:
        """Write what waits now (tests; shutdown). Kept segments are tried once more."""
        async with self._lock:
            self._retry_at = 0.0
            await self._write_pending()
            if self._unsent:
                await self._replay()

    async def stop(self) -> None:
        """Write what waits; what the database will not take stays in the journal for next time."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()
        last = self.journal.close()
        if last is not None:
            # Records of the current segment that the flush did not write (it failed).
            await asyncio.to_thread(Journal.make_durable, last)
        if self._unsent or last is not None:
            log.warning("usage journal %s keeps %d segment(s) for the next start", self.journal.directory,
                        len(self._unsent) + (last is not None))

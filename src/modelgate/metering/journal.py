"""The usage journal: a write-ahead log that keeps every usage record on disk until the database
has it.

Each record is appended (one JSON line, one ``write`` into the page cache, microseconds) before
the request's response ends; the recorder writes the records to the database in batches and then
deletes their segment. So at every moment after a response ends its record is in the journal or
in the database (or, between the commit and the delete, in both: inserts are idempotent by
request id, so a replay never counts one twice):

* the process crashes (killed, OOM): the kernel still has the written lines; the next gateway
  that starts on this directory adopts the segments and replays them;
* the database is unreachable: the segments are fsync'd and kept, and replayed when it is back;
* the machine loses power: lines not yet fsync'd can be lost (at most the last batch, written
  within ``interval`` of its response; segments kept for an outage are always fsync'd).

A record the database refuses, a line that is not a record and a segment that cannot be read
are never retried forever: they are set aside in ``quarantine.jsonl`` in the same directory (one
JSON object a line: when, why, from which segment, and the record or the line), or for a segment,
renamed ``unreadable-usage-*.jsonl``, so that they block neither their batch nor a start-up.

Several processes may share one directory. Each owns the segments named after it and holds an
exclusive ``flock`` on its ``owner-*.lock`` file while it runs; a segment whose owner's lock can
be taken (or whose lock file is gone) belongs to a process that ended, and is adopted by renaming
it into the adopter's name (atomic: two adopters never both get it).
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from modelgate.storage.bounds import storable
from modelgate.storage.records import UsageRecord

log = logging.getLogger("modelgate.metering")

_FIELDS_ORDERED = tuple(f.name for f in fields(UsageRecord))
_FIELDS = frozenset(_FIELDS_ORDERED)


QUARANTINE = "quarantine.jsonl"
UNREADABLE_PREFIX = "unreadable-"


def encode(record: UsageRecord) -> bytes:
    return orjson.dumps(record) + b"\n"


def decode(line: bytes) -> UsageRecord:
    """The record of a journal line, made storable (lines written by older versions may not be);
    ``ValueError`` naming what is wrong when the line is not a usage record."""
    try:
        found = orjson.loads(line)
        if not isinstance(found, dict):
            raise ValueError(f"a JSON {type(found).__name__}, not an object")
        data: dict[str, Any] = {k: v for k, v in found.items() if k in _FIELDS}
        data["created_at"] = _utc(datetime.fromisoformat(data["created_at"]))
        return storable(UsageRecord(**data))
    except KeyError as error:
        raise ValueError(f"no {error.args[0]!r}") from None
    except (orjson.JSONDecodeError, TypeError, ValueError) as error:
        raise ValueError(str(error)) from None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@dataclass(slots=True)
class Segment:
    """What a segment holds: its records, and the lines that are not records (number, bytes, why)."""

    records: list[UsageRecord] = field(default_factory=list)
    bad_lines: list[tuple[int, bytes, str]] = field(default_factory=list)


def load_segment(path: Path) -> Segment:
    """The records of a segment, and its lines that are not records (a torn last line after a
    power loss, a line edited by hand). ``OSError`` when the file cannot be read."""
    segment = Segment()
    with path.open("rb") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                segment.records.append(decode(line))
            except ValueError as error:
                segment.bad_lines.append((number, line, str(error)))
    return segment


def read_segment(path: Path) -> list[UsageRecord]:
    """The records of a segment; lines that are not records are logged and skipped."""
    segment = load_segment(path)
    for number, _, reason in segment.bad_lines:
        log.error("journal %s line %d is not a usage record (%s); skipped", path, number, reason)
    return segment.records


def record_json(record: UsageRecord) -> dict[str, Any]:
    """A record as the journal writes it, for the quarantine file."""
    return {name: _json_value(getattr(record, name)) for name in _FIELDS_ORDERED}


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN
    return value


class Quarantine:
    """``quarantine.jsonl`` of a journal directory: what the database refused or the journal could
    not read, one JSON object a line, kept for an operator to look at; a ``record`` in it has the
    journal's fields, as it was refused. Appends are single writes, so processes sharing the
    directory may append at once."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / QUARANTINE
        self.count = 0  # entries this process set aside

    def add(self, entries: Sequence[dict[str, Any]]) -> None:
        """Append ``entries`` (each with a ``reason``), durably: the caller deletes their source
        next. Blocking: call it from a thread."""
        if not entries:
            return
        now = datetime.now(UTC).isoformat()
        # The standard library's JSON: it writes a lone surrogate as an escape where orjson refuses.
        data = "".join(json.dumps({"quarantined_at": now, **entry}, ensure_ascii=True, default=str) + "\n"
                       for entry in entries).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_path(self.path.parent)
        self.count += len(entries)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._segment: Path | None = None
        self._written = 0  # bytes in the current segment
        self._seq = 0

    @property
    def lock_path(self) -> Path:
        return self.directory / f"owner-{self.owner}.lock"

    def open(self) -> None:
        """Take ownership of a name in the directory (created if needed) and start a segment."""
        self.directory.mkdir(parents=True, exist_ok=True)
        # Locked before it gets its final name: a lock file under that name is never unlocked
        # while its owner lives, so no one adopts a live process's segments.
        staging = self.directory / f".owner-{self.owner}.tmp"
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(staging, self.lock_path)
        self._lock_fd = fd
        self._start_segment()

    def _next_name(self) -> Path:
        self._seq += 1
        return self.directory / f"usage-{self.owner}-{self._seq:06d}.jsonl"

    def _start_segment(self) -> None:
        self._segment = self._next_name()
        self._fd = os.open(self._segment, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._written = 0

    def append(self, line: bytes) -> None:
        """Append one encoded record to the current segment (a page-cache write, no fsync)."""
        if self._fd is None:
            raise OSError(f"the usage journal in {self.directory} is closed")
        os.write(self._fd, line)
        self._written += len(line)

    def rotate(self) -> Path | None:
        """Close the current segment and start the next; the closed one, or None if it was empty."""
        if self._fd is None or self._segment is None or not self._written:
            return None
        closed = self._segment
        os.close(self._fd)
        self._start_segment()
        return closed

    def close(self) -> Path | None:
        """Close the current segment (returned if not empty, else deleted) and give up ownership."""
        closed = None
        if self._fd is not None and self._segment is not None:
            os.close(self._fd)
            if self._written:
                closed = self._segment
            else:
                self._segment.unlink(missing_ok=True)
            self._fd = self._segment = None
        if self._lock_fd is not None:
            self.lock_path.unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None
        return closed

    @staticmethod
    def make_durable(path: Path) -> None:
        """fsync a segment and its directory entry (blocking: call it from a thread)."""
        fsync_path(path)
        fsync_path(path.parent)

    @staticmethod
    def remove(path: Path) -> None:
        path.unlink(missing_ok=True)

    @staticmethod
    def move_aside(path: Path) -> Path | None:
        """Rename a segment that cannot be read out of the journal's way (``unreadable-*``); its
        new path, or None when it cannot be renamed either."""
        target = path.with_name(UNREADABLE_PREFIX + path.name)
        try:
            os.rename(path, target)
        except OSError as error:
            log.error("usage journal segment %s cannot be moved aside either (%s)", path, error)
            return None
        return target

    def _segments(self) -> Iterator[tuple[str, Path]]:
        for path in self.directory.glob("usage-*.jsonl"):
            owner = path.name[len("usage-"):].rsplit("-", 1)[0]
            yield owner, path

    def adopt_orphans(self) -> list[Path]:
        """Rename into this journal's name the segments of processes that ended; oldest first."""
        by_owner: dict[str, list[Path]] = {}
        for owner, path in self._segments():
            if owner != self.owner:
                by_owner.setdefault(owner, []).append(path)
        adopted: list[Path] = []
        for owner, paths in sorted(by_owner.items()):
            lock = self.directory / f"owner-{owner}.lock"
            fd = None
            # No lock file: the owner closed down cleanly (or an adopter removed it).
            try:
                fd = os.open(lock, os.O_RDWR)
            except FileNotFoundError:
                pass
            except OSError as error:
                log.error("usage journal %s: the lock file %s cannot be opened (%s); its segments are left",
                          self.directory, lock.name, error)
                continue
            try:
                if fd is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # alive
                for path in sorted(paths):
                    target = self._next_name()
                    try:
                        os.rename(path, target)
                    except FileNotFoundError:
                        continue  # another process adopted it first
                    except OSError as error:
                        log.error("usage journal segment %s cannot be adopted (%s); left", path, error)
                        continue
                    adopted.append(target)
                if fd is not None:
                    lock.unlink(missing_ok=True)
            finally:
                if fd is not None:
                    os.close(fd)
        # Lock files of ended processes that left no segments.
        for lock in self.directory.glob("owner-*.lock"):
            if lock != self.lock_path and not any(o == lock.name[6:-5] for o in by_owner):
                self._remove_stale_lock(lock)
        if adopted:
            log.warning("usage journal %s: adopted %d segment(s) left by ended gateway processes",
                        self.directory, len(adopted))
        return adopted

    @staticmethod
    def _remove_stale_lock(lock: Path) -> None:
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            lock.unlink(missing_ok=True)
        except BlockingIOError:
            pass  # alive
        finally:
            os.close(fd)

"""The recorder and its journal on the real databases: batches, outages, crashes, replays."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelgate.metering import Journal, UsageRecorder
from modelgate.metering.journal import encode, read_segment
from modelgate.storage import Storage, StorageUnavailable, UsageFilters, UsageRecord
from tests.tcp_proxy import TcpProxy


def usage_record(n: int, prefix: str = "req_") -> UsageRecord:
    return UsageRecord(request_id=f"{prefix}{n:06d}", created_at=datetime.now(UTC), project="p1", key_id="key_1",
                       deployment="chat", provider="openai", model="gpt-4o", route="chat", input_tokens=10,
                       output_tokens=n, cost=0.001, price=0.002, latency_ms=12.5, status=200, attempts=1)


async def stored(storage: Storage) -> int:
    rows = await storage.query_usage(UsageFilters())
    return rows[0].requests if rows else 0


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.02)


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("usage-*.jsonl"))


def locks(directory: Path) -> list[Path]:
    return sorted(directory.glob("owner-*.lock"))


class CountingSink:
    """The storage, counting the writes that reach it."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.writes = 0

    async def write_usage(self, records: Sequence[UsageRecord]) -> int:
        self.writes += 1
        return await self.storage.write_usage(records)


async def test_records_are_written_in_batches(storage: Storage, tmp_path: Path) -> None:
    sink = CountingSink(storage)
    recorder = UsageRecorder(sink, Journal(tmp_path), interval=0.05, batch_size=500)
    await recorder.start()
    for n in range(1200):
        recorder.record(usage_record(n))
    assert sink.writes == 0  # no database round trip in record()
    await eventually(lambda: _equals(stored(storage), 1200))
    await recorder.stop()
    assert sink.writes == 3  # 500 + 500 + 200
    assert recorder.written == 1200
    assert segments(tmp_path) == []  # every segment deleted once the database had it
    assert locks(tmp_path) == []


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_a_replay_never_counts_a_record_twice(storage: Storage, tmp_path: Path) -> None:
    records = [usage_record(n) for n in range(50)]
    assert await storage.write_usage(records[:30]) == 30
    # The segment of a process that stopped after its first 30 records reached the database.
    (tmp_path / "dead").mkdir()
    (tmp_path / "dead" / "usage-4242-0badcafe-000001.jsonl").write_bytes(b"".join(encode(r) for r in records))
    recorder = UsageRecorder(storage, Journal(tmp_path / "dead"))
    await recorder.start()
    await recorder.stop()
    assert recorder.written == 20
    assert await stored(storage) == 50


KILLED_WRITER = """
import os, signal
from datetime import UTC, datetime
from modelgate.metering.journal import Journal, encode
from modelgate.storage import UsageRecord
journal = Journal({directory!r})
journal.open()
for n in range({count}):
    journal.append(encode(UsageRecord(
        request_id=f"req_killed_{{n}}", created_at=datetime.now(UTC), project="p1", key_id="key_1",
        deployment="chat", provider="openai", model="gpt-4o", route="chat", output_tokens=n)))
os.kill(os.getpid(), signal.SIGKILL)
"""


async def killed_writer(directory: Path, count: int) -> None:
    """A real process appends records to the journal and is SIGKILLed: no flush, no clean-up."""
    script = KILLED_WRITER.format(directory=str(directory), count=count)
    result = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == -9, result.stderr


async def test_a_killed_process_leaves_its_records_to_the_next(storage: Storage, tmp_path: Path) -> None:
    await killed_writer(tmp_path, 300)
    assert len(segments(tmp_path)) == 1 and len(locks(tmp_path)) == 1
    recorder = UsageRecorder(storage, Journal(tmp_path))
    await recorder.start()  # adopts the dead process's segment and replays it
    await recorder.stop()
    assert await stored(storage) == 300
    assert segments(tmp_path) == [] and locks(tmp_path) == []


async def test_a_process_that_dies_beside_a_running_one_is_taken_over(storage: Storage, tmp_path: Path) -> None:
    recorder = UsageRecorder(storage, Journal(tmp_path), interval=0.02, adopt_interval=0.05)
    await recorder.start()
    await killed_writer(tmp_path, 40)
    await eventually(lambda: _equals(stored(storage), 40))
    await recorder.stop()
    assert segments(tmp_path) == []


async def test_an_unusable_journal_directory_stops_start_up_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    recorder = UsageRecorder(FlakySink(), Journal(tmp_path / "a-file" / "journal"))
    with pytest.raises(RuntimeError, match="set journal_dir in the config to a directory this process can write"):
        await recorder.start()


async def test_a_live_process_keeps_its_segments(tmp_path: Path) -> None:
    alive = Journal(tmp_path)
    alive.open()
    alive.append(b"{}\n")
    other = Journal(tmp_path)
    other.open()
    assert other.adopt_orphans() == []
    assert len(segments(tmp_path)) == 2
    other.close()
    alive.close()


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "usage-1-ab-000001.jsonl"
    path.write_bytes(encode(usage_record(1)) + encode(usage_record(2))[:40])
    assert [r.request_id for r in read_segment(path)] == ["req_000001"]


@pytest.fixture
async def proxied(postgres_url: str) -> AsyncIterator[tuple[Storage, Storage, TcpProxy]]:
    """A migrated PostgreSQL database, as seen through a proxy the test can cut, and directly."""
    direct = await Storage.open(postgres_url)
    await direct.upgrade()
    with TcpProxy("127.0.0.1", 5432) as proxy:
        via_proxy = await Storage.open(postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"))
        try:
            yield via_proxy, direct, proxy
        finally:
            await via_proxy.close()
            await direct.close()


async def test_an_outage_sends_records_to_the_journal_and_back(
        proxied: tuple[Storage, Storage, TcpProxy], tmp_path: Path) -> None:
    via_proxy, direct, proxy = proxied
    recorder = UsageRecorder(via_proxy, Journal(tmp_path), interval=0.05, retry_interval=0.2)
    await recorder.start()
    for n in range(100):
        recorder.record(usage_record(n))
    await eventually(lambda: _equals(stored(direct), 100))

    proxy.cut()
    for n in range(100, 300):
        recorder.record(usage_record(n))
        if n % 20 == 0:
            await asyncio.sleep(0.05)
    await eventually(lambda: _true(recorder.backlog > 0))
    assert await stored(direct) == 100  # the database has not seen them...
    # ...the journal has every one of them (the current segment joins the kept ones at each retry).
    await eventually(lambda: _true(sum(len(read_segment(p)) for p in segments(tmp_path)) == 200))

    proxy.restore()
    await eventually(lambda: _equals(stored(direct), 300))
    await eventually(lambda: _true(recorder.backlog == 0))
    await recorder.stop()
    assert await stored(direct) == 300
    assert segments(tmp_path) == []


async def _true(value: bool) -> bool:
    return value


async def test_stop_during_an_outage_keeps_the_records_for_the_next_start(
        proxied: tuple[Storage, Storage, TcpProxy], tmp_path: Path) -> None:
    via_proxy, direct, proxy = proxied
    proxy.cut()
    recorder = UsageRecorder(via_proxy, Journal(tmp_path), interval=0.05, retry_interval=0.2)
    await recorder.start()
    for n in range(40):
        recorder.record(usage_record(n))
    await recorder.stop()
    assert sum(len(read_segment(p)) for p in segments(tmp_path)) == 40
    assert locks(tmp_path) == []

    proxy.restore()
    successor = UsageRecorder(via_proxy, Journal(tmp_path))
    await successor.start()
    await successor.stop()
    assert await stored(direct) == 40


class FlakySink:
    """A database stand-in that can be down; idempotent by request id like the real one."""

    def __init__(self) -> None:
        self.down = False
        self.rows: dict[str, UsageRecord] = {}

    async def write_usage(self, records: Sequence[UsageRecord]) -> int:
        await asyncio.sleep(0.001)  # a round trip, during which more records arrive
        if self.down:
            raise StorageUnavailable("the database cannot be reached (test)")
        new = [r for r in records if r.request_id not in self.rows]
        self.rows.update((r.request_id, r) for r in new)
        return len(new)


async def test_records_taken_while_the_backlog_is_saved_are_not_lost(tmp_path: Path) -> None:
    """Records keep arriving at every moment of an outage and of the recovery after it."""
    sink = FlakySink()
    recorder = UsageRecorder(sink, Journal(tmp_path), interval=0.005, retry_interval=0.01)
    await recorder.start()
    n = 0

    async def produce(until: Callable[[], bool], at_least: int = 100) -> None:
        """Records, one per turn of the loop, until the recorder is where ``until`` says (and a
        hundred at least): what the phase is about happens while they arrive."""
        nonlocal n
        first, deadline = n, time.monotonic() + 10
        while n - first < at_least or not until():
            assert time.monotonic() < deadline, "the recorder did not get there"
            recorder.record(usage_record(n))
            n += 1
            await asyncio.sleep(0.0005)

    await produce(lambda: bool(sink.rows))
    sink.down = True
    await produce(lambda: recorder.backlog >= 3)  # three rounds failed meanwhile
    sink.down = False
    await produce(lambda: recorder.backlog == 0)  # replayed, records arriving all along
    sink.down = True
    await produce(lambda: recorder.backlog >= 2)
    sink.down = False
    await produce(lambda: recorder.backlog == 0)
    await recorder.stop()
    assert n >= 500
    assert sorted(sink.rows) == sorted(f"req_{i:06d}" for i in range(n))
    assert segments(tmp_path) == []

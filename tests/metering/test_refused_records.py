"""Records the database refuses, and journals that hold what is not a record: set aside in the
quarantine file, never blocking their batch, the records after them, or a start-up."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from modelgate.metering import Journal, UsageRecorder
from modelgate.metering.journal import QUARANTINE, decode, encode
from modelgate.storage import Storage, UsageFilters, UsageRecord
from tests.support import eventually


def usage_record(n: int, **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "created_at": datetime.now(UTC), "project": "p1", "key_id": "key_1", "deployment": "chat",
        "provider": "openai", "model": "gpt-4o", "route": "chat", "input_tokens": 10, "output_tokens": n,
        "cost": 0.001, "price": 0.002, "latency_ms": 12.5, "status": 200, "attempts": 1}
    values.update(fields)
    return UsageRecord(request_id=f"req_{n:06d}", **values)


# PostgreSQL refuses the NUL, SQLite the NaN (its NOT NULL column stores a NaN as NULL).
REFUSED = {"error": "invalid_value: 'x\x00y'", "cost": math.nan, "status": 400}


async def stored_ids(storage: Storage) -> set[str]:
    from sqlalchemy import select

    from modelgate.storage.tables import usage

    async with storage.db.read() as conn:
        return {str(row) for row in (await conn.execute(select(usage.c.request_id))).scalars()}


def journal_files(directory: Path, pattern: str = "usage-*.jsonl") -> list[Path]:
    return sorted(directory.glob(pattern))


def quarantined(directory: Path) -> list[dict[str, Any]]:
    path = directory / QUARANTINE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_a_refused_record_is_set_aside_and_the_rest_of_its_batch_lands(storage: Storage, tmp_path: Path) -> None:
    recorder = UsageRecorder(storage, Journal(tmp_path), interval=0.05, batch_size=500)
    await recorder.start()
    # One batch: record() never yields to the writer.
    for n in range(40):
        recorder.record(usage_record(n, **(REFUSED if n == 17 else {})))
    await eventually(lambda: recorder.quarantined == 1, what="the refused record set aside")
    await recorder.stop()

    ids = await stored_ids(storage)
    assert ids == {f"req_{n:06d}" for n in range(40) if n != 17}
    assert recorder.written == 39
    [entry] = quarantined(tmp_path)
    assert entry["record"]["request_id"] == "req_000017"
    assert "refused the values" in entry["reason"]
    assert entry["segment"].startswith("usage-")
    assert journal_files(tmp_path) == []  # the segment went, its records accounted for
    # What was set aside is a journal record: an operator can feed it back, made storable.
    assert entry["record"]["cost"] is None  # a NaN, which JSON cannot say
    back = decode(orjson.dumps(entry["record"]))
    assert back.error == "invalid_value: 'xy'" and back.cost == 0.0
    assert await storage.write_usage([back]) == 1


async def test_a_record_that_is_not_json_is_still_taken(storage: Storage, tmp_path: Path) -> None:
    recorder = UsageRecorder(storage, Journal(tmp_path), interval=0.05)
    await recorder.start()
    recorder.record(usage_record(1, error="lone \ud800 surrogate", input_tokens=2**70))
    await recorder.stop()
    [row] = await storage.query_usage(UsageFilters())
    assert row.requests == 1 and row.input_tokens == 10**12
    assert recorder.quarantined == 0


def poisoned_segment(directory: Path, name: str = "usage-4242-0badcafe-000001.jsonl") -> Path:
    """A segment left by a gateway that wrote records raw: values the database refuses, and lines
    that are not records at all."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = [usage_record(1), usage_record(2, error="echo: 'x\x00y'", status=400), usage_record(3, model=123)]
    lines = [orjson.dumps(record) + b"\n" for record in raw]
    lines.insert(1, b"[1, 2, 3]\n")  # JSON, but not a record
    lines.insert(3, b'{"request_id": "req_half"}\n')  # a record without its fields
    lines.append(encode(usage_record(4))[:37])  # torn by a power loss
    path = directory / name
    path.write_bytes(b"".join(lines))
    return path


async def test_a_poisoned_journal_never_stops_the_start(storage: Storage, tmp_path: Path) -> None:
    poisoned_segment(tmp_path)
    (tmp_path / "usage-4242-0badcafe-000002.jsonl").mkdir()  # a segment that cannot be read
    recorder = UsageRecorder(storage, Journal(tmp_path))
    await recorder.start()
    await recorder.stop()

    assert await stored_ids(storage) == {"req_000001", "req_000002", "req_000003"}
    rows = {row.model: row for row in await storage.query_usage(UsageFilters(), ["model"])}
    assert set(rows) == {"gpt-4o", "123"}
    entries = quarantined(tmp_path)
    assert [entry["line_number"] for entry in entries] == [2, 4, 6]
    assert all(entry["reason"].startswith("not a usage record") for entry in entries)
    assert entries[0]["line"] == "[1, 2, 3]\n"
    assert recorder.quarantined == 3
    # The segment that cannot be read is out of the journal's way, under a name that says why.
    assert journal_files(tmp_path) == []
    [aside] = journal_files(tmp_path, "unreadable-usage-*.jsonl")
    assert aside.name.endswith(".jsonl")


async def test_what_was_set_aside_is_not_set_aside_again(storage: Storage, tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    poisoned_segment(directory)
    first = UsageRecorder(storage, Journal(directory))
    await first.start()
    await first.stop()
    second = UsageRecorder(storage, Journal(directory))
    await second.start()
    await second.stop()
    assert second.quarantined == 0 and len(quarantined(directory)) == 3
    assert len(await stored_ids(storage)) == 3

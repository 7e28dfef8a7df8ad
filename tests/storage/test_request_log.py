"""The request log's table on SQLite and PostgreSQL: written idempotently, searched newest first with
every filter and a cursor, read one by one, followed by the time batches were written, purged past
retention; and on SQLite, each search's plan reads an index in order (no sort of the matches)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from modelgate.storage import InvalidCursor, RequestFilters, RequestLogEntry, Storage
from modelgate.storage.request_log import RequestLogRepository

T0 = datetime(2030, 1, 10, 12, 0, tzinfo=UTC)


def entry(n: int, **fields: object) -> RequestLogEntry:
    values: dict[str, object] = {
        "request_id": f"req_{n:04d}", "created_at": T0 + timedelta(seconds=n), "project": "p" if n % 2 else "q",
        "key_id": f"key_{n % 3}", "deployment": "gpt" if n % 4 else "claude", "provider": "openai", "model": "m",
        "route": "chat", "surface": "openai", "path": "/v1/chat/completions", "status": 200, "latency_ms": 12.5,
        "input_tokens": 10, "output_tokens": 5, "cost": 0.001, "price": 0.002, "attempts": 1}
    values.update(fields)
    return RequestLogEntry(**values)  # type: ignore[arg-type]


def ids(entries: list[RequestLogEntry]) -> list[int]:
    return [int(e.request_id.removeprefix("req_")) for e in entries]


async def filled(storage: Storage) -> RequestLogRepository:
    log = storage.request_log
    entries = [entry(n) for n in range(40)]
    for n in (7, 19, 33):
        entries[n] = entry(n, status=502, error=f"upstream_unreachable: provider down ({n})", attempts=2)
    entries[25] = entry(25, status=429, error="rate_limit_exceeded: 60 requests per minute")
    assert await log.write(entries) == 40
    return log


async def test_written_once_and_read_back_field_for_field(storage: Storage) -> None:
    log = storage.request_log
    first = entry(1, history=[{"attempt": 1, "provider": "openai", "model": "m", "outcome": "answered"}],
                  request_body='{"model":"gpt"}', response_body="data: [DONE]", client_ip="10.0.0.9",
                  user_agent="OpenAI/Python 1.0", trace_id="ab" * 16, ttft_ms=3.25, verdict="clean")
    assert await log.write([first]) == 1
    assert await log.write([first, entry(2)]) == 1  # a batch written again: stored once
    assert await log.get("req_0001") == first
    assert await log.get("req_9999") is None


async def test_search_filters_newest_first(storage: Storage) -> None:
    log = await filled(storage)
    found, _ = await log.search(RequestFilters(), 5)
    assert ids(found) == [39, 38, 37, 36, 35]
    assert found[0].history == [] and found[0].request_body is None  # a page lists without payloads
    found, _ = await log.search(RequestFilters(project="p", deployment="claude"), 100)
    assert ids(found) == []  # claude's are the multiples of 4, all even: project q
    found, _ = await log.search(RequestFilters(project="q", deployment="claude"), 3)
    assert ids(found) == [36, 32, 28]
    found, _ = await log.search(RequestFilters(key_id="key_1"), 100)
    assert ids(found) == list(range(37, 0, -3))
    found, _ = await log.search(RequestFilters(since=T0 + timedelta(seconds=10), until=T0 + timedelta(seconds=13)),
                                100)
    assert ids(found) == [12, 11, 10]
    found, _ = await log.search(RequestFilters(provider="other"), 100)
    assert found == []


async def test_status_codes_classes_and_error_text(storage: Storage) -> None:
    log = await filled(storage)
    found, _ = await log.search(RequestFilters(status=(500, 599)), 100)
    assert ids(found) == [33, 19, 7]
    found, _ = await log.search(RequestFilters(status=(429, 429)), 100)
    assert ids(found) == [25]
    found, _ = await log.search(RequestFilters(status=(400, 499)), 100)
    assert ids(found) == [25]
    found, _ = await log.search(RequestFilters(status=(200, 299)), 3)
    assert ids(found) == [39, 38, 37]
    found, _ = await log.search(RequestFilters(q="provider down (19)"), 100)
    assert ids(found) == [19]
    found, _ = await log.search(RequestFilters(q="100%_"), 100)  # LIKE's wildcards are plain text here
    assert found == []
    found, _ = await log.search(RequestFilters(q="requests per minute", project="p"), 100)
    assert ids(found) == [25]


async def test_a_cursor_pages_through_every_entry_once(storage: Storage) -> None:
    log = await filled(storage)
    # Two requests in the same microsecond: the id orders them.
    await log.write([entry(100, created_at=T0 + timedelta(seconds=50)),
                     entry(101, created_at=T0 + timedelta(seconds=50))])
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        found, cursor = await log.search(RequestFilters(), 7, cursor)
        seen += ids(found)
        pages += 1
        if cursor is None:
            break
    assert seen == [101, 100, *range(39, -1, -1)]
    assert pages == 6
    with pytest.raises(InvalidCursor):
        await log.search(RequestFilters(), 7, "not-a-cursor")


async def test_followed_by_the_time_batches_were_written(storage: Storage) -> None:
    log = storage.request_log
    before = datetime.now(UTC) - timedelta(seconds=1)
    await log.write([entry(1), entry(2)], written_at=before + timedelta(milliseconds=500))
    await log.write([entry(3, status=500, error="x: y")], written_at=before + timedelta(milliseconds=700))
    found = await log.written_after(before, RequestFilters())
    assert [e.request_id for _, e in found] == ["req_0001", "req_0002", "req_0003"]
    found = await log.written_after(before + timedelta(milliseconds=600), RequestFilters(status=(500, 599)))
    assert [e.request_id for _, e in found] == ["req_0003"]
    assert found[0][0] == before + timedelta(milliseconds=700)


async def test_purge_deletes_what_is_past_retention_in_batches(storage: Storage) -> None:
    log = await filled(storage)
    assert await log.purge(T0 + timedelta(seconds=25), batch_size=4) == 25
    found, _ = await log.search(RequestFilters(), 100)
    assert ids(found) == list(range(39, 24, -1))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("filters", "index"), [
    (RequestFilters(), None),
    (RequestFilters(project="p"), "request_log_project"),
    (RequestFilters(key_id="key_1"), "request_log_key"),
    (RequestFilters(deployment="gpt"), "request_log_deployment"),
    (RequestFilters(status=(429, 429)), "request_log_failed"),
    (RequestFilters(q="down"), "request_log_failed_at"),
    (RequestFilters(status=(500, 599)), "request_log_failed_at"),
    (RequestFilters(q="down", project="p"), "request_log_failed_at"),
    (RequestFilters(status=(500, 599), deployment="gpt"), "request_log_failed_at"),
])
async def test_each_search_reads_an_index_in_order(storage: Storage, filters: RequestFilters,
                                                   index: str | None) -> None:
    log = await filled(storage)
    query = log.search_query(filters, 50, None)
    compiled = query.compile(dialect=storage.db.engine.dialect, compile_kwargs={"literal_binds": True})
    async with storage.db.read() as conn:
        plan = " | ".join(str(row[-1]) for row in await conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
    if index is None:
        assert "request_log" in plan, plan
    else:
        assert f"INDEX {index} " in f"{plan} ", plan
    assert "TEMP B-TREE" not in plan, plan

"""The response store: visible at once, written behind in batches, per project, kept for its retention."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from modelgate.storage import DataRejected, ResponseStore, Storage, StoredResponse
from modelgate.storage.tables import responses
from tests.support import eventually

NOW = int(time.time())


def stored(id: str, project: str | None = "p", previous_id: str | None = None, created_at: int = NOW,
           kind: str = "response") -> StoredResponse:
    return StoredResponse(id=id, project=project, kind=kind, created_at=created_at, previous_id=previous_id,
                          body=b'{"id":"%s","object":"response"}' % id.encode(),
                          input_items=b'[{"id":"msg_%s","type":"message"}]' % id.encode())


async def rows(storage: Storage) -> list[str]:
    async with storage.db.read() as conn:
        return [str(i) for i in (await conn.execute(select(responses.c.id).order_by(responses.c.id))).scalars()]


async def refuse_id(storage: Storage, id: str) -> None:
    """Make the database itself refuse the row ``id`` (a constraint of the test's own)."""
    async with storage.db.write() as conn:
        if storage.dialect == "postgresql":
            await conn.exec_driver_sql(f"ALTER TABLE responses ADD CONSTRAINT refused CHECK (id <> '{id}')")
        else:
            await conn.exec_driver_sql(
                f"CREATE TRIGGER refused BEFORE INSERT ON responses WHEN NEW.id = '{id}' "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")


@pytest.fixture
async def store(storage: Storage) -> AsyncIterator[ResponseStore]:
    # An interval long enough that nothing is written behind a test's back unless it flushes.
    store = ResponseStore(storage.db, interval=3600, purge_delay=3600)
    await store.start()
    yield store
    await store.stop()


async def test_a_response_is_visible_at_once_and_written_on_flush(storage: Storage, store: ResponseStore) -> None:
    first = stored("resp_1")
    await store.put(first)
    assert await store.get("resp_1", "p") is first
    assert await rows(storage) == []
    await store.flush()
    assert await rows(storage) == ["resp_1"]
    assert store.pending == 0 and store.written == 1
    # Read back from the database, field for field.
    assert await store.get("resp_1", "p") == first


async def test_the_writer_writes_in_the_background(storage: Storage) -> None:
    store = ResponseStore(storage.db, interval=0.01, purge_delay=3600)
    await store.start()
    try:
        for i in range(5):
            store.put_nowait(stored(f"resp_{i}"))
        await eventually(lambda: store.pending == 0, what="the pending responses written")
        assert await rows(storage) == [f"resp_{i}" for i in range(5)]
    finally:
        await store.stop()


async def test_another_project_never_sees_a_response(store: ResponseStore) -> None:
    await store.put(stored("resp_p", project="p"))
    await store.put(stored("resp_master", project=None))
    for _in_memory_then_in_the_database in range(2):
        assert await store.get("resp_p", "q") is None
        assert await store.get("resp_p", None) is None  # the master key sees only its own
        assert await store.get("resp_master", "p") is None
        master = await store.get("resp_master", None)
        assert master is not None and master.id == "resp_master"
        assert await store.lineage("resp_p", "q") == []
        assert not await store.delete("resp_p", "q")
        assert not await store.delete("resp_master", "p")
        await store.flush()
    found = await store.get("resp_p", "p")
    assert found is not None and found.id == "resp_p"


async def test_lineage_is_oldest_first_across_memory_and_database(store: ResponseStore) -> None:
    await store.put(stored("resp_a"))
    await store.put(stored("resp_b", previous_id="resp_a"))
    await store.flush()
    await store.put(stored("resp_c", previous_id="resp_b"))
    await store.put(stored("resp_d", previous_id="resp_c"))
    # A branch from b: each response continues exactly the one it names.
    await store.put(stored("resp_e", previous_id="resp_b"))
    assert [r.id for r in await store.lineage("resp_d", "p")] == ["resp_a", "resp_b", "resp_c", "resp_d"]
    assert [r.id for r in await store.lineage("resp_e", "p")] == ["resp_a", "resp_b", "resp_e"]
    await store.flush()
    assert [r.id for r in await store.lineage("resp_d", "p")] == ["resp_a", "resp_b", "resp_c", "resp_d"]
    assert [r.id for r in await store.lineage("resp_b", "p")] == ["resp_a", "resp_b"]
    assert await store.lineage("resp_unknown", "p") == []


async def test_a_lineage_ends_at_a_deleted_ancestor(store: ResponseStore) -> None:
    for id, previous in (("resp_a", None), ("resp_b", "resp_a"), ("resp_c", "resp_b")):
        await store.put(stored(id, previous_id=previous))
    await store.flush()
    assert await store.delete("resp_b", "p")
    assert [r.id for r in await store.lineage("resp_c", "p")] == ["resp_c"]


async def test_a_long_lineage_is_read_in_one_piece(store: ResponseStore) -> None:
    previous = None
    for i in range(300):
        await store.put(stored(f"resp_{i:03d}", previous_id=previous))
        previous = f"resp_{i:03d}"
    await store.flush()
    chain = await store.lineage("resp_299", "p")
    assert [r.id for r in chain] == [f"resp_{i:03d}" for i in range(300)]


async def test_delete_removes_pending_and_written_responses(storage: Storage, store: ResponseStore) -> None:
    await store.put(stored("resp_pending"))
    await store.put(stored("resp_written"))
    await store.flush()
    await store.put(stored("resp_pending"))
    assert await store.delete("resp_pending", "p")
    assert await store.delete("resp_written", "p")
    assert not await store.delete("resp_written", "p")
    await store.flush()
    # The writer does not bring a deleted pending response back.
    assert await rows(storage) == []
    assert await store.get("resp_pending", "p") is None
    assert await store.get("resp_written", "p") is None


async def test_a_delete_during_a_batch_write_is_not_undone_by_it(storage: Storage, store: ResponseStore) -> None:
    for i in range(50):
        await store.put(stored(f"resp_{i:02d}"))
    flushing = asyncio.get_running_loop().create_task(store.flush())
    await asyncio.sleep(0)  # the flush has taken its batch
    assert await store.delete("resp_07", "p")
    await flushing
    await store.flush()
    assert "resp_07" not in await rows(storage)
    assert len(await rows(storage)) == 49


async def test_a_row_the_database_refuses_does_not_block_the_others(
        storage: Storage, store: ResponseStore, caplog: pytest.LogCaptureFixture) -> None:
    await refuse_id(storage, "resp_bad")
    for id in ("resp_1", "resp_2", "resp_bad", "resp_3", "resp_4"):
        await store.put(stored(id))
    with caplog.at_level(logging.ERROR, "modelgate.storage"):
        await store.flush()
    assert await rows(storage) == ["resp_1", "resp_2", "resp_3", "resp_4"]
    assert (store.refused, store.pending) == (1, 0)
    assert "stored response resp_bad (project p) was refused by the database" in caplog.text
    # The writer goes on with later responses.
    await store.put(stored("resp_5"))
    await store.flush()
    assert "resp_5" in await rows(storage)


async def test_values_the_columns_cannot_hold_are_refused_at_once_and_never_looked_up(store: ResponseStore) -> None:
    with pytest.raises(DataRejected, match="id is 101 characters long"):
        store.put_nowait(stored("r" * 101))
    with pytest.raises(DataRejected, match="project contains a NUL"):
        store.put_nowait(stored("resp_1", project="p\x00"))
    with pytest.raises(DataRejected, match="kind must be one of response, thread"):
        store.put_nowait(stored("resp_1", kind="other"))
    # Ids from clients: anything the database could not compare is simply not found.
    for id in ("x" * 5000, "resp_\x00", "\udc80", ""):
        assert await store.get(id, "p") is None
        assert await store.lineage(id, "p") == []
        assert not await store.delete(id, "p")
    assert await store.get("resp_1", "p\x00") is None


async def test_the_store_stops_by_writing_what_waits_and_a_restart_reads_it_back(storage: Storage) -> None:
    store = ResponseStore(storage.db, interval=3600, purge_delay=3600)
    await store.start()
    await store.put(stored("resp_a"))
    await store.put(stored("resp_b", previous_id="resp_a"))
    await store.stop()
    again = ResponseStore(storage.db)
    assert [r.id for r in await again.lineage("resp_b", "p")] == ["resp_a", "resp_b"]


async def test_while_the_database_is_away_responses_wait_in_memory(caplog: pytest.LogCaptureFixture) -> None:
    storage = await Storage.open("postgresql://postgres@127.0.0.1:1/nothing")
    store = ResponseStore(storage.db, interval=3600, purge_delay=3600, max_pending_bytes=2000)
    try:
        await store.put(stored("resp_a"))
        await store.flush()
        assert store.pending == 1
        waiting = await store.get("resp_a", "p")
        assert waiting is not None and waiting.id == "resp_a"
        # Past the memory bound the oldest are dropped, each said in the log.
        with caplog.at_level(logging.ERROR, "modelgate.storage"):
            for i in range(10):
                store.put_nowait(stored(f"resp_{i}"))
        assert store.dropped > 0 and store.pending < 11
        assert "stored response resp_a (project p) dropped" in caplog.text
        with caplog.at_level(logging.ERROR, "modelgate.storage"):
            await store.stop()
        assert "could not be written before the gateway stopped and are lost: resp_" in caplog.text
    finally:
        await storage.close()


async def test_purge_deletes_what_is_past_retention_in_batches(storage: Storage) -> None:
    store = ResponseStore(storage.db, purge_batch=7)
    for i in range(30):
        await store.put(stored(f"resp_old_{i:02d}", created_at=NOW - 40 * 86_400 + i))
    for i in range(5):
        await store.put(stored(f"resp_new_{i}", created_at=NOW - 86_400))
    await store.flush()
    assert await store.purge(NOW - 30 * 86_400) == 30
    assert await rows(storage) == [f"resp_new_{i}" for i in range(5)]
    assert await store.purge(NOW - 30 * 86_400) == 0


async def test_the_background_purge_keeps_the_retention(storage: Storage) -> None:
    store = ResponseStore(storage.db, interval=0.01, retention_s=86_400, purge_delay=0, purge_interval=0.05)
    async with storage.db.write() as conn:
        await conn.execute(responses.insert(), [
            {"id": "resp_old", "project": None, "kind": "response", "created_at": NOW - 2 * 86_400,
             "previous_id": None, "body": b"{}", "input_items": b"[]"}])
    await store.start()
    try:
        await store.put(stored("resp_new"))

        async def only_new() -> bool:
            return await rows(storage) == ["resp_new"]

        await eventually(only_new, what="the old response purged and the new one written")
    finally:
        await store.stop()
    async with storage.db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(responses))).scalar() == 1

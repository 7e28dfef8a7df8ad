"""Clearing the response cache of every process that keeps answers in its own memory: two
processes' caches on one database (SQLite and PostgreSQL), a clear through one applied by the
other at its next refresh."""

from __future__ import annotations

from modelgate.cache import MemoryStore, ResponseCache
from modelgate.cache.stores import Slot
from modelgate.server.cache import CacheClearSync
from modelgate.storage import Storage


async def test_a_clear_reaches_the_processes_that_keep_their_own_answers(storage: Storage) -> None:
    stores = [MemoryStore(1 << 20), MemoryStore(1 << 20)]
    syncs = [CacheClearSync(storage, ResponseCache(store), shared=False, interval=3600) for store in stores]
    earlier = await storage.cache_clears.add(None, None)  # before they started: nothing of theirs to clear
    for sync in syncs:
        await sync.start()
        assert sync.revision == earlier
    try:
        for store in stores:
            for deployment, project in (("chat", "a"), ("chat", "b"), ("other", "a")):
                await store.put(Slot(deployment, project, "d" * 32), b"answer", ttl_s=60)
        assert await syncs[0].clear("chat", "a") == 1
        assert len(stores[0]) == 2 and len(stores[1]) == 3
        assert await syncs[1].follower.refresh()  # what its refresh every 2 s does
        assert len(stores[1]) == 2 and await stores[1].get(Slot("chat", "a", "d" * 32)) is None
        assert await syncs[1].clear(None, "a") == 1
        assert not await syncs[1].follower.refresh()  # its own clear, applied already
        assert await syncs[0].follower.refresh() and len(stores[0]) == 1
        assert await stores[0].get(Slot("chat", "b", "d" * 32)) == b"answer"
    finally:
        for sync in syncs:
            await sync.stop()

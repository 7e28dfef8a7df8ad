"""Shared secrets: the first process to need one makes it, and every process ends with that one."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from modelgate.storage import Storage
from modelgate.storage.secrets import SEALING_KEY
from modelgate.storage.tables import gateway_secrets


async def test_a_secret_is_made_once_and_read_back_after(storage: Storage) -> None:
    first = await storage.secrets.shared(SEALING_KEY)
    assert len(first) == 43  # 256 bits, URL-safe base64
    assert await storage.secrets.shared(SEALING_KEY) == first
    assert await storage.secrets.shared("other") != first


async def test_processes_starting_together_on_a_new_database_end_with_one_key(database_url: str) -> None:
    processes = [await Storage.open(database_url) for _ in range(6)]
    try:
        await processes[0].upgrade()
        keys = await asyncio.gather(*(p.secrets.shared(SEALING_KEY) for p in processes))
        assert len(set(keys)) == 1
        async with processes[0].db.read() as conn:
            stored = (await conn.execute(select(gateway_secrets.c.value))).scalars().all()
        assert stored == [keys[0]]
        # A process started later reads the same key.
        later = await Storage.open(database_url)
        try:
            assert await later.secrets.shared(SEALING_KEY) == keys[0]
        finally:
            await later.close()
    finally:
        for process in processes:
            await process.close()

"""Migrations: pending on a new database, applied once, checked at start-up."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

from modelgate.storage import SchemaOutdated, Storage, StorageError, StorageUnavailable
from modelgate.storage.migrations import MIGRATIONS
from modelgate.storage.tables import schema_migrations
from tests.support import eventually

ALL = [name for name, _ in MIGRATIONS]


async def test_new_database_has_every_migration_pending_and_check_names_the_command(database_url: str) -> None:
    storage = await Storage.open(database_url)
    try:
        assert await storage.pending_migrations() == ALL
        with pytest.raises(SchemaOutdated, match=r"modelgate db upgrade"):
            await storage.check_schema()
        # Checking wrote nothing: the database is still new.
        assert await storage.applied_migrations() == []
    finally:
        await storage.close()


async def test_upgrade_applies_each_migration_once(database_url: str) -> None:
    storage = await Storage.open(database_url)
    try:
        assert await storage.upgrade() == ALL
        assert await storage.upgrade() == []
        assert await storage.applied_migrations() == ALL
        assert await storage.pending_migrations() == []
        await storage.check_schema()
        assert len(await storage.installation_id()) == 16
    finally:
        await storage.close()


async def test_concurrent_upgrades_apply_the_migrations_once(database_url: str) -> None:
    first, second = await Storage.open(database_url), await Storage.open(database_url)
    try:
        done = await asyncio.gather(first.upgrade(), second.upgrade())
        assert sorted(done, key=len) == [[], ALL]
        assert await first.installation_id() == await second.installation_id()
    finally:
        await first.close()
        await second.close()


async def test_prepare_upgrades_sqlite_but_refuses_an_outdated_postgresql(database_url: str) -> None:
    storage = await Storage.open(database_url)
    try:
        if storage.dialect == "sqlite":
            assert await storage.prepare() == ALL
            assert await storage.prepare() == []
        else:
            with pytest.raises(SchemaOutdated, match=r"run `modelgate db upgrade"):
                await storage.prepare()
            await storage.upgrade()
            assert await storage.prepare() == []
    finally:
        await storage.close()


async def test_a_database_from_a_newer_version_is_refused(storage: Storage) -> None:
    async with storage.db.write() as conn:
        await conn.execute(insert(schema_migrations).values(name="999_future", applied_at=datetime.now(UTC)))
    with pytest.raises(SchemaOutdated, match="999_future"):
        await storage.check_schema()


async def test_unsupported_url_names_the_supported_ones() -> None:
    with pytest.raises(StorageError, match=r"sqlite:///PATH or postgresql://"):
        await Storage.open("mysql://localhost/db")


async def test_unreachable_databases_raise_storage_unavailable(tmp_path: object) -> None:
    before = set(threading.enumerate())
    for url in ("postgresql://postgres@127.0.0.1:1/nothing", f"sqlite:///{tmp_path}/missing/dir/db.sqlite"):
        storage = await Storage.open(url)
        try:
            with pytest.raises(StorageUnavailable, match="cannot be reached"):
                await storage.pending_migrations()
        finally:
            await storage.close()
    # aiosqlite answers a failed connect by queueing its thread's stop without awaiting it
    # (aiosqlite/core.py, Connection._connect); let that thread end before this loop closes.
    await eventually(lambda: not [t for t in threading.enumerate() if t not in before
                                  and t.name.endswith("(_connection_worker_thread)")],
                     what="aiosqlite's thread ending")


async def test_postgresql_connections_killed_by_the_server_are_replaced(postgres_url: str) -> None:
    storage = await Storage.open(postgres_url)
    try:
        await storage.upgrade()
        assert await storage.pending_migrations() == []
        database = postgres_url.rsplit("/", 1)[1]
        # What a server restart does to the pooled connections.
        async with storage.db.write() as conn:
            await conn.exec_driver_sql(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{database}' AND pid <> pg_backend_pid()")
        assert await storage.pending_migrations() == []
        assert await storage.spend("key", "k", datetime(2030, 1, 1, tzinfo=UTC)) == 0.0
    finally:
        await storage.close()

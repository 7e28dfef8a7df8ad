"""Keys in memory: the cache the request path reads, and how it follows the database."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelgate.auth import Authenticator, Limits
from modelgate.auth.keyadmin import KeyAdmin, KeySpec
from modelgate.auth.keystore import KeyCache, generate_key, hash_key
from modelgate.auth.keysync import KeySync
from modelgate.redis_client import RedisClient
from modelgate.schema.errors import AuthenticationFailed
from modelgate.storage import LimitFields, Storage
from tests.services import START_REDIS, unavailable
from tests.support import eventually

DEPLOYMENTS = ["chat", "embed", "fast"]


def test_keys_are_long_random_and_only_their_hash_is_kept() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    key = keys.pop()
    assert key.startswith("mg-") and len(key) == 46
    assert len(hash_key(key)) == 64 and hash_key(key) != hash_key(key + "x")


async def loaded(storage: Storage, rows: bool) -> KeyCache:
    """A cache loaded as a gateway starts (plain rows) or from records."""
    cache = KeyCache()
    if rows:
        cache.load_rows(await storage.keys.load_active_rows())
    else:
        cache.load(await storage.keys.load_active())
    return cache


LOADS = pytest.mark.parametrize("rows", [True, False], ids=["rows", "records"])


@LOADS
async def test_the_cache_follows_keys_projects_and_revocations(storage: Storage, rows: bool) -> None:
    admin = KeyAdmin(storage, DEPLOYMENTS, changed=_ignore)
    await admin.create_project("p", LimitFields(deployments=["chat", "embed"], rpm=100, budget=10.0))
    narrow = await admin.create_key(KeySpec(project="p", limits=LimitFields(deployments=["chat", "fast"], tpm=50)))
    wide = await admin.create_key(KeySpec(project="p"))
    cache = await loaded(storage, rows)

    principal = cache.lookup(narrow.key)
    assert principal is not None
    assert (principal.key_id, principal.project) == (narrow.record.id, "p")
    # What both the key and its project allow.
    assert principal.deployments == frozenset({"chat"})
    assert principal.key_limits == Limits(tpm=50)
    assert principal.project_limits == Limits(rpm=100, budget=10.0)
    wide_principal = cache.lookup(wide.key)
    assert wide_principal is not None and wide_principal.deployments == frozenset({"chat", "embed"})
    assert cache.lookup("mg-not-a-key") is None

    await admin.update_project("p", {"deployments": None, "rpm": 5})
    await admin.revoke_key(wide.record.id)
    changes = await storage.keys.changes_since(cache.revision)
    assert changes is not None
    cache.apply(changes)
    principal = cache.lookup(narrow.key)
    assert principal is not None
    assert principal.deployments == frozenset({"chat", "fast"})
    assert principal.project_limits == Limits(rpm=5, budget=10.0)
    assert cache.lookup(wide.key) is None
    assert len(cache) == 1
    assert await storage.keys.changes_since(cache.revision) is None


@LOADS
async def test_an_expired_key_fails_on_the_request_that_comes_after_its_expiry(storage: Storage, rows: bool) -> None:
    admin = KeyAdmin(storage, DEPLOYMENTS, changed=_ignore)
    expires = datetime.now(UTC) + timedelta(hours=1)
    issued = await admin.create_key(KeySpec(project="p", expires_at=expires))
    cache = await loaded(storage, rows)
    assert cache.lookup(issued.key, now=expires.timestamp() - 1) is not None
    with pytest.raises(AuthenticationFailed, match="expired"):
        cache.lookup(issued.key, now=expires.timestamp())


async def test_authenticator_takes_the_master_key_and_project_keys(storage: Storage) -> None:
    admin = KeyAdmin(storage, DEPLOYMENTS, changed=_ignore)
    issued = await admin.create_key(KeySpec(project="p"))
    cache = KeyCache()
    cache.load(await storage.keys.load_active())
    auth = Authenticator("sk-master", cache)
    assert auth.authenticate({"authorization": "Bearer sk-master"}).key_id == "master"
    assert auth.authenticate({"x-api-key": issued.key}).key_id == issued.record.id
    assert auth.authenticate({"api-key": issued.key}).project == "p"
    with pytest.raises(AuthenticationFailed):
        auth.authenticate({"authorization": "Bearer mg-wrong"})
    # On a gateway without a master key a project key still carries its project and limits.
    assert Authenticator(None, cache).authenticate({"x-api-key": issued.key}).project == "p"
    assert Authenticator(None, cache).authenticate({}).key_id == "master"


class Process:
    """What one gateway process holds: its own engine, Redis client, cache and sync."""

    def __init__(self, storage: Storage, sync: KeySync) -> None:
        self.storage = storage
        self.sync = sync
        self.cache = sync.cache
        self.admin = KeyAdmin(storage, DEPLOYMENTS, changed=sync.changed)


@pytest.fixture
async def processes(request: pytest.FixtureRequest, storage: Storage) -> AsyncIterator[list[Process]]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    started: list[Process] = []
    try:
        for _ in range(2):
            own = await Storage.open(storage.url)
            client = RedisClient.from_url(redis_url) if redis_url is not None else None
            sync = KeySync(own, KeyCache(), client, interval=0.2 if client is None else 60)
            started.append(Process(own, sync))
            await sync.start()
        yield started
    finally:
        for process in started:
            await process.sync.stop()
            if process.sync.redis is not None:
                await process.sync.redis.close()
            await process.storage.close()


@pytest.mark.parametrize("processes", ["redis"], indirect=True)
async def test_with_redis_a_change_is_applied_everywhere_before_the_call_returns(processes: list[Process]) -> None:
    a, b = processes  # their periodic refresh is 60 s away: only Redis can carry the change
    issued = await a.admin.create_key(KeySpec(project="p"))
    assert b.cache.lookup(issued.key) is not None
    await a.admin.revoke_key(issued.record.id)
    assert a.cache.lookup(issued.key) is None
    assert b.cache.lookup(issued.key) is None
    await b.admin.update_project("p", {"rpm": 7})
    assert a.cache.revision == b.cache.revision


@pytest.mark.parametrize("processes", ["no redis"], indirect=True)
async def test_without_redis_the_refresh_applies_changes_within_its_interval(processes: list[Process]) -> None:
    a, b = processes
    issued = await a.admin.create_key(KeySpec(project="p"))
    assert a.cache.lookup(issued.key) is not None  # the changing process at once
    # The other at its next refresh (every 0.2 s here; the deadline is a generous 50 of them).
    await eventually(lambda: b.cache.lookup(issued.key) is not None, what="the refresh picking up the new key")


async def test_an_unreachable_redis_does_not_stop_start_up_or_changes(storage: Storage) -> None:
    client = RedisClient.from_url("redis://127.0.0.1:1/0")
    sync = KeySync(storage, KeyCache(), client, interval=60)
    await sync.start()
    try:
        issued = await KeyAdmin(storage, DEPLOYMENTS, changed=sync.changed).create_key(KeySpec(project="p"))
        assert sync.cache.lookup(issued.key) is not None
    finally:
        await sync.stop()
        await client.close()


async def test_a_redis_outage_is_logged_once_not_at_every_attempt(storage: Storage,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="modelgate.auth")
    client = RedisClient.from_url("redis://127.0.0.1:1/0")
    sync = KeySync(storage, KeyCache(), client, interval=60)
    await sync.start()

    def attempts() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "subscription to" in r.getMessage()]

    try:
        await eventually(lambda: len(attempts()) >= 3, what="three failed attempts to subscribe")
        assert [r.levelno for r in attempts()][:3] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    finally:
        await sync.stop()
        await client.close()


async def _ignore(revision: int) -> None:
    return None


async def test_after_redis_restarts_changes_travel_through_it_again(storage: Storage, tmp_path: Path) -> None:
    """A Redis of this test's own (the shared one must not be restarted): killed and started
    again on its socket, the subscriptions and the announcing client reconnect by themselves. A
    Unix socket of the test's folder, not a TCP port: nothing else can take it while Redis is down."""
    server = shutil.which("redis-server")
    if server is None:
        unavailable("redis-server", FileNotFoundError("redis-server"), START_REDIS)
    path = tmp_path / "redis.sock"

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([server or "redis-server", "--port", "0", "--unixsocket", str(path), "--save", "",
                                 "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)

    redis_server = start()
    syncs: list[KeySync] = []
    try:
        await eventually(lambda: _answers(path), what="redis-server answering")
        for _ in range(2):
            syncs.append(KeySync(await Storage.open(storage.url), KeyCache(),
                                 RedisClient.from_url(f"unix://{path}?db=0"), interval=60))
            await syncs[-1].start()
        a, b = syncs
        admin = KeyAdmin(a.storage, DEPLOYMENTS, changed=a.changed)
        issued = await admin.create_key(KeySpec(project="p"))
        assert b.cache.lookup(issued.key) is not None

        redis_server.kill()
        redis_server.wait()
        await eventually(lambda: not a.subscribed and not b.subscribed, what="both noticing Redis gone")
        redis_server = start()
        await eventually(lambda: a.subscribed and b.subscribed, 30, "both subscribed again")
        await admin.revoke_key(issued.record.id)
        assert b.cache.lookup(issued.key) is None
    finally:
        for sync in syncs:
            await sync.stop()
            assert sync.redis is not None
            await sync.redis.close()
            await sync.storage.close()
        redis_server.kill()
        redis_server.wait()


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        return sock.connect_ex(str(path)) == 0

"""Keeping every gateway process's ``KeyCache`` in step with the database.

A key created, changed or revoked anywhere takes effect everywhere at once: the cache follows the
keys' revision counter as ``storage/revisions.py`` describes (announced on the installation's
``keys`` channel of Redis, each process confirming before a revocation returns; polled from the
database every ``REFRESH_INTERVAL`` seconds as the backstop and where there is no Redis).
"""

from __future__ import annotations

import logging

from modelgate.auth.keystore import KeyCache, collector_paused
from modelgate.redis_client import RedisClient
from modelgate.storage import Storage
from modelgate.storage.revisions import REFRESH_INTERVAL, Announcer, RevisionFollower
from modelgate.storage.revisions import channel_name as _channel_name

__all__ = ["REFRESH_INTERVAL", "TOPIC", "Announcer", "KeySync", "channel_name"]

log = logging.getLogger("modelgate.auth")

TOPIC = "keys"


def channel_name(installation: str) -> str:
    return _channel_name(installation, TOPIC)


class KeySync:
    """Loads the ``KeyCache`` at start-up and keeps it current (see the module docstring).

    ``redis`` is the process's client (None without ``redis_url``); it stays open after ``stop()``.
    """

    def __init__(self, storage: Storage, cache: KeyCache, redis: RedisClient | None,
                 interval: float = REFRESH_INTERVAL) -> None:
        self.storage = storage
        self.cache = cache
        self.redis = redis
        self.follower = RevisionFollower(storage, redis, TOPIC, refresh=self._apply_changes,
                                         revision=lambda: self.cache.revision, interval=interval, what="key",
                                         logger=log)

    @property
    def subscribed(self) -> bool:
        """Whether key changes reach this process over Redis now (else by refresh)."""
        return self.follower.subscribed

    @property
    def announcer(self) -> Announcer | None:
        return self.follower.announcer

    async def start(self) -> None:
        with collector_paused():
            self.cache.load_rows(await self.storage.keys.load_active_rows())
        log.info("%d active project key(s) loaded (revision %d)", len(self.cache), self.cache.revision)
        await self.follower.start()

    async def stop(self) -> None:
        await self.follower.stop()

    async def refresh(self) -> bool:
        """Apply the changes made since the cache's revision; whether there were any."""
        return await self.follower.refresh()

    async def changed(self, revision: int) -> None:
        """After this process changed keys: apply the change here, then announce it to the others."""
        await self.follower.changed(revision)

    async def _apply_changes(self) -> bool:
        changes = await self.storage.keys.changes_since(self.cache.revision)
        if changes is None:
            return False
        self.cache.apply(changes)
        log.info("key changes applied up to revision %d (%d active keys)", changes.revision, len(self.cache))
        return True

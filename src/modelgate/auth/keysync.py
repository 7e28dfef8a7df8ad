"""Keeping every gateway process's ``KeyCache`` in step with the database.

Two paths, so that a key created, changed or revoked anywhere takes effect everywhere at once:

* Redis (``redis_url`` set): whoever changes a key publishes the new revision on the channel
  of the installation (all processes sharing one database). Each gateway process re-reads the
  changes and pushes an acknowledgement; the changer waits for as many acknowledgements as
  Redis delivered the message to (at most ``ANNOUNCE_TIMEOUT``), so when `modelgate keys revoke`
  or ``DELETE /admin/keys/{id}`` returns, every running process has dropped the key.
* A refresh every ``REFRESH_INTERVAL`` seconds asks the database for the revision counter (one
  tiny query) and reads the changed rows only when it moved: the backstop for lost messages
  and for setups without Redis, where a change takes effect within that interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from modelgate.auth.keystore import KeyCache
from modelgate.storage import Storage, StorageError

log = logging.getLogger("modelgate.auth")

REFRESH_INTERVAL = 2.0
ANNOUNCE_TIMEOUT = 2.0
ACK_TTL = 60  # seconds an unread acknowledgement list lives on in Redis


def channel_name(installation: str) -> str:
    return f"modelgate:{installation}:keys"


def connect_redis(url: str) -> aioredis.Redis:
    # A pooled connection to a Redis that restarted fails on first use: retry it on a new one.
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3)
    return aioredis.Redis.from_url(url, socket_connect_timeout=2, health_check_interval=30, retry=retry,
                                   retry_on_error=[RedisConnectionError, RedisTimeoutError])


class Announcer:
    """Tells the gateway processes of an installation that keys changed, and waits for them."""

    def __init__(self, client: aioredis.Redis, channel: str) -> None:
        self.client = client
        self.channel = channel

    async def announce(self, revision: int, wait: float = ANNOUNCE_TIMEOUT) -> tuple[int, int]:
        """Publish ``revision``; (processes that received it, processes that applied it in time)."""
        ack = f"{self.channel}:ack:{secrets.token_hex(8)}"
        message = orjson.dumps({"revision": revision, "ack": ack})
        receivers = int(await self.client.publish(self.channel, message))
        confirmed = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        try:
            while confirmed < receivers:
                remaining = deadline - loop.time()
                if remaining <= 0 or await self.client.blpop([ack], timeout=remaining) is None:
                    break
                confirmed += 1
        finally:
            await self.client.delete(ack)
        if confirmed < receivers:
            log.warning("key change %d: %d of %d gateway processes confirmed within %.1fs; the others "
                        "apply it at their next refresh (%.0fs)", revision, confirmed, receivers, wait,
                        REFRESH_INTERVAL)
        return receivers, confirmed


class KeySync:
    """Loads the ``KeyCache`` at start-up and keeps it current (see the module docstring)."""

    def __init__(self, storage: Storage, cache: KeyCache, redis_url: str | None,
                 interval: float = REFRESH_INTERVAL) -> None:
        self.storage = storage
        self.cache = cache
        self.redis_url = redis_url
        self.interval = interval
        self.announcer: Announcer | None = None
        self._redis: aioredis.Redis | None = None
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._process = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._first_try = asyncio.Event()  # set once the first subscription succeeded or failed
        self.subscribed = False

    async def start(self) -> None:
        self.cache.load(await self.storage.keys.load_active())
        log.info("%d active project key(s) loaded (revision %d)", len(self.cache), self.cache.revision)
        self._tasks.append(asyncio.create_task(self._poll(), name="modelgate-key-refresh"))
        if self.redis_url:
            self._redis = connect_redis(self.redis_url)
            channel = channel_name(await self.storage.installation_id())
            self.announcer = Announcer(self._redis, channel)
            self._tasks.append(asyncio.create_task(self._listen(channel), name="modelgate-key-listen"))
            # Start serving once subscribed, so that no change announced after start-up is missed;
            # if Redis is down the refresh covers and start-up goes on.
            with contextlib.suppress(TimeoutError):  # a Redis that neither answers nor refuses
                await asyncio.wait_for(self._first_try.wait(), timeout=3)
            if not self.subscribed:
                log.warning("Redis at %s did not answer; key changes reach this process by refresh "
                            "every %.0fs until it does", self.redis_url, self.interval)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._redis is not None:
            await self._redis.aclose()

    async def refresh(self) -> bool:
        """Apply the changes made since the cache's revision; whether there were any."""
        async with self._lock:
            changes = await self.storage.keys.changes_since(self.cache.revision)
            if changes is None:
                return False
            self.cache.apply(changes)
            log.info("key changes applied up to revision %d (%d active keys)", changes.revision, len(self.cache))
            return True

    async def changed(self, revision: int) -> None:
        """After this process changed keys: apply the change here, then announce it to the others."""
        await self.refresh()
        if self.announcer is not None:
            try:
                await self.announcer.announce(revision)
            except RedisError as error:
                log.warning("could not announce key change %d on Redis (%s); other processes apply it "
                            "at their next refresh (%.0fs)", revision, error, self.interval)

    async def _poll(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
                if failing:
                    log.info("key refresh works again")
                failing = False
            except StorageError as error:
                if not failing:
                    log.warning("key refresh failed, keeping the keys known so far: %s", error)
                failing = True

    async def _listen(self, channel: str) -> None:
        assert self._redis is not None
        delay = 0.5
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                self.subscribed = True
                self._first_try.set()
                delay = 0.5
                # Changes announced while this process was not subscribed.
                await self._refresh_logged()
                async for message in pubsub.listen():
                    await self._on_message(message)
            except (RedisError, OSError) as error:
                self.subscribed = False
                self._first_try.set()
                log.warning("Redis subscription to %s lost (%s); again in %.1fs", channel, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                await pubsub.aclose()

    async def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") != "message":
            return
        try:
            body = orjson.loads(message["data"])
            revision, ack = int(body["revision"]), str(body["ack"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed key-change message: %r", message.get("data"))
            return
        if self.cache.revision < revision:
            await self._refresh_logged()
        if self.cache.revision >= revision and self._redis is not None:
            await self._redis.rpush(ack, self._process)
            await self._redis.expire(ack, ACK_TTL)

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh()
        except StorageError as error:
            log.warning("key refresh failed, keeping the keys known so far: %s", error)

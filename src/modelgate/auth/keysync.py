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

import orjson

from modelgate.auth.keystore import KeyCache, collector_paused
from modelgate.redis_client import RedisClient, RespError
from modelgate.storage import Storage, StorageError

log = logging.getLogger("modelgate.auth")

REFRESH_INTERVAL = 2.0
ANNOUNCE_TIMEOUT = 2.0
ACK_TTL = 60  # seconds an unread acknowledgement list lives on in Redis


def channel_name(installation: str) -> str:
    return f"modelgate:{installation}:keys"


class Announcer:
    """Tells the gateway processes of an installation that keys changed, and waits for them."""

    def __init__(self, client: RedisClient, channel: str) -> None:
        self.client = client
        self.channel = channel

    async def announce(self, revision: int, wait: float = ANNOUNCE_TIMEOUT) -> tuple[int, int]:
        """Publish ``revision``; (processes that received it, processes that applied it in time)."""
        ack = f"{self.channel}:ack:{secrets.token_hex(8)}"
        message = orjson.dumps({"revision": revision, "ack": ack})
        receivers = await self.client.publish(self.channel, message)
        confirmed = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        try:
            while confirmed < receivers:
                remaining = deadline - loop.time()
                if remaining <= 0 or await self.client.blpop([ack], remaining) is None:
                    break
                confirmed += 1
        finally:
            await self.client.command("DEL", ack)
        if confirmed < receivers:
            log.warning("key change %d: %d of %d gateway processes confirmed within %.1fs; the others "
                        "apply it at their next refresh (%.0fs)", revision, confirmed, receivers, wait,
                        REFRESH_INTERVAL)
        return receivers, confirmed


class KeySync:
    """Loads the ``KeyCache`` at start-up and keeps it current (see the module docstring).

    ``redis`` is the process's client (None without ``redis_url``); it stays open after ``stop()``.
    """

    def __init__(self, storage: Storage, cache: KeyCache, redis: RedisClient | None,
                 interval: float = REFRESH_INTERVAL) -> None:
        self.storage = storage
        self.cache = cache
        self.redis = redis
        self.interval = interval
        self.announcer: Announcer | None = None
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._process = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._first_try = asyncio.Event()  # set once the first subscription succeeded or failed
        self.subscribed = False

    async def start(self) -> None:
        with collector_paused():
            self.cache.load_rows(await self.storage.keys.load_active_rows())
        log.info("%d active project key(s) loaded (revision %d)", len(self.cache), self.cache.revision)
        self._tasks.append(asyncio.create_task(self._poll(), name="modelgate-key-refresh"))
        if self.redis is not None:
            channel = channel_name(await self.storage.installation_id())
            self.announcer = Announcer(self.redis, channel)
            self._tasks.append(asyncio.create_task(self._listen(channel), name="modelgate-key-listen"))
            # Start serving once subscribed, so that no change announced after start-up is missed;
            # if Redis is down the refresh covers and start-up goes on.
            with contextlib.suppress(TimeoutError):  # a Redis that neither answers nor refuses
                await asyncio.wait_for(self._first_try.wait(), timeout=3)
            if not self.subscribed:
                log.warning("Redis at %s did not answer; key changes reach this process by refresh "
                            "every %.0fs until it does", self.redis.url, self.interval)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

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
            except (RespError, OSError) as error:
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
        assert self.redis is not None
        delay = 0.5
        failures = 0  # attempts failed in a row: an outage is logged once when it starts and once when it ends
        while True:
            try:
                async with self.redis.subscribe(channel) as subscription:
                    self.subscribed = True
                    self._first_try.set()
                    delay = 0.5
                    if failures:
                        log.info("Redis subscription to %s is back after %d failed attempt(s)", channel, failures)
                        failures = 0
                    # Changes announced while this process was not subscribed.
                    await self._refresh_logged()
                    async for message in subscription:
                        await self._on_message(message.data)
            except (RespError, OSError) as error:
                self.subscribed = False
                self._first_try.set()
                failures += 1
                log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                        "Redis subscription to %s lost (%s); trying again, waits growing from %.1fs to 10s",
                        channel, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _on_message(self, data: bytes) -> None:
        try:
            body = orjson.loads(data)
            revision, ack = int(body["revision"]), str(body["ack"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed key-change message: %r", data)
            return
        if self.cache.revision < revision:
            await self._refresh_logged()
        if self.cache.revision >= revision and self.redis is not None:
            await self.redis.pipeline(["RPUSH", ack, self._process], ["EXPIRE", ack, ACK_TTL])

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh()
        except StorageError as error:
            log.warning("key refresh failed, keeping the keys known so far: %s", error)

"""Following a revision counter of the database on every gateway process of an installation.

Some state is read on the request path from memory (project keys, the deployments made through the
admin API) and changed in the database; each such table moves a revision counter with every change
(``storage.keys.changes_since``, ``storage.deployments.changes_since``). A ``RevisionFollower``
keeps one process's copy of it current, by two paths:

* Redis (``redis_url`` set): whoever changes the state publishes the new revision on the
  installation's channel for it (``modelgate:{installation}:{topic}``). Each gateway process
  re-reads the changes and pushes an acknowledgement; the changer waits for as many
  acknowledgements as Redis delivered the message to (at most ``ANNOUNCE_TIMEOUT``), so when a
  revocation or a deployment change returns, every running process has applied it.
* A refresh every ``interval`` seconds (``REFRESH_INTERVAL``) asks the database whether the
  revision moved (one tiny query): the backstop for lost messages and for setups without Redis,
  where a change takes effect within that interval.

The follower knows nothing of what the state is: its owner gives a ``refresh`` that applies the
changes stored since its copy's revision (and says whether there were any), and a ``revision``
that reads that copy's revision. Refreshes are serialized, so the owner's ``refresh`` never runs
twice at once. A ``StorageError`` of a refresh keeps the copy as it was until the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Awaitable, Callable

import orjson

from modelgate.redis_client import RedisClient, RespError
from modelgate.storage.errors import StorageError
from modelgate.storage.store import Storage

REFRESH_INTERVAL = 2.0
ANNOUNCE_TIMEOUT = 2.0
ACK_TTL = 60  # seconds an unread acknowledgement list lives on in Redis
SUBSCRIBE_WAIT_S = 3.0  # how long start() waits for the first subscription before serving anyway
RETRY_S = (0.5, 10.0)  # first and longest wait between attempts to subscribe again

log = logging.getLogger("modelgate.storage")


def channel_name(installation: str, topic: str) -> str:
    return f"modelgate:{installation}:{topic}"


class Announcer:
    """Tells the gateway processes of an installation that a revision moved, and waits for them.

    ``what`` names the change in log lines ("key change 12")."""

    def __init__(self, client: RedisClient, channel: str, what: str = "change",
                 logger: logging.Logger = log) -> None:
        self.client = client
        self.channel = channel
        self.what = what
        self.log = logger

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
            self.log.warning("%s %d: %d of %d gateway processes confirmed within %.1fs; the others apply it at "
                             "their next refresh (%.0fs)", self.what, revision, confirmed, receivers, wait,
                             REFRESH_INTERVAL)
        return receivers, confirmed


class RevisionFollower:
    """One process's copy of some stored state, kept at the database's revision (see the module
    docstring). ``redis`` is the process's client (None without ``redis_url``); it stays open after
    ``stop()``. ``what`` names the state in log lines ("key"), ``logger`` is its owner's."""

    def __init__(self, storage: Storage, redis: RedisClient | None, topic: str, *,
                 refresh: Callable[[], Awaitable[bool]], revision: Callable[[], int],
                 interval: float = REFRESH_INTERVAL, what: str = "state", logger: logging.Logger = log) -> None:
        self.storage = storage
        self.redis = redis
        self.topic = topic
        self.interval = interval
        self.what = what
        self.log = logger
        self.announcer: Announcer | None = None
        self.subscribed = False
        self._refresh = refresh
        self._revision = revision
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._process = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._first_try = asyncio.Event()  # set once the first subscription succeeded or failed

    async def start(self) -> None:
        """Start the refresh and, with Redis, the subscription; returns once subscribed, so that no
        change announced after start-up is missed (or after ``SUBSCRIBE_WAIT_S`` if Redis does not
        answer: the refresh covers and start-up goes on)."""
        self._tasks.append(asyncio.create_task(self._poll(), name=f"modelgate-{self.topic}-refresh"))
        if self.redis is None:
            return
        channel = channel_name(await self.storage.installation_id(), self.topic)
        self.announcer = Announcer(self.redis, channel, f"{self.what} change", self.log)
        self._tasks.append(asyncio.create_task(self._listen(channel), name=f"modelgate-{self.topic}-listen"))
        with contextlib.suppress(TimeoutError):  # a Redis that neither answers nor refuses
            await asyncio.wait_for(self._first_try.wait(), timeout=SUBSCRIBE_WAIT_S)
        if not self.subscribed:
            self.log.warning("Redis at %s did not answer; %s changes reach this process by refresh every %.0fs "
                             "until it does", self.redis.url, self.what, self.interval)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def refresh(self) -> bool:
        """Apply the changes stored since the copy's revision; whether there were any."""
        async with self._lock:
            return await self._refresh()

    async def changed(self, revision: int) -> None:
        """After this process changed the state: apply the change here, then announce it to the others."""
        await self.refresh()
        if self.announcer is None:
            return
        try:
            await self.announcer.announce(revision)
        except (RespError, OSError) as error:
            self.log.warning("could not announce %s change %d on Redis (%s); other processes apply it at their "
                             "next refresh (%.0fs)", self.what, revision, error, self.interval)

    async def _poll(self) -> None:
        failing = False  # a database outage is logged when it starts and when it ends
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except StorageError as error:
                if not failing:
                    self.log.warning("%s refresh failed, keeping what is known so far: %s", self.what, error)
                failing = True
            else:
                if failing:
                    self.log.info("%s refresh works again", self.what)
                failing = False

    async def _listen(self, channel: str) -> None:
        assert self.redis is not None
        delay = RETRY_S[0]
        failures = 0  # attempts failed in a row: an outage is logged once when it starts and once when it ends
        while True:
            try:
                async with self.redis.subscribe(channel) as subscription:
                    self.subscribed = True
                    self._first_try.set()
                    delay = RETRY_S[0]
                    if failures:
                        self.log.info("Redis subscription to %s is back after %d failed attempt(s)", channel,
                                      failures)
                        failures = 0
                    # Changes announced while this process was not subscribed.
                    await self._refresh_logged()
                    async for message in subscription:
                        await self._on_message(message.data)
            except (RespError, OSError) as error:
                self.subscribed = False
                self._first_try.set()
                failures += 1
                self.log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                             "Redis subscription to %s lost (%s); trying again, waits growing from %.1fs to %gs",
                             channel, error, delay, RETRY_S[1])
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_S[1])

    async def _on_message(self, data: bytes) -> None:
        try:
            body = orjson.loads(data)
            revision, ack = int(body["revision"]), str(body["ack"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.log.warning("ignoring a malformed %s-change message: %r", self.what, data)
            return
        if self._revision() < revision:
            await self._refresh_logged()
        if self._revision() >= revision and self.redis is not None:
            await self.redis.pipeline(["RPUSH", ack, self._process], ["EXPIRE", ack, ACK_TTL])

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh()
        except StorageError as error:
            self.log.warning("%s refresh failed, keeping what is known so far: %s", self.what, error)

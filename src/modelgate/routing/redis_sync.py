"""Breaker state shared by several gateway processes through Redis.

Each process keeps its own ``Health`` and reads it with no I/O on the request path; only breaker
*transitions* travel, and they are rare (a target opening or closing). A transition made here is
queued to one writer task, which stores it and publishes it; a listener task applies the other
processes' transitions as they arrive. In Redis::

    {prefix}breaker:{provider}/{model}   hash state, until (Unix time), reason, origin
                                         while open; deleted on close; expires a minute after until
    {prefix}breaker                      pub/sub channel, JSON {target, state, until, reason, origin}

A process that starts, or reconnects after losing Redis, reads the stored open breakers first, so
it skips what its peers already found failing. If Redis is unreachable the gateway keeps routing
on its own view and retries the connection in the background; nothing on the request path waits
for Redis. Failure counts stay per process: a target opens when one process sees ``failures`` in
a row, and then opens for all. Time crosses processes as Unix time, so hosts need synced clocks.

What other processes wrote is read as untrusted: a message or stored breaker that cannot be read,
or whose ``until`` is not a finite time, is ignored with a warning (``Health.apply_remote``), and
neither task ends on anything but ``stop()``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from typing import Any

import orjson

from modelgate.redis_client import RedisClient, RespError, Subscription
from modelgate.routing.health import CLOSED, OPEN, Health, TargetHealth

log = logging.getLogger("modelgate.routing")

KEY_GRACE_S = 60  # an open breaker's key outlives its until by this much
MAX_TTL_S = 86_400.0  # an open breaker's key outlives it by KEY_GRACE_S, and this at most
CONNECT_TIMEOUT_S = 2.0


class RedisHealthSync:
    """``redis`` is the process's client; it stays open after ``stop()``."""

    def __init__(self, redis: RedisClient, health: Health, prefix: str) -> None:
        self.redis = redis
        self.health = health
        self.channel = f"{prefix}breaker"
        self.key_prefix = f"{prefix}breaker:"
        self.origin = secrets.token_hex(8)  # this process, so it ignores its own messages
        self.connected = False
        self._outbox: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._pubsub: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Subscribe and load the stored breakers (a few seconds at most), then run in the background."""
        self.health.on_change = self._queue
        self.health.shared = "redis"
        try:
            await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT_S)
        except (RespError, OSError) as exc:
            log.warning("cannot reach Redis for shared breaker state (%s); routing on this process's "
                        "own view until it answers", exc)
            await self._drop_pubsub()
        self._tasks = [asyncio.create_task(self._listen(), name="modelgate-breaker-listen"),
                       asyncio.create_task(self._write(), name="modelgate-breaker-write")]

    async def stop(self) -> None:
        self.health.on_change = None
        if not self._outbox.empty():
            # Let the writer pass on the last transitions, briefly.
            try:
                await asyncio.wait_for(self._outbox.join(), 1.0)
            except TimeoutError:
                log.warning("stopping with %d breaker transitions not written to Redis", self._outbox.qsize())
        for task in self._tasks:
            task.cancel()
        # The tasks end only by this cancellation; anything else they raised is a bug worth a log line.
        for task, result in zip(self._tasks, await asyncio.gather(*self._tasks, return_exceptions=True),
                                strict=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("breaker sync task %s failed", task.get_name(), exc_info=result)
        await self._drop_pubsub()

    # -- this process's transitions -> Redis ---------------------------------------------------------

    def _queue(self, target: TargetHealth) -> None:
        seconds_left = target.open_until - time.monotonic()
        message = {"target": target.key, "state": target.state, "until": time.time() + seconds_left,
                   "reason": target.reason, "origin": self.origin}
        self._outbox.put_nowait((target.key, message))

    async def _write(self) -> None:
        # One writer keeps the transitions of a target in the order they happened.
        while True:
            key, message = await self._outbox.get()
            try:
                await self._store(key, message)
            except (RespError, OSError) as exc:
                log.warning("could not share breaker state of %s (%s): %s", key, message["state"], exc)
            except Exception:
                log.exception("could not share breaker state of %s (%s)", key, message["state"])
            finally:
                self._outbox.task_done()

    async def _store(self, key: str, message: dict[str, Any]) -> None:
        name = self.key_prefix + key
        if message["state"] == OPEN:
            left = message["until"] - time.time()
            ttl = (min(max(left, 0.0), MAX_TTL_S) if math.isfinite(left) else 0.0) + KEY_GRACE_S
            await self.redis.pipeline(
                ["HSET", name, "state", OPEN, "until", repr(message["until"]), "reason", message["reason"] or "",
                 "origin", self.origin],
                ["PEXPIRE", name, int(ttl * 1000)],
                ["PUBLISH", self.channel, orjson.dumps(message)])
        else:
            await self.redis.pipeline(["DEL", name], ["PUBLISH", self.channel, orjson.dumps(message)])

    # -- the other processes' transitions -> here ----------------------------------------------------

    async def _connect(self) -> None:
        pubsub = self.redis.subscribe(self.channel)
        self._pubsub = pubsub
        # Subscribe before reading the stored state, so no transition falls between the two.
        await pubsub.start()
        async for name in self.redis.scan_iter(match=self.key_prefix + "*", count=500):
            try:
                fields = await self.redis.hgetall(name)
            except RespError as exc:  # not a hash: not a breaker this code wrote
                log.warning("ignoring %r in Redis: %s", _text(name)[:200], exc)
                continue
            if fields:
                self._apply_stored(_text(name)[len(self.key_prefix):], fields)
        self.connected = True

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            try:
                if self._pubsub is None:
                    await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT_S)
                    log.info("shared breaker state: connected to Redis")
                delay = 0.1
                assert self._pubsub is not None
                async for message in self._pubsub:
                    self._apply_message(message.data)
                # The iteration ends when the subscription was closed: start over.
                await self._drop_pubsub()
            except (RespError, OSError) as exc:
                if self.connected:
                    log.warning("lost Redis for shared breaker state (%s); reconnecting", exc)
                await self._drop_pubsub()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _drop_pubsub(self) -> None:
        self.connected = False
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await pubsub.close()

    def _apply_message(self, data: bytes | str) -> None:
        try:
            message = orjson.loads(data)
            if message["origin"] == self.origin:
                return
            self.health.apply_remote(str(message["target"]), str(message["state"]),
                                     float(message["until"]) - time.time(), message.get("reason"))
        except Exception as exc:  # whatever another process sent, the listener goes on
            log.warning("ignoring a malformed breaker message on %s: %r (%s)", self.channel, data[:500], exc)

    def _apply_stored(self, key: str, fields: dict[Any, Any]) -> None:
        values = {_text(k): _text(v) for k, v in fields.items()}
        state = values.get("state", CLOSED)
        try:
            until = float(values.get("until", "0"))
        except (ValueError, OverflowError):
            log.warning("ignoring stored breaker %s with until=%r", key, values.get("until", "")[:100])
            return
        self.health.apply_remote(key, state, until - time.time(), values.get("reason") or None)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

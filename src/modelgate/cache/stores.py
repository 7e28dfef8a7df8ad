"""Where cached answers are kept: in the process (``MemoryStore``, the default) or in Redis
(``RedisStore``, when ``redis_url`` is set: shared by every process and machine on it).

An answer is stored under its ``Slot``: the deployment, the scope (the project, or ``*`` for a
deployment whose cache is global) and the request's digest, so that clearing by deployment or
project finds its answers without reading them. A store that cannot be reached is a miss, never
a failed request.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from modelgate.redis_client.client import RedisClient
from modelgate.redis_client.deferred import OutageLog
from modelgate.redis_client.resp import RespError

log = logging.getLogger("modelgate.cache")

GLOBAL = "*"  # the scope of a deployment whose answers every caller shares
CLEAR_BATCH = 500


@dataclass(frozen=True, slots=True)
class Slot:
    deployment: str
    scope: str  # a project's name, "" for calls without one, GLOBAL for a global cache
    digest: str


class Store(Protocol):
    async def get(self, slot: Slot) -> bytes | None: ...

    async def put(self, slot: Slot, value: bytes, ttl_s: int) -> None: ...

    async def clear(self, deployment: str | None, scope: str | None) -> int:
        """Drop the answers of a deployment, a scope, both, or (None, None) all; how many."""


class MemoryStore:
    """A bounded LRU of answers in this process: at most ``max_bytes`` of values (and their keys),
    the least recently used going first; each entry expires ``ttl_s`` after it was stored."""

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.clock = clock
        self.size = 0
        self._entries: OrderedDict[Slot, tuple[bytes, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, slot: Slot) -> bytes | None:
        found = self._entries.get(slot)
        if found is None:
            return None
        value, expires = found
        if expires <= self.clock():
            self._drop(slot)
            return None
        self._entries.move_to_end(slot)
        return value

    async def put(self, slot: Slot, value: bytes, ttl_s: int) -> None:
        cost = _cost(slot, value)
        if cost > self.max_bytes:
            return
        if slot in self._entries:
            self._drop(slot)
        self._entries[slot] = (value, self.clock() + ttl_s)
        self.size += cost
        while self.size > self.max_bytes:
            self._drop(next(iter(self._entries)))

    async def clear(self, deployment: str | None, scope: str | None) -> int:
        gone = [slot for slot in self._entries if (deployment is None or slot.deployment == deployment)
                and (scope is None or slot.scope == scope)]
        for slot in gone:
            self._drop(slot)
        return len(gone)

    def _drop(self, slot: Slot) -> None:
        value, _ = self._entries.pop(slot)
        self.size -= _cost(slot, value)


def _cost(slot: Slot, value: bytes) -> int:
    """What an entry takes, roughly: its value and key, and the dict's and tuple's overhead."""
    return len(value) + len(slot.deployment) + len(slot.scope) + len(slot.digest) + 200


def name_part(text: str) -> str:
    """A deployment's or project's name as one part of a Redis key: a digest, so that any name
    (with ``:`` or ``*`` in it) makes a key that a pattern can match exactly."""
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class RedisStore:
    """Answers in Redis, each a key with its TTL (``SET ... PX``) under ``prefix`` (the
    installation's), shared by every process on it. Redis evicts under its own
    ``maxmemory-policy``; an unreachable Redis is a miss."""

    def __init__(self, redis: RedisClient, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._outage = OutageLog("response cache", "requests are answered by their deployments, uncached")

    async def get(self, slot: Slot) -> bytes | None:
        found = await self._guarded(lambda: self.redis.command("GET", self.key(slot)))
        return found if isinstance(found, bytes) else None

    async def put(self, slot: Slot, value: bytes, ttl_s: int) -> None:
        await self._guarded(lambda: self.redis.command("SET", self.key(slot), value, "PX", ttl_s * 1000))

    async def clear(self, deployment: str | None, scope: str | None) -> int:
        pattern = (f"{self.prefix}{'*' if deployment is None else name_part(deployment)}:"
                   f"{'*' if scope is None else name_part(scope)}:*")
        gone = 0
        batch: list[bytes] = []
        async for key in self.redis.scan_iter(pattern):
            batch.append(key)
            if len(batch) >= CLEAR_BATCH:
                gone += int(await self.redis.command("UNLINK", *batch))
                batch = []
        if batch:
            gone += int(await self.redis.command("UNLINK", *batch))
        return gone

    def key(self, slot: Slot) -> str:
        return f"{self.prefix}{name_part(slot.deployment)}:{name_part(slot.scope)}:{slot.digest}"

    async def _guarded(self, command: Callable[[], Awaitable[object]]) -> object:
        try:
            found = await command()
        except (TimeoutError, OSError, RespError) as problem:
            self._outage.failed(problem)
            return None
        return found

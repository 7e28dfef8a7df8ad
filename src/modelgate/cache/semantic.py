"""The semantic cache's index: the embeddings of cached last user turns, searched by similarity.

Entries are grouped by ``Room``: the deployment, the scope (project or global) and the digest of
the conversation without its last user turn, which must match exactly. A room holds at most
``ROOM_ENTRIES`` (the oldest go first); a search compares the query's vector with every vector of
its room (rows of length 1, so a dot product is the cosine) and returns the nearest, which is a
hit at ``threshold`` or above. ``sync`` comes first and says whether the room holds anything: a
lookup in an empty room embeds nothing. The answer itself is kept in the store under its own digest: a
vector whose answer expired or was evicted finds nothing there, and is a miss.

``MemoryIndex`` keeps rooms in the process. ``RedisIndex`` keeps each room as a Redis stream
(vector and digest per entry, trimmed to ``ROOM_ENTRIES``, expiring with the cache's TTL), which
every process mirrors: a search first reads what was added since its last look (one ``XRANGE``,
usually empty) in ``sync``, then searches its mirror, so each lookup costs one round trip whatever
the room's size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from modelgate.cache.stores import name_part
from modelgate.redis_client.client import RedisClient
from modelgate.redis_client.deferred import OutageLog
from modelgate.redis_client.resp import RespError

ROOM_ENTRIES = 2000
MAX_ROOMS = 10_000  # rooms a process keeps (mirrors, for Redis), the least recently used going first

Vector = np.ndarray[Any, np.dtype[np.float32]]


@dataclass(frozen=True, slots=True)
class Room:
    deployment: str
    scope: str
    context: str  # digest of the conversation but its last user turn's text


@dataclass(slots=True)
class _Vectors:
    """One room's vectors, their answers' digests and when each expires (monotonic seconds)."""

    matrix: Vector | None = None
    digests: list[str] = field(default_factory=list)
    expires: list[float] = field(default_factory=list)
    seen: str = "0"  # RedisIndex: the id of the last stream entry mirrored
    used: float = 0.0

    def add(self, vector: Vector, digest: str, expires: float) -> None:
        row = vector.reshape(1, -1).astype(np.float32, copy=False)
        self.matrix = row if self.matrix is None else np.vstack([self.matrix, row])
        self.digests.append(digest)
        self.expires.append(expires)
        if len(self.digests) > ROOM_ENTRIES:
            cut = len(self.digests) - ROOM_ENTRIES
            self.matrix = self.matrix[cut:]
            del self.digests[:cut]
            del self.expires[:cut]

    def live(self, now: float) -> bool:
        return any(until > now for until in self.expires)

    def nearest(self, vector: Vector, now: float) -> tuple[float, str] | None:
        if self.matrix is None:
            return None
        similarity = self.matrix @ vector
        for row in np.argsort(-similarity)[:8]:  # the nearest that has not expired
            if self.expires[int(row)] > now:
                return float(similarity[row]), self.digests[int(row)]
        return None


class Index(Protocol):
    async def sync(self, room: Room) -> bool:
        """Bring ``room`` up to date; whether it holds an entry that has not expired."""

    def nearest(self, room: Room, vector: Vector) -> tuple[float, str] | None:
        """The most similar entry of ``room`` as last synced: (cosine similarity, its answer's digest)."""

    async def add(self, room: Room, vector: Vector, digest: str, ttl_s: int) -> None: ...

    async def clear(self, deployment: str | None, scope: str | None) -> None: ...


class MemoryIndex:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._rooms: dict[Room, _Vectors] = {}

    def _room(self, room: Room) -> _Vectors:
        found = self._rooms.get(room)
        if found is None:
            if len(self._rooms) >= MAX_ROOMS:
                del self._rooms[min(self._rooms, key=lambda r: self._rooms[r].used)]
            found = self._rooms[room] = _Vectors()
        found.used = self.clock()
        return found

    async def sync(self, room: Room) -> bool:
        found = self._rooms.get(room)
        return found is not None and found.live(self.clock())

    def nearest(self, room: Room, vector: Vector) -> tuple[float, str] | None:
        found = self._rooms.get(room)
        return None if found is None else found.nearest(vector, self.clock())

    async def add(self, room: Room, vector: Vector, digest: str, ttl_s: int) -> None:
        self._room(room).add(vector, digest, self.clock() + ttl_s)

    async def clear(self, deployment: str | None, scope: str | None) -> None:
        for room in [r for r in self._rooms if (deployment is None or r.deployment == deployment)
                     and (scope is None or r.scope == scope)]:
            del self._rooms[room]


class RedisIndex:
    """Rooms as Redis streams, mirrored in the process (see the module docstring)."""

    def __init__(self, redis: RedisClient, prefix: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.redis = redis
        self.prefix = prefix  # the store's: clearing its answers clears these streams with them
        self.mirror = MemoryIndex(clock)
        self._outage = OutageLog("semantic cache", "requests are answered by their deployments, uncached")

    async def sync(self, room: Room) -> bool:
        mirrored = self.mirror._room(room)
        try:
            added = await self.redis.command("XRANGE", self.key(room), "(" + mirrored.seen, "+")
        except (TimeoutError, OSError, RespError) as problem:
            self._outage.failed(problem)
            return False
        now = self.mirror.clock()
        for entry_id, fields in added or ():
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            try:
                found = np.frombuffer(values[b"v"], dtype=np.float32)
                until = now + max(0.0, float(values[b"e"]) - time.time())
                mirrored.add(found, values[b"d"].decode(), until)
            except (KeyError, ValueError):
                pass  # an entry another version wrote: skipped
            mirrored.seen = entry_id.decode()
        return mirrored.live(now)

    def nearest(self, room: Room, vector: Vector) -> tuple[float, str] | None:
        return self.mirror.nearest(room, vector)

    async def add(self, room: Room, vector: Vector, digest: str, ttl_s: int) -> None:
        key = self.key(room)
        try:
            await self.redis.pipeline(
                ("XADD", key, "MAXLEN", "~", ROOM_ENTRIES, "*", "v", vector.astype(np.float32).tobytes(),
                 "d", digest, "e", f"{time.time() + ttl_s:.3f}"),
                ("PEXPIRE", key, ttl_s * 1000))
        except (TimeoutError, OSError, RespError) as problem:
            self._outage.failed(problem)

    async def clear(self, deployment: str | None, scope: str | None) -> None:
        await self.mirror.clear(deployment, scope)  # the streams go with the store's keys (same prefix)

    def key(self, room: Room) -> str:
        return f"{self.prefix}{name_part(room.deployment)}:{name_part(room.scope)}:v:{room.context}"

"""Where answers are kept: the events' encoding, the in-process LRU (bytes-bounded, expiring), Redis
(the real server), and the semantic index in the process and in Redis."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import numpy as np
import pytest

from modelgate.cache.entries import Entry, Recording, decode, encode
from modelgate.cache.semantic import ROOM_ENTRIES, MemoryIndex, RedisIndex, Room, Vector
from modelgate.cache.stores import GLOBAL, MemoryStore, RedisStore, Slot, Store
from modelgate.redis_client.client import RedisClient
from modelgate.schema.events import Event, Finish, ReasoningDelta, Start, TextDelta, ToolCallDelta, Usage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_is_recorded_whole_and_replayed_as_it_came() -> None:
    recording = Recording(choices=2)
    events: list[Event] = [Start("gpt-4o", "chatcmpl-upstream"), ReasoningDelta("Thinking", block_start=True),
              ReasoningDelta(signature="sig"), *(TextDelta(c) for c in "Hello, world"),
              TextDelta("second", choice=1), ToolCallDelta(0, "call_1", "weather", '{"city":', choice=1),
              ToolCallDelta(0, arguments='"Oslo"}', choice=1), Finish("stop"), Usage(12, 7, 4, 0, 2)]
    for event in events:
        recording.add(event)
    assert not recording.whole  # choice 1 has not finished
    recording.add(Finish("tool_calls", choice=1, native_reason="tool_use"))
    assert recording.whole
    entry = decode(encode(Entry("openai", "gpt-4o", recording.events)))
    assert entry is not None and (entry.provider, entry.model) == ("openai", "gpt-4o")
    # Chunk for chunk as it came, but the upstream's response id (a replay is a response of its own).
    assert entry.events == [Start("gpt-4o"), *events[1:], Finish("tool_calls", choice=1, native_reason="tool_use")]
    assert entry.usage == Usage(12, 7, 4, 0, 2)
    assert decode(b"not json") is None and decode(encode(entry).replace(b"[1,", b"[99,", 1)) is None


def test_an_answer_a_content_filter_ended_is_not_whole() -> None:
    recording = Recording(choices=1)
    recording.add(TextDelta("Here is how to"))
    recording.add(Finish("content_filter"))
    assert not recording.whole


async def test_the_memory_store_keeps_to_its_bytes_and_expires_entries() -> None:
    clock = Clock()
    store = MemoryStore(max_bytes=5_000, clock=clock)
    slots = [Slot("chat", "p", f"{i:032x}") for i in range(10)]
    for slot in slots[:4]:
        await store.put(slot, b"x" * 1000, ttl_s=60)
    assert [await store.get(s) for s in slots[:4]] == [b"x" * 1000] * 4
    await store.get(slots[0])  # used: the least recently used is now slots[1]
    await store.put(slots[4], b"y" * 1000, ttl_s=60)
    assert await store.get(slots[1]) is None and await store.get(slots[0]) is not None
    assert store.size <= store.max_bytes
    await store.put(slots[5], b"z" * 10_000, ttl_s=60)  # larger than the whole store: not kept
    assert await store.get(slots[5]) is None
    clock.now += 61
    assert await store.get(slots[0]) is None and len(store) == 3  # expired, dropped when read


async def clearing(store: Store) -> None:
    for deployment in ("chat", "other"):
        for scope in ("p", "q", GLOBAL):
            await store.put(Slot(deployment, scope, secrets.token_hex(16)), b"answer", ttl_s=60)
    assert await store.clear("chat", "p") == 1
    assert await store.clear(None, "q") == 2
    assert await store.clear("other", None) == 2
    assert await store.clear(None, None) == 1  # chat's global answer


async def test_the_memory_store_clears_by_deployment_and_scope() -> None:
    await clearing(MemoryStore(max_bytes=1 << 20))


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[RedisClient]:
    client = RedisClient.from_url(redis_url)
    try:
        yield client
    finally:
        await client.close()


async def test_redis_keeps_answers_with_their_ttl_under_its_prefix(redis: RedisClient) -> None:
    prefix = f"modelgate:test-{secrets.token_hex(4)}:cache:"
    store = RedisStore(redis, prefix)
    slot = Slot("chat:with:colons*", "team a", "ab" * 16)
    await store.put(slot, b"\x00binary answer", ttl_s=30)
    assert await store.get(slot) == b"\x00binary answer"
    assert 0 < int(await redis.command("PTTL", store.key(slot))) <= 30_000
    assert store.key(slot).startswith(prefix)
    assert await store.get(Slot("chat:with:colons*", "team b", "ab" * 16)) is None
    await clearing(RedisStore(redis, f"modelgate:test-{secrets.token_hex(4)}:cache:"))


async def test_an_unreachable_redis_is_a_miss() -> None:
    unreachable = RedisClient.from_url("redis://127.0.0.1:1/0", timeout=0.2)
    try:
        store = RedisStore(unreachable, "modelgate:x:cache:")
        slot = Slot("chat", "p", "cd" * 16)
        await store.put(slot, b"answer", ttl_s=30)
        assert await store.get(slot) is None
        index = RedisIndex(unreachable, "modelgate:x:cache:")
        room = Room("chat", "p", "ef" * 16)
        await index.add(room, unit([1, 0, 0]), "a" * 32, ttl_s=30)
        assert not await index.sync(room) and index.nearest(room, unit([1, 0, 0])) is None
    finally:
        await unreachable.close()


def unit(values: list[float]) -> Vector:
    vector = np.asarray(values, dtype=np.float32)
    scaled: Vector = vector / np.linalg.norm(vector)
    return scaled


def near(found: tuple[float, str] | None) -> tuple[str, float] | None:
    """What an index found: the digest, and the similarity to three places."""
    return None if found is None else (found[1], round(found[0], 3))


async def test_the_index_finds_the_nearest_in_its_room_only() -> None:
    clock = Clock()
    index = MemoryIndex(clock)
    room, other = Room("chat", "p", "a" * 32), Room("chat", "q", "a" * 32)
    await index.add(room, unit([1, 0, 0]), "x" * 32, ttl_s=60)
    await index.add(room, unit([0, 1, 0]), "y" * 32, ttl_s=60)
    assert await index.sync(room) and not await index.sync(other)
    assert near(index.nearest(room, unit([0.9, 0.1, 0]))) == ("x" * 32, 0.994)
    assert index.nearest(other, unit([1, 0, 0])) is None
    clock.now += 61
    assert not await index.sync(room) and index.nearest(room, unit([1, 0, 0])) is None  # expired
    for i in range(ROOM_ENTRIES + 10):
        await index.add(room, unit([1, i, 0]), f"{i:032x}", ttl_s=60)
    # The oldest ten went; the nearest left is the eleventh added.
    assert near(index.nearest(room, unit([1, 0, 0]))) == (f"{10:032x}", round(1 / np.sqrt(101), 3))
    await index.clear("chat", "p")
    assert not await index.sync(room) and index.nearest(room, unit([1, 0, 0])) is None


async def test_processes_share_the_index_through_redis(redis: RedisClient) -> None:
    prefix = f"modelgate:test-{secrets.token_hex(4)}:cache:"
    one, two = RedisIndex(redis, prefix), RedisIndex(redis, prefix)
    room = Room("chat", "p", "b" * 32)
    assert not await two.sync(room)
    await one.add(room, unit([1, 0, 0]), "x" * 32, ttl_s=60)
    await one.add(room, unit([0, 0, 1]), "z" * 32, ttl_s=60)
    assert await two.sync(room) and near(two.nearest(room, unit([1, 0.05, 0]))) == ("x" * 32, 0.999)
    await one.add(room, unit([0, 1, 0]), "y" * 32, ttl_s=60)  # read by the next sync, not again from the start
    assert await two.sync(room) and near(two.nearest(room, unit([0, 1, 0]))) == ("y" * 32, 1.0)
    assert len(two.mirror._rooms[room].digests) == 3
    assert 0 < int(await redis.command("PTTL", one.key(room))) <= 60_000

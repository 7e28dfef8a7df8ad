"""A unique key prefix on the real Redis for one test, and its keys deleted afterwards."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from modelgate.redis_client import RedisClient


@asynccontextmanager
async def scratch_redis(url: str) -> AsyncIterator[tuple[RedisClient, str]]:
    """The gateway's client for limits and budgets, and a prefix no other test uses."""
    client = RedisClient.from_url(url)
    prefix = f"mgtest:{secrets.token_hex(6)}:"
    try:
        yield client, prefix
    finally:
        await client.close()
        cleaner = Redis.from_url(url)
        keys = [key async for key in cleaner.scan_iter(match=prefix + "*", count=500)]
        if keys:
            await cleaner.delete(*keys)
        await cleaner.aclose()

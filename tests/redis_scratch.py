"""A unique key prefix on the real Redis for one test, and its keys deleted afterwards."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from modelgate.limits.redis import create_redis


@asynccontextmanager
async def scratch_redis(url: str) -> AsyncIterator[tuple[Redis, str]]:
    """A fail-fast client (as the gateway makes) and a prefix no other test uses."""
    client = create_redis(url)
    prefix = f"mgtest:{secrets.token_hex(6)}:"
    try:
        yield client, prefix
    finally:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=500)]
        if keys:
            await client.delete(*keys)
        await client.aclose()

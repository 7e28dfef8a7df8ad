from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from modelgate.limits import LocalLimiter
from modelgate.limits.redis import RedisLimiter
from tests.redis_scratch import scratch_redis


@pytest.fixture(params=["local", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[LocalLimiter | RedisLimiter]:
    """The in-process limiter, and the Redis one on the real server (a fresh key prefix)."""
    if request.param == "local":
        yield LocalLimiter()
        return
    async with scratch_redis(request.getfixturevalue("redis_url")) as (client, prefix):
        limiter = RedisLimiter(client, prefix)
        yield limiter
        await limiter.close()

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from modelgate.budgets import LocalLedger
from modelgate.budgets.redis import RedisLedger
from tests.redis_scratch import scratch_redis


@pytest.fixture(params=["local", "redis"])
async def ledger(request: pytest.FixtureRequest) -> AsyncIterator[LocalLedger | RedisLedger]:
    """The in-process ledger, and the Redis one on the real server (a fresh key prefix)."""
    if request.param == "local":
        yield LocalLedger()
        return
    async with scratch_redis(request.getfixturevalue("redis_url")) as (client, prefix):
        ledger = RedisLedger(client, prefix)
        yield ledger
        await ledger.close()

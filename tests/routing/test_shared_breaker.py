"""Two gateway processes share breaker state through the real Redis."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from modelgate.routing.health import CLOSED, HALF_OPEN, OPEN
from modelgate.simulator import SimulatorThread
from tests.routing.conftest import (
    Names,
    SimControl,
    answered_by,
    client,
    providers,
    target_state,
    user,
    wait_for_state,
)
from tests.support import gateway_process

MASTER = {"authorization": "Bearer sk-master"}
COOLDOWN_S = 5


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"modelgate-test-{secrets.token_hex(4)}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
    finally:
        client.close()


def shared_config(sim_url: str, names: Names, redis_url: str, prefix: str) -> dict[str, Any]:
    def pair(name: str, first: str, second: str) -> dict[str, Any]:
        return {"name": name, "strategy": "priority", "targets": [
            {"provider": "openai", "model": first}, {"provider": "azure", "model": second}]}

    return {
        "master_key": "sk-master",
        "redis_url": redis_url,
        # A cool-down long enough that an open target is still open when the test looks at it.
        "routing": {"failures": 2, "cooldown": COOLDOWN_S, "redis_prefix": prefix},
        "providers": providers(sim_url),
        "deployments": [pair("chat", names.a, names.b), pair("chat2", names.c, names.d)],
    }


def ask(base_url: str, deployment: str) -> tuple[str, str, int]:
    raw = client(base_url, "sk-master").chat.completions.with_raw_response.create(model=deployment, messages=user())
    return answered_by(raw.headers)


def test_two_processes_share_breaker_state(sim: SimulatorThread, simctl: SimControl, names: Names,
                                           redis_url: str, redis_prefix: str) -> None:
    config = shared_config(sim.base_url, names, redis_url, redis_prefix)
    with gateway_process(config) as first:
        # A 429 with Retry-After 30 opens the target for 30 s, and the breaker is stored in Redis.
        simctl.fault(names.a, "status=429;retry_after=30", count=1)
        assert ask(first.base_url, "chat") == ("azure", names.b, 2)
        store = redis.Redis.from_url(redis_url)
        try:
            stored = store.hgetall(f"{redis_prefix}breaker:openai/{names.a}")
        finally:
            store.close()
        assert stored[b"state"] == b"open" and stored[b"reason"] == b"answered 429 with Retry-After 30s"

        # A process started now reads it at start-up: it never sends that target a request.
        with gateway_process(config) as second:
            report = httpx.get(f"{second.base_url}/health/deployments", headers=MASTER).json()
            assert (report["shared"], report["connected"]) == ("redis", True)
            assert target_state(second.base_url, "chat", names.a, MASTER) == OPEN
            assert ask(second.base_url, "chat") == ("azure", names.b, 1)
            assert simctl.served(names.a) == 1

            # The second process sees failures in a row and opens chat2's first target; the first
            # process hears of it through pub/sub and skips the target without trying it.
            simctl.fault(names.c, "status=503")
            for _ in range(2):
                assert ask(second.base_url, "chat2") == ("azure", names.d, 2)
            wait_for_state(first.base_url, "chat2", names.c, OPEN, headers=MASTER)
            assert ask(first.base_url, "chat2") == ("azure", names.d, 1)
            assert simctl.served(names.c) == 2

            # The upstream recovers; after the cool-down the first process's probe closes the
            # breaker, and the second process hears of that too.
            simctl.fault(names.c, None)
            wait_for_state(first.base_url, "chat2", names.c, HALF_OPEN, within=COOLDOWN_S + 10, headers=MASTER)
            assert ask(first.base_url, "chat2") == ("openai", names.c, 1)
            wait_for_state(second.base_url, "chat2", names.c, CLOSED, headers=MASTER)
            assert ask(second.base_url, "chat2") == ("openai", names.c, 1)

"""The GCRA limiter, in-process and on the real Redis: the same behaviour from both."""

from __future__ import annotations

import asyncio

import pytest

from modelgate.limits import Counter, LocalLimiter, anthropic_ratelimit_headers, go_duration, ratelimit_headers
from modelgate.limits.gcra import CounterState
from modelgate.limits.headers import UNLIMITED, go_duration_ms
from modelgate.limits.redis import RedisLimiter
from modelgate.redis_client import RedisClient

Limiter = LocalLimiter | RedisLimiter


def requests(limit: int, owner: str = "k1", scope: str = "key") -> Counter:
    return Counter(f"{scope[0]}:{owner}:r", limit, "requests", scope, owner)


def tokens(limit: int, owner: str = "k1", scope: str = "key") -> Counter:
    return Counter(f"{scope[0]}:{owner}:t", limit, "tokens", scope, owner)


async def test_a_full_bucket_takes_exactly_the_limit_then_refuses(limiter: Limiter) -> None:
    counter = requests(10)
    remaining = []
    for _ in range(10):
        decision = await limiter.acquire((counter,), (1,))
        assert decision.allowed
        remaining.append(decision.states[0].remaining)
    assert remaining == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    refused = await limiter.acquire((counter,), (1,))
    assert not refused.allowed
    assert refused.blocked == 0
    # One request comes back every 6 s; a little of that has passed since the first one.
    assert 5_000 < refused.retry_after_ms <= 6_000
    assert refused.states[0].remaining == 0
    assert 59_000 < refused.states[0].reset_ms <= 60_000


async def test_concurrent_requests_get_exactly_the_limit(limiter: Limiter) -> None:
    counter = requests(10)
    decisions = await asyncio.gather(*(limiter.acquire((counter,), (1,)) for _ in range(40)))
    assert sum(d.allowed for d in decisions) == 10


async def test_all_counters_are_charged_or_none(limiter: Limiter) -> None:
    key, project = requests(10), requests(2, "p1", "project")
    assert (await limiter.acquire((key, project), (1, 1))).allowed
    assert (await limiter.acquire((key, project), (1, 1))).allowed
    refused = await limiter.acquire((key, project), (1, 1))
    assert not refused.allowed
    assert refused.blocked == 1  # the project's limit
    assert refused.states[0].remaining == 8  # the key was not charged for the refused request
    assert (await limiter.acquire((key,), (1,))).states[0].remaining == 7


async def test_a_request_larger_than_the_limit_needs_a_full_bucket(limiter: Limiter) -> None:
    counter = tokens(1000)
    big = await limiter.acquire((counter,), (5000,))
    assert big.allowed  # charged as the whole limit, not refused forever
    assert big.states[0].remaining == 0
    assert not (await limiter.acquire((counter,), (1,))).allowed


async def test_corrections_give_back_or_charge_tokens(limiter: Limiter) -> None:
    counter = tokens(1000)
    assert (await limiter.acquire((counter,), (600,))).states[0].remaining == 400
    limiter.adjust([counter], [-500])  # the request used 100, not 600
    await limiter.flush()
    after_refund = await limiter.acquire((counter,), (1,))
    assert 899 <= after_refund.states[0].remaining <= 900
    limiter.adjust([counter], [2000])  # a request that used far more than it was charged for
    await limiter.flush()
    in_debt = await limiter.acquire((counter,), (1,))
    assert not in_debt.allowed
    assert in_debt.states[0].reset_ms > 60_000  # the debt takes more than a minute to pay off
    assert in_debt.retry_after_ms > 1_000


async def test_a_correction_counts_for_the_very_next_request(limiter: Limiter) -> None:
    counter = tokens(1000)
    assert (await limiter.acquire((counter,), (600,))).allowed
    limiter.adjust([counter], [-500])  # no flush: the next request's own script run carries it
    after = await limiter.acquire((counter,), (1,))
    assert 899 <= after.states[0].remaining <= 900


async def test_counters_are_independent(limiter: Limiter) -> None:
    assert (await limiter.acquire((requests(1, "a"),), (1,))).allowed
    assert not (await limiter.acquire((requests(1, "a"),), (1,))).allowed
    assert (await limiter.acquire((requests(1, "b"),), (1,))).allowed


def test_the_bucket_refills_continuously() -> None:
    now = [1000.0]
    limiter = LocalLimiter(clock=lambda: now[0])
    counter = requests(10)

    async def take() -> bool:
        return (await limiter.acquire((counter,), (1,))).allowed

    async def scenario() -> None:
        assert all([await take() for _ in range(10)])
        assert not await take()
        now[0] += 5.9
        assert not await take()
        now[0] += 0.1  # 6 s: one request's worth came back
        assert await take()
        assert not await take()
        now[0] += 60  # a minute: full again, and not more than full
        results = [await take() for _ in range(11)]
        assert results == [True] * 10 + [False]

    asyncio.run(scenario())


async def test_two_processes_share_one_limit_through_redis(redis_url: str) -> None:
    """Two limiters with their own connections stand for two gateway processes."""
    from tests.redis_scratch import scratch_redis

    async with scratch_redis(redis_url) as (client, prefix):
        other = RedisClient.from_url(redis_url)
        try:
            first, second = RedisLimiter(client, prefix), RedisLimiter(other, prefix)
            counter = requests(10)
            decisions = await asyncio.gather(*(
                (first if i % 2 else second).acquire((counter,), (1,)) for i in range(30)))
            assert sum(d.allowed for d in decisions) == 10
        finally:
            await other.close()


async def test_an_unreachable_redis_leaves_the_decision_unchecked() -> None:
    client = RedisClient.from_url("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        decision = await RedisLimiter(client).acquire((requests(1),), (1,))
    finally:
        await client.close()
    assert decision.allowed and decision.unchecked  # the stage's redis_outage decides
    assert decision.states == ()  # nothing known, so no x-ratelimit headers
    assert decision.retry_after_ms > 0  # when the circuit's probe may have found it back


@pytest.mark.parametrize(("ms", "text"), [
    (0, "0s"), (12, "12ms"), (999.6, "1s"), (1000, "1s"), (1500, "1.5s"), (59_894, "59.894s"),
    (60_000, "1m0s"), (360_000, "6m0s"), (3_600_000, "1h0m0s"), (83_909_144, "23h18m29.144s"),
])
def test_reset_times_are_go_durations_as_openai_sends_them(ms: float, text: str) -> None:
    assert go_duration(ms) == text
    assert go_duration_ms(text) == (0 if ms == 0 else round(ms))


def test_headers_report_the_tightest_counter_of_each_kind() -> None:
    counters = [requests(100), requests(10, "p1", "project"), tokens(5000), tokens(90_000, "d", "deployment")]
    states = [CounterState(100, 99, 600), CounterState(10, 3, 42_000), CounterState(5000, 4000, 12_000),
              CounterState(90_000, 80_000, 6_700)]
    assert ratelimit_headers(counters, states) == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "3",
        "x-ratelimit-reset-requests": "42s",
        "x-ratelimit-limit-tokens": "5000",
        "x-ratelimit-remaining-tokens": "4000",
        "x-ratelimit-reset-tokens": "12s",
    }
    # A kind with no limit is reported too, as unlimited: clients read all six.
    assert ratelimit_headers([requests(10)], [CounterState(10, 9, 6000)]) == {
        "x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "6s",
        "x-ratelimit-limit-tokens": str(UNLIMITED), "x-ratelimit-remaining-tokens": str(UNLIMITED),
        "x-ratelimit-reset-tokens": "0s"}


def test_anthropic_headers_name_the_limited_kinds_with_rfc_3339_resets() -> None:
    openai_headers = ratelimit_headers([tokens(5000)], [CounterState(5000, 4000, 12_500)])
    now = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    assert anthropic_ratelimit_headers(openai_headers, now) == {
        f"anthropic-ratelimit-{kind}-{part}": value
        for kind in ("tokens", "input-tokens", "output-tokens")
        for part, value in (("limit", "5000"), ("remaining", "4000"), ("reset", "2026-01-01T00:00:13Z"))
    }
    assert anthropic_ratelimit_headers({}, now) == {}
    assert go_duration_ms("soon") is None

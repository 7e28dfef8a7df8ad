"""Strategies and max_share, measured over many requests through a real gateway."""

from __future__ import annotations

import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from modelgate.simulator import SimConfig, SimulatorThread
from tests.routing.conftest import Names, SimControl, answered_by, client, providers, user
from tests.support import gateway_in_thread


def binomial_bounds(n: int, p: float, alpha: float) -> tuple[int, int]:
    """The narrowest [lo, hi] with P(X < lo) + P(X > hi) <= alpha for X ~ Binomial(n, p)."""
    def pmf(k: int) -> float:
        return math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                        + k * math.log(p) + (n - k) * math.log(1 - p))
    lo, tail = 0, 0.0
    while tail + pmf(lo) <= alpha / 2:
        tail += pmf(lo)
        lo += 1
    hi, tail = n, 0.0
    while tail + pmf(hi) <= alpha / 2:
        tail += pmf(hi)
        hi -= 1
    return lo, hi


def providers_of(base_url: str, deployment: str, requests: int) -> Counter[str]:
    api = client(base_url)
    seen: Counter[str] = Counter()
    for i in range(requests):
        raw = api.chat.completions.with_raw_response.create(model=deployment, messages=user(f"n{i}"))
        seen[raw.headers["x-modelgate-provider"]] += 1
    return seen


def test_weighted_traffic_follows_the_weights(sim: SimulatorThread, names: Names) -> None:
    config = {"providers": providers(sim.base_url), "deployments": [
        {"name": "chat", "strategy": "weighted", "targets": [
            {"provider": "openai", "model": names.a, "weight": 3},
            {"provider": "azure", "model": names.b, "weight": 1}]}]}
    n = 300
    with gateway_in_thread(config) as gateway:
        seen = providers_of(gateway.base_url, "chat", n)
    # openai's count is Binomial(300, 0.75); these bounds fail a correct router with probability
    # under 1e-6 (computed exactly), and are [187, 259]: far from 150 (equal weights)
    # and from 300 (first target only).
    lo, hi = binomial_bounds(n, 0.75, 1e-6)
    assert lo <= seen["openai"] <= hi, (seen, lo, hi)
    assert seen["openai"] + seen["azure"] == n


def test_max_share_caps_a_provider_over_the_window(sim: SimulatorThread, names: Names) -> None:
    config = {"providers": providers(sim.base_url), "deployments": [
        {"name": "chat", "strategy": "weighted", "max_share": {"openai": 0.6}, "targets": [
            {"provider": "openai", "model": names.a, "weight": 3},
            {"provider": "azure", "model": names.b, "weight": 1}]}]}
    n = 300
    with gateway_in_thread(config) as gateway:
        seen = providers_of(gateway.base_url, "chat", n)
    # The cap is never passed: openai is sent a request only while (count + 1) <= 0.6 (total + 1).
    assert seen["openai"] <= 0.6 * n
    # Below the cap openai wins each draw with p = 0.75, so the shortfall 0.6 t - count is a walk
    # with steps -0.4 (p 0.75) and +0.6 (p 0.25), reflected at the cap. Its drift is -0.15 and
    # Lundberg's bound gives P(shortfall > d) <= exp(-1.36 d): under 2e-12 for d = 20.
    # (Without max_share the count would be about 225; a share of 0.6 makes it 180.)
    assert seen["openai"] >= 0.6 * n - 20, seen


def test_latency_strategy_prefers_the_faster_target(names: Names) -> None:
    # 1 s slower: more than any stall of a loaded machine adds to the fast one's figure.
    own = SimConfig.from_dict({"api_key": "sk-sim", "models": {names.slow: {"latency_ms": 1000}}})
    with SimulatorThread(own) as sim:
        config = {"providers": providers(sim.base_url), "deployments": [
            {"name": "chat", "strategy": "latency", "targets": [
                {"provider": "openai", "model": names.slow}, {"provider": "azure", "model": names.fast}]}]}
        with gateway_in_thread(config) as gateway:
            seen = providers_of(gateway.base_url, "chat", 12)
            control = SimControl(sim)
            slow, fast = control.served(names.slow), control.served(names.fast)
    # Each target without a figure is tried once to get one; after that the fast one answers.
    assert (slow, fast) == (1, 11), seen


def test_least_busy_spreads_concurrent_requests(names: Names) -> None:
    own = SimConfig.from_dict({"api_key": "sk-sim", "defaults": {"latency_ms": 2000}})
    with SimulatorThread(own) as sim:
        config = {"providers": providers(sim.base_url), "deployments": [
            {"name": "chat", "strategy": "least-busy", "targets": [
                {"provider": "openai", "model": names.a}, {"provider": "azure", "model": names.b}]}]}
        with gateway_in_thread(config) as gateway:
            api = client(gateway.base_url)

            def one(i: int) -> str:
                raw = api.chat.completions.with_raw_response.create(model="chat", messages=user(f"n{i}"))
                return raw.headers["x-modelgate-provider"]

            with ThreadPoolExecutor(6) as pool:
                seen = Counter(pool.map(one, range(6)))
    # Six requests in flight together (each takes 2 s): the busier target is never chosen.
    assert seen == Counter({"openai": 3, "azure": 3})


def test_cost_strategy_sends_to_the_cheapest_target_that_works(
        sim: SimulatorThread, simctl: SimControl, names: Names) -> None:
    config = {"providers": providers(sim.base_url), "deployments": [
        {"name": "chat", "strategy": "cost", "targets": [
            {"provider": "openai", "model": names.dear, "input_price": 5.0, "output_price": 15.0},
            {"provider": "azure", "model": names.cheap, "input_price": 0.5, "output_price": 1.5}]}]}
    with gateway_in_thread(config) as gateway:
        seen = providers_of(gateway.base_url, "chat", 5)
        assert seen == Counter({"azure": 5})
        simctl.fault(names.cheap, "status=500", count=1)
        raw = client(gateway.base_url).chat.completions.with_raw_response.create(model="chat", messages=user())
    assert answered_by(raw.headers) == ("openai", names.dear, 2)

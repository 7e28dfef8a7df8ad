"""The circuit breaker: open after failures in a row, half-open after the cool-down, closed by a
probe that answers; and GET /health/deployments, which shows it."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any

import httpx
import openai
import pytest

from modelgate.routing.health import CLOSED, HALF_OPEN, OPEN, Health
from modelgate.schema.errors import UpstreamError
from modelgate.simulator import SimConfig, SimulatorThread
from tests.routing.conftest import (
    Names,
    SimControl,
    answered_by,
    client,
    deployment_health,
    providers,
    target_state,
    user,
    wait_for_state,
)
from tests.support import gateway_in_thread

MASTER = {"authorization": "Bearer sk-master"}
# Long enough that a target the test just saw open is still open when it asks again, however slow
# the machine; the waits for half-open take it, on purpose.
COOLDOWN_S = 3


def config(sim_url: str, names: Names) -> dict[str, Any]:
    return {
        "master_key": "sk-master",
        "routing": {"failures": 2, "cooldown": COOLDOWN_S},
        "providers": providers(sim_url),
        "deployments": [{"name": "chat", "strategy": "priority", "targets": [
            {"provider": "openai", "model": names.a, "weight": 2, "context_window": 1000},
            {"provider": "azure", "model": names.b}]}],
    }


def test_breaker_opens_goes_half_open_and_a_probe_closes_it(
        sim: SimulatorThread, simctl: SimControl, names: Names) -> None:
    simctl.fault(names.a, "status=500")
    with gateway_in_thread(config(sim.base_url, names)) as gateway:
        api = client(gateway.base_url, "sk-master")

        def ask() -> tuple[str, str, int]:
            return answered_by(api.chat.completions.with_raw_response.create(model="chat", messages=user()).headers)

        assert ask() == ("azure", names.b, 2)
        assert target_state(gateway.base_url, "chat", names.a, MASTER) == CLOSED  # one failure of two
        assert ask() == ("azure", names.b, 2)
        health = deployment_health(gateway.base_url, MASTER)["chat"]["targets"]
        assert health[0]["state"] == OPEN
        assert health[0]["reason"] == "2 failures in a row"
        assert health[0]["error_rate"] == 1.0 and health[0]["requests"] == 2
        assert "answered 500" in health[0]["last_error"]
        assert health[0]["weight"] == 2 and health[0]["context_window"] == 1000
        assert health[1]["state"] == CLOSED and health[1]["error_rate"] == 0.0
        assert health[1]["latency_ms"] > 0

        # Open: skipped, the upstream is not asked.
        assert ask() == ("azure", names.b, 1)
        assert simctl.served(names.a) == 2

        # After the cool-down one probe goes through; it fails, so the breaker opens again.
        wait_for_state(gateway.base_url, "chat", names.a, HALF_OPEN, headers=MASTER)
        assert ask() == ("azure", names.b, 2)
        assert simctl.served(names.a) == 3
        health = deployment_health(gateway.base_url, MASTER)["chat"]["targets"][0]
        assert (health["state"], health["reason"]) == (OPEN, "the half-open probe failed")
        assert ask() == ("azure", names.b, 1)

        # The upstream recovers: the next probe answers and closes the breaker.
        simctl.fault(names.a, None)
        wait_for_state(gateway.base_url, "chat", names.a, HALF_OPEN, headers=MASTER)
        assert ask() == ("openai", names.a, 1)
        assert target_state(gateway.base_url, "chat", names.a, MASTER) == CLOSED
        assert ask() == ("openai", names.a, 1)


def test_health_of_deployments_needs_the_master_key(sim: SimulatorThread, names: Names) -> None:
    with gateway_in_thread(config(sim.base_url, names)) as gateway:
        missing = httpx.get(f"{gateway.base_url}/health/deployments")
        wrong = httpx.get(f"{gateway.base_url}/health/deployments", headers={"authorization": "Bearer nope"})
        right = httpx.get(f"{gateway.base_url}/health/deployments", headers=MASTER)
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    body = right.json()
    assert body["shared"] == "local" and body["connected"] is None
    assert [t["model"] for t in body["deployments"][0]["targets"]] == [names.a, names.b]


def test_only_one_probe_at_a_time_in_half_open(names: Names) -> None:
    # Two requests reach a cooled-down target together: one probes it, the other goes elsewhere.
    # The probe takes 2 s upstream: the other request arrives while it is in flight.
    own = SimConfig.from_dict({"api_key": "sk-sim", "models": {names.a: {"latency_ms": 2000}}})
    with SimulatorThread(own) as sim, gateway_in_thread(config(sim.base_url, names)) as gateway:
        control = SimControl(sim)
        control.fault(names.a, "status=500", count=2)
        api = client(gateway.base_url, "sk-master")
        for _ in range(2):
            api.chat.completions.create(model="chat", messages=user())
        wait_for_state(gateway.base_url, "chat", names.a, HALF_OPEN, headers=MASTER)
        barrier = Barrier(2)

        def ask(_: int) -> str:
            barrier.wait()
            raw = api.chat.completions.with_raw_response.create(model="chat", messages=user())
            return raw.headers["x-modelgate-provider"]

        with ThreadPoolExecutor(2) as pool:
            seen = sorted(pool.map(ask, range(2)))
        assert seen == ["azure", "openai"]
        assert control.served(names.a) == 3  # two failures, then exactly one probe


# The state machine itself, without the network.

def test_health_state_machine() -> None:
    health = Health(failures=3, cooldown=10.0)
    target = health.target("openai", "m")
    changes: list[str] = []
    health.on_change = lambda t: changes.append(t.state)
    error = UpstreamError("boom", provider="openai", status=500)
    for now in (1.0, 2.0):
        target.failed(error, now, probe=False)
    assert target.state == CLOSED and changes == []
    target.succeeded(2.5, probe=False)  # a success in between resets the count
    for now in (3.0, 4.0, 5.0):
        target.failed(error, now, probe=False)
    assert (target.state, target.open_until, changes) == (OPEN, 15.0, [OPEN])
    assert not target.allows(14.9) and target.ready_at(14.9) == 15.0
    assert target.allows(15.0)
    assert target.begin(15.0) is True  # the probe
    assert target.state == HALF_OPEN and not target.allows(15.1)
    assert target.begin(15.1) is False and target.in_flight == 2  # forced past, not a probe
    target.release(False)
    target.committed(0.2)  # the first token is not enough: the answer must arrive whole
    assert target.state == HALF_OPEN
    target.succeeded(15.3, probe=True)
    target.release(True)
    assert (target.state, target.in_flight, changes) == (CLOSED, 0, [OPEN, CLOSED])


def test_retry_after_opens_at_once_for_that_long() -> None:
    health = Health(failures=3, cooldown=10.0)
    target = health.target("openai", "m")
    target.failed(UpstreamError("slow down", provider="openai", status=429, retry_after=2.5), 100.0, False)
    assert (target.state, target.open_until) == (OPEN, 102.5)
    assert target.reason == "answered 429 with Retry-After 2.5s"
    # A shorter Retry-After while open does not shorten the cool-down.
    target.failed(UpstreamError("again", provider="openai", status=429, retry_after=1), 100.5, False)
    assert target.open_until == 102.5


@pytest.mark.parametrize("wait", [float("nan"), float("inf"), -1.0])
def test_a_retry_after_that_is_no_finite_wait_counts_as_a_plain_failure(wait: float) -> None:
    health = Health(failures=2, cooldown=10.0)
    target = health.target("openai", "m")
    target.failed(UpstreamError("slow down", provider="openai", status=429, retry_after=wait), 100.0, False)
    assert target.state == CLOSED and target.allows(100.0)
    target.failed(UpstreamError("slow down", provider="openai", status=429, retry_after=wait), 101.0, False)
    assert (target.state, target.open_until, target.reason) == (OPEN, 111.0, "2 failures in a row")
    assert target.allows(111.0)  # the cool-down ends, and a probe goes through
    assert target.snapshot(105.0)["retry_in_s"] == 6.0


def test_a_long_retry_after_is_capped() -> None:
    health = Health(failures=3, cooldown=10.0)
    target = health.target("openai", "m")
    target.failed(UpstreamError("later", provider="openai", status=503, retry_after=1e300), 0.0, False)
    assert target.state == OPEN and target.open_until == 300.0


@pytest.mark.parametrize("left", [float("nan"), float("inf"), float("-inf")])
def test_a_transition_from_elsewhere_with_no_finite_time_is_ignored(left: float) -> None:
    health = Health(failures=3, cooldown=10.0)
    target = health.target("openai", "m")
    health.apply_remote("openai/m", OPEN, left, "their reason")
    assert target.state == CLOSED and target.open_until == 0.0
    health.apply_remote("openai/m", OPEN, 1e9, {"not": "text"})  # capped; a reason that is no text is dropped
    assert target.state == OPEN and target.reason is None
    assert target.open_until - time.monotonic() <= 300.0
    health.apply_remote("openai/m", "wedged", 5.0, None)  # not a state: ignored
    assert target.state == OPEN
    health.apply_remote("openai/m", CLOSED, float("nan"), None)
    assert target.state == CLOSED


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_close_a_half_open_breaker(status: int) -> None:
    health = Health(failures=1, cooldown=1.0)
    target = health.target("openai", "m")
    target.failed(UpstreamError("x", provider="openai", status=500), 0.0, False)
    assert target.begin(1.0) is True
    target.answered(probe=True)
    target.release(True)
    assert target.state == CLOSED


def test_the_sdk_sees_a_503_with_retry_after_when_every_target_is_cooling(
        sim: SimulatorThread, simctl: SimControl, names: Names) -> None:
    simctl.fault(names.a, "status=500")
    simctl.fault(names.b, "status=502")
    with gateway_in_thread(config(sim.base_url, names)) as gateway:
        api = client(gateway.base_url, "sk-master")
        for _ in range(2):
            with pytest.raises(openai.APIStatusError):
                api.chat.completions.create(model="chat", messages=user())
        served = simctl.served(names.a) + simctl.served(names.b)
        with pytest.raises(openai.APIStatusError) as caught:
            api.chat.completions.create(model="chat", messages=user())
    assert caught.value.status_code == 503
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "no_healthy_target"
    assert names.a in body["message"] and "2 failures in a row" in body["message"]
    # The seconds until a target may be tried again, rounded: at least 1, at most the cool-down.
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= COOLDOWN_S
    assert simctl.served(names.a) + simctl.served(names.b) == served  # nobody upstream was asked


def test_streams_that_break_after_the_first_token_open_the_breaker(
        sim: SimulatorThread, simctl: SimControl, names: Names) -> None:
    simctl.fault(names.a, "cut=4")
    with gateway_in_thread(config(sim.base_url, names)) as gateway:
        api = client(gateway.base_url, "sk-master")
        for _ in range(2):  # committed, then cut: the client sees the error event
            with pytest.raises(openai.APIError, match="broke off after it had started"):
                for _chunk in api.chat.completions.create(model="chat", messages=user(), stream=True):
                    pass
        assert target_state(gateway.base_url, "chat", names.a, MASTER) == OPEN
        with api.chat.completions.with_streaming_response.create(
                model="chat", messages=user(), stream=True) as response:
            text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
            assert answered_by(response.headers) == ("azure", names.b, 1)
        assert text.startswith(f"Simulated reply from {names.b}")

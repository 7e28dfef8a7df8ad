"""Retries and failover against the simulator's faults, one kind each, through a real gateway
driven by the openai SDK (its own retries off)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from modelgate.simulator import SimConfig, SimulatorThread
from tests.routing.conftest import Names, SimControl, answered_by, client, deployment_health, providers, user
from tests.support import RunningGateway, gateway_in_thread, refused_port


def pair(names: Names, **settings: Any) -> dict[str, Any]:
    """Deployment ``chat``: openai/<a> first, azure/<b> second (priority)."""
    return {"name": "chat", "strategy": "priority",
            "targets": [{"provider": "openai", "model": names.a}, {"provider": "azure", "model": names.b}],
            **settings}


@pytest.fixture
def gateway(sim: SimulatorThread, names: Names) -> Iterator[RunningGateway]:
    """chat = [openai/a, azure/b], retries 1, timeout 3 s (ample for any answer of a loaded machine);
    solo = openai/s, retries 2, no fallback; primary = openai/p with fallback ``backup`` = azure/f."""
    config = {
        "providers": providers(sim.base_url),
        "deployments": [
            pair(names, retries=1, timeout=3),
            {"name": "solo", "provider": "openai", "model": names.s, "retries": 2, "timeout": 5},
            {"name": "primary", "provider": "openai", "model": names.p, "retries": 2, "timeout": 5,
             "fallbacks": ["backup"]},
            {"name": "backup", "provider": "azure", "model": names.f},
        ],
    }
    with gateway_in_thread(config) as running:
        yield running


def test_500_fails_over_to_the_next_target_and_says_who_answered(
        gateway: RunningGateway, simctl: SimControl, names: Names) -> None:
    simctl.fault(names.a, "status=500", count=1)
    raw = client(gateway.base_url).chat.completions.with_raw_response.create(model="chat", messages=user())
    completion = raw.parse()
    assert answered_by(raw.headers) == ("azure", names.b, 2)
    assert raw.headers["x-modelgate-deployment"] == "chat"
    assert completion.model == names.b  # the upstream model that answered, not the deployment
    assert completion.choices[0].message.content
    assert completion.choices[0].message.content.startswith(f"Simulated reply from {names.b}")
    assert (simctl.served(names.a), simctl.served(names.b)) == (1, 1)


def test_503_is_retried_on_the_same_target_after_backoff(
        gateway: RunningGateway, simctl: SimControl, names: Names) -> None:
    simctl.fault(names.s, "status=503", count=2)
    started = time.monotonic()
    raw = client(gateway.base_url).chat.completions.with_raw_response.create(model="solo", messages=user())
    elapsed = time.monotonic() - started
    assert answered_by(raw.headers) == ("openai", names.s, 3)
    assert simctl.served(names.s) == 3
    # Two jittered backoff steps: at least 0.125 s + 0.25 s (a lower bound: a slow machine only adds).
    assert elapsed >= 0.375


def test_529_fails_over(gateway: RunningGateway, simctl: SimControl, names: Names) -> None:
    simctl.fault(names.a, "status=529")
    raw = client(gateway.base_url).chat.completions.with_raw_response.create(model="chat", messages=user())
    assert answered_by(raw.headers) == ("azure", names.b, 2)


def test_429_retry_after_is_waited_for_when_it_fits_the_deadline(
        gateway: RunningGateway, simctl: SimControl, names: Names) -> None:
    simctl.fault(names.s, "status=429;retry_after=1", count=1)
    started = time.monotonic()
    raw = client(gateway.base_url).chat.completions.with_raw_response.create(model="solo", messages=user())
    elapsed = time.monotonic() - started
    assert answered_by(raw.headers) == ("openai", names.s, 2)
    # It waited the second (how much longer depends on the machine); the answer came within the
    # deployment's 5 s deadline, or there would be none.
    assert elapsed >= 1.0


def test_retry_after_ms_is_honoured(gateway: RunningGateway, simctl: SimControl, names: Names) -> None:
    simctl.fault(names.s, "status=429;retry_after_ms=400", count=1)
    started = time.monotonic()
    raw = client(gateway.base_url).chat.completions.with_raw_response.create(model="solo", messages=user())
    elapsed = time.monotonic() - started
    assert answered_by(raw.headers) == ("openai", names.s, 2)
    assert elapsed >= 0.4  # the upstream's 0.4 s, not the backoff schedule's 0.125-0.25 s


def test_429_retry_after_past_the_deadline_goes_to_the_fallback_at_once_and_cools_the_target(
        gateway: RunningGateway, simctl: SimControl, names: Names) -> None:
    simctl.fault(names.p, "status=429;retry_after=30")
    api = client(gateway.base_url)
    started = time.monotonic()
    raw = api.chat.completions.with_raw_response.create(model="primary", messages=user())
    # No wait for 30 s against a 5 s deadline, nor for the deadline itself before falling back.
    assert time.monotonic() - started < 5.0
    assert answered_by(raw.headers) == ("azure", names.f, 2)
    assert raw.headers["x-modelgate-deployment"] == "primary"
    # The target is cooled down: the next request goes straight to the fallback.
    raw = api.chat.completions.with_raw_response.create(model="primary", messages=user())
    assert answered_by(raw.headers) == ("azure", names.f, 1)
    assert simctl.served(names.p) == 1
    target = deployment_health(gateway.base_url)["primary"]["targets"][0]
    assert target["state"] == "open"
    assert 15 < target["retry_in_s"] <= 30  # what is left of the 30 s (seconds have passed since)
    assert "Retry-After 30s" in target["reason"]


def test_429_without_a_fallback_reaches_the_client_with_its_retry_after(
        gateway: RunningGateway, simctl: SimControl, names: Names) -> None:
    simctl.fault(names.s, "status=429;retry_after=20")
    api = client(gateway.base_url)
    with pytest.raises(openai.RateLimitError) as caught:
        api.chat.completions.create(model="solo", messages=user())
    assert caught.value.response.headers["retry-after"] == "20"
    assert simctl.served(names.s) == 1  # 20 s is past the deadline: no retry
    # While it cools down the gateway answers for it, without asking the upstream.
    with pytest.raises(openai.RateLimitError) as caught:
        api.chat.completions.create(model="solo", messages=user())
    assert 10 <= int(caught.value.response.headers["retry-after"]) <= 20  # what is left of the 20 s
    assert simctl.served(names.s) == 1


def test_refused_connection_fails_over_to_the_fallback(sim: SimulatorThread, names: Names) -> None:
    with refused_port() as port:
        config = {
            "providers": providers(sim.base_url, dead={"type": "openai", "api_key": "k",
                                                       "base_url": f"http://127.0.0.1:{port}/v1"}),
            "deployments": [
                {"name": "chat", "provider": "dead", "model": names.a, "fallbacks": ["backup"]},
                {"name": "backup", "provider": "openai", "model": names.b},
            ],
        }
        with gateway_in_thread(config) as gateway:
            raw = client(gateway.base_url).chat.completions.with_raw_response.create(model="chat", messages=user())
    assert answered_by(raw.headers) == ("openai", names.b, 2)
    assert raw.parse().model == names.b


def test_timeout_before_the_first_byte_fails_over_invisibly_on_a_stream(
        gateway: RunningGateway, simctl: SimControl, names: Names) -> None:
    simctl.fault(names.a, "timeout=30", count=1)
    started = time.monotonic()
    api = client(gateway.base_url)
    with api.chat.completions.with_streaming_response.create(
            model="chat", messages=user("tell me"), stream=True) as response:
        headers = response.headers
        text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    elapsed = time.monotonic() - started
    assert answered_by(headers) == ("azure", names.b, 2)
    assert text.startswith(f"Simulated reply from {names.b} to: tell me")
    # The deployment's 3 s timeout, then the next target: long before the upstream's 30 s hang ends.
    assert 3.0 <= elapsed < 15.0


def test_stream_cut_before_the_first_token_is_invisible(
        gateway: RunningGateway, simctl: SimControl, names: Names) -> None:
    simctl.fault(names.a, "cut=1", count=1)  # the role chunk, then the connection drops
    api = client(gateway.base_url)
    with api.chat.completions.with_streaming_response.create(
            model="chat", messages=user("tell me"), stream=True) as response:
        headers = response.headers
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert answered_by(headers) == ("azure", names.b, 2)
    assert {c.model for c in chunks} == {names.b}
    assert text.startswith(f"Simulated reply from {names.b}")
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_cut_after_the_first_token_ends_with_an_error_event(
        gateway: RunningGateway, simctl: SimControl, names: Names) -> None:
    simctl.fault(names.a, "cut=4", count=1)
    api = client(gateway.base_url)
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in api.chat.completions.create(model="chat", messages=user("tell me"), stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received, "some of the answer arrived before the cut"
    assert "".join(received).startswith("Simulated reply")
    message = str(caught.value)
    assert "openai" in message and names.a in message and "broke off after it had started" in message
    assert simctl.served(names.b) == 0  # committed: no failover once the client had tokens


@pytest.mark.parametrize("stream", [False, True])
def test_malformed_upstream_body_fails_over(
        gateway: RunningGateway, simctl: SimControl, names: Names, stream: bool) -> None:
    simctl.fault(names.a, "malformed", count=1)
    api = client(gateway.base_url)
    if stream:
        with api.chat.completions.with_streaming_response.create(
                model="chat", messages=user(), stream=True) as response:
            headers = response.headers
            text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    else:
        raw = api.chat.completions.with_raw_response.create(model="chat", messages=user())
        headers, text = raw.headers, raw.parse().choices[0].message.content or ""
    assert answered_by(headers) == ("azure", names.b, 2)
    assert text.startswith(f"Simulated reply from {names.b}")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_neither_retried_nor_failed_over(
        gateway: RunningGateway, simctl: SimControl, names: Names, status: int) -> None:
    simctl.fault(names.p, f"status={status}", count=1)
    with pytest.raises(openai.APIStatusError) as caught:
        client(gateway.base_url).chat.completions.create(model="primary", messages=user())
    assert caught.value.status_code == status
    assert (simctl.served(names.p), simctl.served(names.f)) == (1, 0)
    # A client error says nothing against the target: its breaker stays closed.
    assert deployment_health(gateway.base_url)["primary"]["targets"][0]["state"] == "closed"


def test_when_nothing_answers_the_last_upstream_error_reaches_the_client(
        gateway: RunningGateway, simctl: SimControl, names: Names) -> None:
    simctl.fault(names.p, "status=500")
    simctl.fault(names.f, "status=503;message=still overloaded")
    with pytest.raises(openai.APIStatusError) as caught:
        client(gateway.base_url).chat.completions.create(model="primary", messages=user())
    assert caught.value.status_code == 503
    assert "still overloaded" in caught.value.message
    # primary: the first attempt and its 2 retries; then the fallback's one attempt.
    assert (simctl.served(names.p), simctl.served(names.f)) == (3, 1)


def test_a_prompt_too_large_for_a_target_goes_to_one_that_fits(sim: SimulatorThread, names: Names) -> None:
    config = {
        "providers": providers(sim.base_url),
        "deployments": [
            {"name": "small", "provider": "openai", "model": names.a, "context_window": 100,
             "fallbacks": ["large"]},
            {"name": "large", "provider": "azure", "model": names.b, "context_window": 4000},
            {"name": "tiny", "targets": [{"provider": "openai", "model": names.c, "context_window": 50}],
             "fallbacks": ["small"]},
        ],
    }
    prompt = "word " * 400  # about 500 tokens
    with gateway_in_thread(config) as gateway:
        api = client(gateway.base_url)
        raw = api.chat.completions.with_raw_response.create(model="small", messages=user(prompt))
        assert answered_by(raw.headers) == ("azure", names.b, 1)  # never sent to the small one
        raw = api.chat.completions.with_raw_response.create(model="small", messages=user("short"))
        assert answered_by(raw.headers) == ("openai", names.a, 1)
        with pytest.raises(openai.BadRequestError) as caught:
            api.chat.completions.create(model="tiny", messages=user(prompt))
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "context_length_exceeded"
    assert "'tiny'" in error["message"] and "openai/" + names.c + " 50" in error["message"]
    assert "openai/" + names.a + " 100" in error["message"]


def test_an_upstream_context_length_error_moves_on_to_a_larger_target(names: Names) -> None:
    # The gateway does not know this model's window; the upstream says the prompt is too long.
    small = SimConfig.from_dict({"api_key": "sk-sim", "models": {names.a: {"context_window": 20}}})
    with SimulatorThread(small) as own_sim:
        config = {"providers": providers(own_sim.base_url),
                  "deployments": [{"name": "chat", "strategy": "priority", "targets": [
                      {"provider": "openai", "model": names.a}, {"provider": "azure", "model": names.b}]}]}
        with gateway_in_thread(config) as gateway:
            raw = client(gateway.base_url).chat.completions.with_raw_response.create(
                model="chat", messages=user("word " * 100))
    assert answered_by(raw.headers) == ("azure", names.b, 2)

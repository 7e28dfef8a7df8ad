"""A hostile upstream, played by the simulator's ``x-sim-fault`` kinds, against the real gateway, on the
OpenAI and the Anthropic surface, with OpenAI-format and Anthropic-format upstreams: malformed
Retry-After values, answers that dribble or never end, errors that echo the provider's key, and
model names that cannot go into a header as they are."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from modelgate.simulator import SimConfig, SimulatorThread
from tests.support import RunningGateway, gateway_in_thread, wait_until

KEY = "hostile-provider-key-7f3a9c2e41"  # the providers' key: no shape a pattern knows, masked as configured
SURFACES = ["openai", "anthropic"]
UPSTREAMS = ["openai", "anthropic"]

# Each fault gets a provider of each upstream format whose every request carries it, and a deployment
# "<upstream>-<name>" in front of it.
FAULTS = {
    "plain": None,
    "dribble": "dribble=50",  # the status line and headers alone take seconds
    "dribble-body": "dribble_body=50",
    "endless": "endless=10",
    "echo": "echo_key=4",  # a stream has content by its fifth event
    "model-int": "model=42",
    "model-crlf": 'model="gpt\\r\\nx-evil: 1"',
    "model-cjk": 'model="\\u6a21\\u578b"',
}
SLOW = {"timeout": 1, "max_duration": 2}  # for the faults that never answer in time


@dataclass
class Answer:
    status: int
    headers: httpx.Headers
    text: str

    def json(self) -> Any:
        return orjson.loads(self.text)


@pytest.fixture(scope="module")
def hostile_sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimConfig.from_dict({})) as simulator:  # takes any key
        yield simulator


@pytest.fixture(scope="module")
def gateway(hostile_sim: SimulatorThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway,
                                                                                                       Path]]:
    folder = tmp_path_factory.mktemp("hostile")
    providers: dict[str, Any] = {}
    deployments: list[dict[str, Any]] = []
    for upstream in UPSTREAMS:
        base_url = f"{hostile_sim.base_url}/v1" if upstream == "openai" else hostile_sim.base_url
        for name, spec in FAULTS.items():
            provider = f"{upstream}-{name}"
            providers[provider] = {"type": upstream, "base_url": base_url, "api_key": KEY,
                                   "headers": {"x-sim-fault": spec} if spec else {}}
            slow = SLOW if name in ("dribble", "dribble-body", "endless") else {}
            deployments.append({"name": provider, "provider": provider, "model": f"sim-{upstream}", **slow})
    database = folder / "usage.db"
    config = {"providers": providers, "deployments": deployments, "database_url": f"sqlite:///{database}",
              "journal_dir": str(folder / "journal"),
              # Failures do not open breakers here, except where an upstream asks with Retry-After.
              "routing": {"failures": 1000, "cooldown": 0.2}}
    with gateway_in_thread(config) as running:
        yield running, database


def ask(gateway: RunningGateway, surface: str, deployment: str, stream: bool = False) -> Answer:
    """One request on ``surface``, its answer read whole (a stream to its end, however it ends)."""
    body: dict[str, Any] = {"model": deployment, "max_tokens": 20, "stream": stream,
                            "messages": [{"role": "user", "content": "Hello there"}]}
    if surface == "openai":
        url, headers = f"{gateway.base_url}/v1/chat/completions", {"authorization": "Bearer k"}
    else:
        url, headers = f"{gateway.base_url}/v1/messages", {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    with httpx.stream("POST", url, json=body, headers=headers, timeout=60) as response:
        return Answer(response.status_code, response.headers, response.read().decode())


def stream_events(answer: Answer) -> list[Any]:
    """The data of each event of a stream, as JSON ("[DONE]" as is)."""
    events = []
    for block in answer.text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line[6:]
                events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


def usage_row(database: Path, request_id: str) -> tuple[int, str | None]:
    """(status, error) of the usage record of ``request_id``, once it is written."""
    found: list[tuple[int, str | None]] = []

    def written() -> bool:
        with sqlite3.connect(database) as connection:
            found[:] = connection.execute("SELECT status, error FROM usage WHERE request_id = ?",
                                          (request_id,)).fetchall()
        return bool(found)

    wait_until(written, what="the usage record")
    return found[0]


# --- Retry-After --------------------------------------------------------------------------------------


def set_fault(sim: SimulatorThread, model: str, spec: str | None, count: int | None = None) -> None:
    httpx.post(f"{sim.base_url}/sim/faults", json={"model": model, "fault": spec, "count": count},
               timeout=5).raise_for_status()


@pytest.mark.parametrize("value", ["nan", "1e400", "-5", "not-a-date", "Sun, 99 Foo 20xx 25:61:61 GMT"])
@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("surface", SURFACES)
def test_a_retry_after_that_is_no_number_of_seconds_is_ignored_and_wedges_nothing(
        gateway: tuple[RunningGateway, Path], hostile_sim: SimulatorThread, surface: str, upstream: str,
        value: str) -> None:
    running, _ = gateway
    model = f"sim-{upstream}"
    set_fault(hostile_sim, model, f"status=429;retry_after={value}", count=1)
    try:
        refused = ask(running, surface, f"{upstream}-plain")
    finally:
        set_fault(hostile_sim, model, None)
    # The upstream's 429 reaches the client as a 429, without a Retry-After the gateway cannot state.
    assert refused.status == 429, refused.text
    assert "retry-after" not in refused.headers
    # The target stays usable: the next request goes to it and is answered.
    answered = ask(running, surface, f"{upstream}-plain")
    assert answered.status == 200, answered.text
    health = httpx.get(f"{running.base_url}/health/deployments", timeout=10).json()
    assert "NaN" not in orjson.dumps(health).decode()


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_a_retry_after_date_cools_the_target_down_until_then(
        hostile_sim: SimulatorThread, tmp_path: Path, upstream: str) -> None:
    base_url = f"{hostile_sim.base_url}/v1" if upstream == "openai" else hostile_sim.base_url
    model = f"sim-dated-{upstream}"
    config = {"providers": {"p": {"type": upstream, "base_url": base_url, "api_key": KEY}},
              "deployments": [{"name": "d", "provider": "p", "model": model}]}
    set_fault(hostile_sim, model, "status=429;retry_after=date+30", count=1)
    try:
        with gateway_in_thread(config) as running:
            refused = ask(running, "openai", "d")
            assert refused.status == 429
            assert 20 <= int(refused.headers["retry-after"]) <= 30
            # Cooling down: the gateway answers for the target without asking it.
            cooling = ask(running, "anthropic", "d")
            assert cooling.status == 429 and cooling.json()["error"]["type"] == "rate_limit_error"
            assert 20 <= int(cooling.headers["retry-after"]) <= 30
    finally:
        set_fault(hostile_sim, model, None)


# --- deadlines ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_headers_dribbled_a_byte_at_a_time_time_out_after_timeout(
        gateway: tuple[RunningGateway, Path], surface: str, upstream: str, stream: bool) -> None:
    running, _ = gateway
    answer = ask(running, surface, f"{upstream}-dribble", stream)
    # Its status line and headers alone take seconds, and each byte came well within the timeout.
    assert answer.status == 504, answer.text
    assert f"provider '{upstream}-dribble' did not answer within 1s" in answer.text


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("fault", ["dribble-body", "endless"])
def test_a_whole_answer_not_complete_within_max_duration_is_a_504(
        gateway: tuple[RunningGateway, Path], surface: str, upstream: str, fault: str) -> None:
    running, database = gateway
    answer = ask(running, surface, f"{upstream}-{fault}")
    assert answer.status == 504, answer.text
    assert "did not finish its answer within 2s, the deployment's max_duration" in answer.text
    status, error = usage_row(database, answer.headers["x-request-id"] if surface == "openai"
                              else answer.headers["request-id"])
    assert status == 504 and error is not None and "max_duration" in error


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("surface", SURFACES)
def test_a_stream_past_max_duration_ends_with_an_error_event_and_its_record_says_so(
        gateway: tuple[RunningGateway, Path], surface: str, upstream: str) -> None:
    running, database = gateway
    answer = ask(running, surface, f"{upstream}-endless", stream=True)
    assert answer.status == 200  # the stream had started
    events = stream_events(answer)
    last = events[-1]
    if surface == "openai":
        assert "[DONE]" not in events
        assert last["error"]["code"] == "upstream_timeout"
        message = last["error"]["message"]
    else:
        assert not any(isinstance(e, dict) and e.get("type") == "message_stop" for e in events)
        assert last["type"] == "error" and last["error"]["type"] == "api_error"
        message = last["error"]["message"]
    assert "did not finish its answer within 2s, the deployment's max_duration" in message
    assert len(events) > 3  # content went by before the deadline
    request_id = answer.headers["x-request-id"] if surface == "openai" else answer.headers["request-id"]
    status, error = usage_row(database, request_id)
    assert status == 504 and error is not None and "max_duration" in error


# --- errors that echo the key -------------------------------------------------------------------------


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_error_that_echoes_the_provider_key_reaches_the_client_masked(
        gateway: tuple[RunningGateway, Path], surface: str, upstream: str, stream: bool) -> None:
    running, database = gateway
    answer = ask(running, surface, f"{upstream}-echo", stream)
    assert "Incorrect API key provided: ***" in answer.text, answer.text
    assert KEY not in answer.text and KEY[:12] not in answer.text
    if stream:  # the error came mid-stream, after content
        assert answer.status == 200 and len(stream_events(answer)) > 2
    else:
        assert answer.status == 401
    request_id = answer.headers["x-request-id"] if surface == "openai" else answer.headers["request-id"]
    _, error = usage_row(database, request_id)
    assert error is not None and "***" in error and KEY[:12] not in error
    health = httpx.get(f"{running.base_url}/health/deployments", timeout=10).text
    assert KEY[:12] not in health


# --- model names ----------------------------------------------------------------------------------------

SHOWN = {"model-int": ("sim-{upstream}", "sim-{upstream}"),  # not a name: the configured one stands in
         "model-crlf": ("gptx-evil: 1", "gptx-evil: 1"),
         "model-cjk": ("%E6%A8%A1%E5%9E%8B", "\u6a21\u578b")}


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("fault", list(SHOWN))
def test_a_model_name_that_cannot_be_a_header_is_made_one(
        gateway: tuple[RunningGateway, Path], surface: str, upstream: str, stream: bool, fault: str) -> None:
    running, _ = gateway
    answer = ask(running, surface, f"{upstream}-{fault}", stream)
    assert answer.status == 200, answer.text
    header, body = (value.format(upstream=upstream) for value in SHOWN[fault])
    assert answer.headers["x-modelgate-model"] == header
    assert "x-evil" not in answer.headers
    if stream:
        first = stream_events(answer)[0]
        named = first["model"] if surface == "openai" else first["message"]["model"]
    else:
        named = answer.json()["model"]
    assert named == body


"""Local deployments made, changed and deleted through the admin API while gateways run: the real
SmolLM2 model's replicas start on every gateway process sharing the database, are replaced when
the engine settings change (requests in flight finish on the old ones), and stop on DELETE. A
model that cannot be found or loaded is a 400 at POST, and nothing is stored or left running."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from modelgate.config import parse_settings
from modelgate.engines.settings import EngineSettings
from modelgate.server.services import start_services
from modelgate.simulator import SimulatorThread
from modelgate.storage import PriceEntry, ReplicaRun, Storage
from tests.admin.test_admin_api import MASTER, check
from tests.engines.conftest import engine_children
from tests.engines.test_local_gateway import QUESTION, expected
from tests.local_models import tiny_llama
from tests.services import upgrade
from tests.support import (
    DEADLINE_S,
    RunningGateway,
    eventually,
    gateway_in_thread,
    gateway_process,
    openai_sim_config,
    wait_until,
)

MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1"
PER_REPLICA_HOUR = 3.6
LOAD_S = 60.0  # a replica's load, on a busy machine


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'modelgate.db'}"
    asyncio.run(upgrade(url))
    return url


def gateway_config(sim: SimulatorThread, database: str, **extra: Any) -> dict[str, Any]:
    config = openai_sim_config(sim.base_url, master_key="sk-master", database_url=database, **extra)
    config["providers"]["local"] = {"type": "local"}
    return config


@pytest.fixture
def pair(sim: SimulatorThread, database: str, redis_url: str) -> Iterator[list[RunningGateway]]:
    """Two gateways on one database and one Redis: two processes of one installation."""
    config = gateway_config(sim, database, redis_url=redis_url)
    with ExitStack() as stack:
        yield [stack.enter_context(gateway_in_thread(config)) for _ in range(2)]


def smol(smollm2: str, **keys: Any) -> dict[str, Any]:
    return {"name": "smol", "provider": "local", "model": smollm2, "context_window": 2048, "timeout": LOAD_S,
            **keys}


def ask(gateway: RunningGateway, max_tokens: int = 8) -> openai.types.chat.ChatCompletion:
    sdk = openai.OpenAI(base_url=gateway.v1, api_key="sk-master", max_retries=0, timeout=LOAD_S * 2)
    return sdk.chat.completions.create(model="smol", messages=[{"role": "user", "content": QUESTION}],
                                       temperature=0, max_tokens=max_tokens)


def engines(smollm2: str) -> set[int]:
    """The engine processes of this test process's gateways that serve the SmolLM2 file."""
    return {pid for pid, command in engine_children().items() if smollm2 in command}


def stored(database: str) -> tuple[list[PriceEntry], list[ReplicaRun]]:
    """The price history of deployment smol and the replica runs, as the database has them."""
    async def read() -> tuple[list[PriceEntry], list[ReplicaRun]]:
        storage = await Storage.open(database)
        try:
            return await storage.prices.history("smol"), await storage.replica_hours.runs(provider="local")
        finally:
            await storage.close()

    return asyncio.run(read())


def test_a_local_deployment_made_at_run_time_runs_on_every_gateway_until_deleted(
        pair: list[RunningGateway], smollm2: str, reference: Any, database: str) -> None:
    one, other = pair
    assert not engines(smollm2)
    admin = httpx.Client(base_url=one.base_url, headers=MASTER, timeout=LOAD_S * 2)
    created = check(admin.post("/admin/deployments", json=smol(
        smollm2, max_concurrency=2, price={"input": 1000, "output": 2000},
        compute_cost={"per_replica_hour": PER_REPLICA_HOUR})), 201, "Deployment")
    assert created["source"] == "api" and created["targets"][0]["provider"] == "local"
    # Loaded on the gateway that took the POST before it answered; on the other one a replica
    # started when the change was announced, and a request waits for it to load.
    wait_until(lambda: len(engines(smollm2)) == 2, DEADLINE_S, "a replica on each gateway")
    want = expected(reference)
    for gateway in (one, other):
        answer = ask(gateway, 12)
        assert answer.choices[0].message.content == want["text"]
        assert answer.usage is not None and answer.usage.completion_tokens == want["usage"]["completion_tokens"]
        assert answer.model == MODEL_NAME

    # The price went to the history; each gateway's uptime recorder heard of its replica.
    def recorded() -> bool:
        prices, runs = stored(database)
        return len(prices) == 1 and len([r for r in runs if r.ended_at is None]) == 2

    wait_until(recorded, DEADLINE_S, "the price and two open replica runs in the database")
    prices, runs = stored(database)
    assert (prices[0].input_price, prices[0].output_price, prices[0].model) == (1000, 2000, smollm2)
    assert {(r.model, r.per_replica_hour) for r in runs} == {(MODEL_NAME, PER_REPLICA_HOUR)}

    # A changed price is a new row of the history; the replicas stay (the engine did not change).
    running = engines(smollm2)
    check(admin.patch("/admin/deployments/smol", json={"price": {"input": 500, "output": 2000}}), 200, "Deployment")
    assert [p.input_price for p in stored(database)[0]] == [1000, 500]
    assert engines(smollm2) == running

    check(admin.delete("/admin/deployments/smol"), 200, "Deployment")
    with pytest.raises(openai.NotFoundError):
        ask(other)
    wait_until(lambda: not engines(smollm2), DEADLINE_S * 3, "both gateways' replicas stopped")
    wait_until(lambda: all(r.end_reason == "stopped" for r in stored(database)[1]), DEADLINE_S,
               "the replica runs ended as stopped")


def test_a_patch_of_the_engine_replaces_the_pools_and_requests_in_flight_finish(
        pair: list[RunningGateway], smollm2: str) -> None:
    one, other = pair
    admin = httpx.Client(base_url=one.base_url, headers=MASTER, timeout=LOAD_S * 2)
    check(admin.post("/admin/deployments", json=smol(smollm2)), 201, "Deployment")
    ask(other, 1)  # loaded there too
    old = engines(smollm2)
    assert len(old) == 2

    body = {"model": "smol", "stream": True, "max_tokens": 600, "temperature": 0,
            "messages": [{"role": "user", "content": "Write a long story about a dragon and a knight."}]}
    arrived: list[tuple[float, str]] = []  # each line of the story, when it arrived
    begun = threading.Event()

    def read_story() -> None:
        with httpx.Client(timeout=LOAD_S * 2) as http, \
                http.stream("POST", f"{one.v1}/chat/completions", json=body, headers=MASTER) as story:
            for line in story.iter_lines():
                arrived.append((time.monotonic(), line))
                begun.set()

    reader = threading.Thread(target=read_story)
    reader.start()
    assert begun.wait(LOAD_S), "the story did not begin"
    # Two replicas from now on: answered once they have loaded on this gateway, where the old
    # replica is then drained while it still writes the story.
    check(admin.patch("/admin/deployments/smol", json={"replicas": 2}), 200, "Deployment")
    switched = time.monotonic()
    reader.join(LOAD_S * 2)
    rest = "".join(line for _, line in arrived).replace(" ", "")
    assert '"finish_reason":"length"' in rest and '"error"' not in rest
    content = [at for at, line in arrived if '"content"' in line]
    assert content[-1] > switched, "the story was over before the change: nothing was in flight"
    # Each gateway: two new replicas, the old one drained and stopped.
    wait_until(lambda: len(engines(smollm2) - old) == 4 and not engines(smollm2) & old, LOAD_S,
               "two new replicas on each gateway and the old ones gone")
    for gateway in (one, other):
        answer = ask(gateway, 2)
        assert answer.usage is not None and answer.usage.completion_tokens >= 1


@pytest.fixture
def gateway(sim: SimulatorThread, database: str) -> Iterator[RunningGateway]:
    with gateway_in_thread(gateway_config(sim, database)) as running:
        yield running


@pytest.mark.parametrize(("keys", "param", "words"), [
    ({"replicas": 0}, "replicas", "must be at least 1"),
    ({"max_concurrency": 0}, "max_concurrency", "must be at least 1 request at once"),
    ({"queue": -1}, "queue", "must be 0 or more waiting requests"),
    # vLLM is not installed where these tests run (test_engine_commands.py); a GGUF under it is refused anyway.
    pytest.param({"engine": "vllm"}, "engine", "engine vllm needs the vllm package on this machine",
                 marks=pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")),
    pytest.param({"engine": "ray", "ray": {"min_replicas": 2, "max_replicas": 1}}, "ray.max_replicas",
                 "must be at least ray.min_replicas (2)",
                 marks=pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")),
    ({"engine": "tensorrt"}, "engine", "must be one of"),
    ({"device": "tpu"}, "device", "must be one of"),
    ({"context_window": 0}, "context_window", "positive number of tokens"),
    ({"compute_cost": {"per_replica_hour": -1}}, "compute_cost.per_replica_hour", "must be 0 or more"),
    ({"model": "no-such-model"}, "model", "'no-such-model' is no model in the store at"),
])
def test_a_local_deployment_is_checked_as_the_config_checks_one(gateway: RunningGateway, smollm2: str,
                                                                 keys: dict[str, Any], param: str, words: str) -> None:
    response = httpx.post(f"{gateway.base_url}/admin/deployments", headers=MASTER, json={**smol(smollm2), **keys})
    error = check(response, 400, "Error")["error"]
    assert error["param"] == param and error["code"] == "invalid_deployment"
    assert words in error["message"] and "deployments.smol." in error["message"]
    assert not engines(smollm2)


def test_a_model_that_is_not_found_names_where_it_was_looked_for(gateway: RunningGateway, tmp_path: Path) -> None:
    response = httpx.post(f"{gateway.base_url}/admin/deployments", headers=MASTER, json={
        "name": "gone", "provider": "local", "model": str(tmp_path / "missing.gguf")})
    error = check(response, 400, "Error")["error"]
    assert error["param"] == "model"
    assert f"at {tmp_path / 'missing.gguf'}" in error["message"]


def test_a_model_that_cannot_be_loaded_is_a_400_and_nothing_is_stored_or_left_running(
        gateway: RunningGateway, tmp_path: Path) -> None:
    # A GGUF whose header reads (facts, chat template) but that has no weights: llama.cpp refuses it.
    broken = str(tiny_llama(tmp_path / "no-weights.gguf"))
    admin = httpx.Client(base_url=gateway.base_url, headers=MASTER, timeout=LOAD_S * 2)
    error = check(admin.post("/admin/deployments", json={"name": "broken", "provider": "local", "model": broken}),
                  400, "Error")["error"]
    assert (error["param"], error["code"]) == ("model", "model_not_loadable")
    assert f"local model '{broken}'" in error["message"] and "cannot be loaded" in error["message"]
    assert "exited while loading the model" in error["message"]
    assert check(admin.get("/admin/deployments/broken"), 404, "Error")["error"]["code"] == "deployment_not_found"
    wait_until(lambda: not engines(broken), DEADLINE_S, "no replica of the broken model left")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _command(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_with_workers_each_runs_the_replicas_of_a_deployment_made_at_run_time(
        sim: SimulatorThread, database: str, redis_url: str, smollm2: str) -> None:
    """`modelgate serve --workers 2` from a config file, as config local deployments run: each
    worker process runs its own replicas. The 409 for a config deployment names the file."""
    config = gateway_config(sim, database, redis_url=redis_url)
    with gateway_process(config, args=["--workers", "2"]) as served:
        assert served.process is not None

        def replicas() -> list[int]:
            workers = _children(served.process.pid) if served.process is not None else []
            return [pid for worker in workers for pid in _children(worker) if "modelgate.engines." in _command(pid)]

        admin = httpx.Client(base_url=served.base_url, headers=MASTER, timeout=LOAD_S * 2)
        check(admin.post("/admin/deployments", json=smol(smollm2)), 201, "Deployment")
        wait_until(lambda: len(replicas()) == 2, LOAD_S, "a replica in each of the two workers")
        for _ in range(4):  # whichever worker takes the connection answers
            with httpx.Client(base_url=served.v1, headers=MASTER, timeout=LOAD_S * 2) as fresh:
                reply = fresh.post("/chat/completions", json={
                    "model": "smol", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]})
                assert reply.status_code == 200, reply.text

        error = check(admin.patch("/admin/deployments/gpt-4o", json={"timeout": 5}), 409, "Error")["error"]
        assert error["code"] == "deployment_from_config"
        assert re.search(r"comes from the config file /\S+/modelgate\.yaml and is read-only", error["message"])

        check(admin.delete("/admin/deployments/smol"), 200, "Deployment")
        wait_until(lambda: not replicas(), DEADLINE_S * 3, "every worker's replica stopped")


async def test_a_changed_deployment_is_served_by_its_old_replicas_until_the_new_ones_have_loaded(
        smollm2: str, database: str, tmp_path: Path) -> None:
    """Two gateways' services on one database, without Redis: the second applies the change when it
    refreshes, and routes to its new replicas only once they have loaded."""
    config = {"database_url": database, "journal_dir": str(tmp_path / "journal"),
              "providers": {"local": {"type": "local"}}}
    one = await start_services(parse_settings(config, {}))
    other = await start_services(parse_settings(config, {}))
    try:
        await one.deployment_admin.create(smol(smollm2))
        await other.deployment_sync.refresh()
        [old] = other.engines.providers["local"].pools.values()
        await old.first_load()

        def routed() -> EngineSettings | None:
            return other.router.groups["smol"].targets[0].upstream.engine

        await one.deployment_admin.update("smol", {"replicas": 2})
        await other.deployment_sync.refresh()
        # In force in the settings; routed to the old replica while the two new ones load.
        [target] = other.settings.deployments["smol"].targets
        assert target.local is not None and target.local.replicas == 2
        assert routed() == old.spec.engine and old.ready()
        await eventually(lambda: routed() == target.local, LOAD_S, "the switch to the new replicas")
        [new] = other.engines.providers["local"].pools.values()
        assert new is not old and new.ready() and len(new.replicas) == 2
        await eventually(lambda: all(r.exit_code() is not None for r in old.replicas), DEADLINE_S,
                         "the old replica drained and stopped")
    finally:
        await one.stop()
        await other.stop()

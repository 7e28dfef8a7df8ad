"""Online experiments (server/experiments.py, routing/experiment.py) over the simulator's scripted
models: ``big`` answers "Paris", ``small`` answers "Lyon", ``broken`` always answers 503 and ``slow``
takes 1.5 s to its first token; ``grader`` grades "Paris" 10 and "Lyon" 2.

The split tests drive the gateway's services in this process (hundreds of calls in seconds); the
last test goes through HTTP and ``modelgate eval report``."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from sqlalchemy import select

from modelgate.config import ConfigError, parse_settings
from modelgate.evals.report import render
from modelgate.pipeline.contract import Call, Principal
from modelgate.schema.errors import GatewayError
from modelgate.schema.events import ResultBuilder
from modelgate.server.services import Services, start_services
from modelgate.simulator import SimConfig, SimulatorThread
from modelgate.storage import Storage, tables
from modelgate.storage.evals import EvalResult
from modelgate.surfaces.openai_format.parse import parse_chat_request
from tests.support import gateway_in_thread

QUESTION = "What is the capital of France?"
CALLER = Principal(key_id="key_alice", project="acme")
MASTER = "sk-master-experiments"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    config = SimConfig.from_dict({"api_key": "sk-sim", "models": {
        "big": {"reply": "Paris"}, "small": {"reply": "Lyon"}, "broken": {"fault": "status=503"},
        "slow": {"latency_ms": 1500, "ttft_ms": 1500, "reply": "Paris, slowly"},
        "grader": {"answers": {"Answer to grade: Paris": '{"score": 10, "reasoning": "names Paris"}',
                               "Answer to grade: Lyon": '{"score": 2, "reasoning": "Lyon is not the capital"}'}}}})
    with SimulatorThread(config) as simulator:
        yield simulator


def config(sim: SimulatorThread, tmp_path: Path, experiment: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    main: dict[str, Any] = {"name": "main", "targets": [{"deployment": "big"}]}
    if experiment is not None:
        main["experiment"] = experiment
    return {"database_url": f"sqlite:///{tmp_path / 'gw.db'}", "journal_dir": str(tmp_path / "journal"),
            "providers": {"sim": {"type": "openai", "base_url": f"{sim.base_url}/v1", "api_key": "sk-sim"}},
            "deployments": [
                {"name": "big", "provider": "sim", "model": "big", "input_price": 5, "output_price": 15},
                {"name": "small", "provider": "sim", "model": "small", "input_price": 0.5, "output_price": 1.5},
                {"name": "broken", "provider": "sim", "model": "broken", "input_price": 1, "output_price": 1},
                {"name": "slow", "provider": "sim", "model": "slow", "input_price": 1, "output_price": 1},
                {"name": "grader", "provider": "sim", "model": "grader", "input_price": 1, "output_price": 1},
                {"name": "embed", "provider": "sim", "model": "text-embedding-3-small"},
                main], **extra}


@asynccontextmanager
async def gateway(sim: SimulatorThread, tmp_path: Path, experiment: dict[str, Any]) -> AsyncIterator[Services]:
    services = await start_services(parse_settings(config(sim, tmp_path, experiment), {}, source="test"))
    try:
        yield services
    finally:
        await services.stop()


async def ask(services: Services, *, stream: bool = False) -> tuple[Call, str]:
    body: dict[str, Any] = {"model": "main", "messages": [{"role": "user", "content": QUESTION}], "stream": stream}
    call = Call(request_id="req_" + secrets.token_hex(12), request=parse_chat_request(body),
                deployment=services.deployment("main", CALLER), principal=CALLER, route="chat")
    builder = ResultBuilder()
    async for event in services.handler(call):
        builder.add(event)
    built = builder.finish()
    return call, built.choices[0].text if built.choices else ""


async def results(tmp_path: Path, run: str = "experiment:main") -> list[EvalResult]:
    storage = await Storage.open_prepared(f"sqlite:///{tmp_path / 'gw.db'}")
    try:
        found = await storage.evals.get(run)
        assert found is not None, f"no run {run}"
        return await storage.evals.results(found.id)
    finally:
        await storage.close()


async def usage(tmp_path: Path) -> list[Any]:
    """Every usage record, as stored."""
    storage = await Storage.open_prepared(f"sqlite:///{tmp_path / 'gw.db'}")
    try:
        async with storage.db.read() as conn:
            return list((await conn.execute(select(tables.usage))).all())
    finally:
        await storage.close()


def test_an_experiment_is_checked_with_the_key_path_of_each_problem(sim: SimulatorThread, tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"target": {"deployment": "small"}, "share": 1.5}, "deployments.main.experiment.share: must be a share"),
        ({"target": {"deployment": "nope"}, "share": 0.1},
         "deployments[6].experiment.target.deployment: 'nope' is not another deployment"),
        ({"target": {"provider": "elsewhere", "model": "m"}, "share": 0.1},
         "deployments.main.experiment.target.provider: 'elsewhere' is not a configured provider"),
        ({"target": {"deployment": "small"}}, "deployments.main.experiment.share: is required"),
        ({"target": {"deployment": "small"}, "share": 0.1, "scorer": "judge:nobody"},
         "deployments.main.experiment.scorer: 'nobody' is not a deployment"),
        ({"target": {"deployment": "small"}, "share": 0.1, "scorer": "exact"},
         "deployments.main.experiment.scorer: must be judge:DEPLOYMENT or similarity:DEPLOYMENT"),
        ({"target": {"deployment": "small"}, "share": 0.1, "scorer": "similarity:embed"},
         "similarity compares the copy's answer with the main one, so it needs shadow: true"),
        ({"target": {"deployment": "small"}, "share": 0.1, "rubric": "names Paris"},
         "deployments.main.experiment.rubric: is what a judge grades by"),
        ({"target": {"deployment": "small"}, "share": 0.1, "shadows": True},
         "deployments.main.experiment.shadows: unknown key"),
        ({"share": 0.1}, "deployments.main.experiment.target: is required"),
    ]
    for experiment, said in cases:
        with pytest.raises(ConfigError) as refused:
            parse_settings(config(sim, tmp_path, experiment), {}, source="test")
        assert said in str(refused.value), (experiment, str(refused.value))
    settings = parse_settings(config(sim, tmp_path, {"target": {"deployment": "small"}, "share": 0.1,
                                                     "scorer": "judge:grader", "rubric": "names Paris"}),
                              {}, source="test")
    made = settings.deployments["main"].experiment
    assert made is not None and made.target.model == "small" and made.target.deployment == "small"
    assert made.target.facts.input_price == 0.5 and not made.shadow and made.max_in_flight == 16


async def test_split_sends_its_share_to_the_experiment_says_which_and_keeps_both_arms(
        sim: SimulatorThread, tmp_path: Path) -> None:
    share, total = 0.25, 400
    arms: Counter[str] = Counter()
    async with gateway(sim, tmp_path, {"target": {"deployment": "small"}, "share": share,
                                       "scorer": "judge:grader", "rubric": "names the capital of France"}) as services:
        for _ in range(total // 20):
            answered = await asyncio.gather(*(ask(services, stream=i % 2 == 0) for i in range(20)))
            for call, text in answered:
                arm = call.response_headers["x-modelgate-experiment"]
                arms[arm] += 1
                assert (text, call.upstream_model) == (("Lyon", "small") if arm == "treatment" else ("Paris", "big"))
    # Binomial(400, 0.25): mean 100, sd 8.7; 65..135 is four sd either way.
    assert 65 <= arms["treatment"] <= 135, arms
    assert arms["treatment"] + arms["control"] == total
    rows = await results(tmp_path)
    by_arm = Counter(r.deployment for r in rows)
    assert by_arm["small"] == arms["treatment"], by_arm  # every treatment answer is kept
    assert 65 <= by_arm["big"] <= 135, by_arm  # and as many control answers, sampled
    assert set(by_arm) == {"big", "small"}
    for row in rows:
        assert row.error is None and row.question == QUESTION and row.request_id
        assert row.latency_ms > 0 and row.input_tokens > 0 and row.output_tokens > 0
        assert row.output == ("Lyon" if row.deployment == "small" else "Paris")
        assert row.scores["judge"]["score"] == (0.2 if row.deployment == "small" else 1.0)
        assert row.scoring_price > 0
    assert all(r.ttft_ms is not None for r in rows if r.latency_ms and r.ttft_ms) and any(r.ttft_ms for r in rows)
    # Each arm priced as its own target: small costs a tenth of big per token.
    price = {arm: sum(r.price for r in rows if r.deployment == arm) / by_arm[arm] for arm in by_arm}
    assert price["small"] == pytest.approx(price["big"] / 10, rel=0.01)
    records = await usage(tmp_path)
    routes = Counter(r.route for r in records)
    assert routes["chat"] == total and routes["scoring"] == len(rows)
    assert {(r.deployment, r.model) for r in records if r.route == "chat"} == {("main", "big"), ("main", "small")}
    assert all(r.project == "acme" and r.key_id == "key_alice" for r in records)


async def test_a_failing_treatment_falls_back_to_the_deployment_and_says_so(sim: SimulatorThread,
                                                                           tmp_path: Path) -> None:
    async with gateway(sim, tmp_path, {"target": {"deployment": "broken"}, "share": 1.0}) as services:
        for stream in (False, True, False):
            call, text = await ask(services, stream=stream)
            assert text == "Paris" and call.upstream_model == "big"
            assert call.response_headers["x-modelgate-experiment"] == "control"
            assert "the experiment's target broken failed (503" in call.response_headers[
                "x-modelgate-experiment-fallback"]
            assert call.attempts == 2
    rows = await results(tmp_path)
    assert [r.deployment for r in rows] == ["broken"] * 3
    assert all(r.error is not None and "503" in r.error and r.output == "" for r in rows)
    run = await _run(tmp_path)
    report = orjson.loads(render(run, rows, "json"))
    assert report["deployments"][0]["deployment"] == "broken" and report["deployments"][0]["errors"] == 3


async def test_shadow_copies_are_scored_never_returned_and_pair_with_the_main_answer(sim: SimulatorThread,
                                                                                      tmp_path: Path) -> None:
    async with gateway(sim, tmp_path, {"target": {"deployment": "small"}, "share": 1.0, "shadow": True,
                                       "scorer": "similarity:embed"}) as services:
        for stream in (False, True, False, True):
            call, text = await ask(services, stream=stream)
            assert text == "Paris" and call.upstream_model == "big"
            assert "x-modelgate-experiment" not in call.response_headers
    rows = await results(tmp_path)
    pairs: dict[int, dict[str, EvalResult]] = {}
    for row in rows:
        pairs.setdefault(row.item, {})[row.deployment] = row
    assert len(pairs) == 4 and all(set(pair) == {"big", "small"} for pair in pairs.values())
    for pair in pairs.values():
        assert pair["big"].output == "Paris" and pair["small"].output == "Lyon"
        assert pair["big"].scores["similarity"]["score"] is None
        similarity = pair["small"].scores["similarity"]
        assert 0 <= similarity["score"] <= 1 and similarity["detail"].startswith("cosine")
    records = await usage(tmp_path)
    shadows = [r for r in records if r.route == "shadow"]
    assert len(shadows) == 4 and all((r.project, r.key_id, r.deployment, r.model) == ("acme", "key_alice", "main",
                                                                                      "small") for r in shadows)
    assert all(r.price > 0 for r in shadows)
    assert Counter(r.route for r in records)["scoring"] == 4  # the embedder's calls, one per copy


async def test_a_failing_or_slow_shadow_never_reaches_the_client(sim: SimulatorThread, tmp_path: Path) -> None:
    async with gateway(sim, tmp_path, {"target": {"deployment": "broken"}, "share": 1.0, "shadow": True}) as services:
        for stream in (False, True):
            call, text = await ask(services, stream=stream)
            assert text == "Paris" and call.record is not None and call.record.status == 200
    rows = await results(tmp_path)
    assert Counter(r.deployment for r in rows) == {"big": 2, "broken": 2}
    assert all("503" in (r.error or "") for r in rows if r.deployment == "broken")

    slow = tmp_path / "slow"
    slow.mkdir()
    async with gateway(sim, slow, {"target": {"deployment": "slow"}, "share": 1.0, "shadow": True,
                                   "max_in_flight": 2}) as services:
        experiments = services.experiments
        assert experiments is not None
        started = time.monotonic()
        for _ in range(6):
            _, text = await ask(services)
            assert text == "Paris"
        assert time.monotonic() - started < 1.2  # no answer waited for a copy (each takes 1.5 s)
        assert experiments.dropped_shadows == 4 and experiments.shadows["main"] == 2
        assert "modelgate_experiment_dropped_shadows 4" in services.metrics_text()
    # Stopping waited for the two copies in flight: both pairs are kept, the dropped ones not at all.
    assert Counter(r.deployment for r in await results(slow)) == {"big": 2, "slow": 2}


async def _run(tmp_path: Path) -> Any:
    storage = await Storage.open_prepared(f"sqlite:///{tmp_path / 'gw.db'}")
    try:
        return await storage.evals.get("experiment:main")
    finally:
        await storage.close()


def test_over_http_the_report_and_the_admin_api_show_both_arms(sim: SimulatorThread, tmp_path: Path) -> None:
    body = config(sim, tmp_path, {"target": {"deployment": "small"}, "share": 0.5, "scorer": "judge:grader"},
                  master_key=MASTER)
    headers = {"authorization": f"Bearer {MASTER}"}
    seen: Counter[str] = Counter()
    with gateway_in_thread(body) as gw:
        for i in range(24):
            answer = httpx.post(f"{gw.v1}/chat/completions", headers=headers, timeout=30, json={
                "model": "main", "messages": [{"role": "user", "content": QUESTION}], "stream": i % 3 == 0})
            assert answer.status_code == 200, answer.text
            arm = answer.headers["x-modelgate-experiment"]
            seen[arm] += 1
            assert answer.headers["x-modelgate-model"] == ("small" if arm == "treatment" else "big")
        deadline = time.monotonic() + 20
        while True:  # the results are written behind the requests
            shown = httpx.get(f"{gw.base_url}/admin/evals/experiment:main", headers=headers, timeout=10)
            if (shown.status_code == 200 and shown.json()["answers"] == 24) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert shown.status_code == 200, shown.text
        run = shown.json()
        assert run["answers"] == 24 and run["deployments"] == ["big", "small"] and run["scorers"] == ["judge:grader"]
        summary = {s["deployment"]: s for s in run["deployments_summary"]}
        assert set(summary) == {"big", "small"}
        assert summary["big"]["answers"] == seen["control"] and summary["small"]["answers"] == seen["treatment"]
        assert summary["big"]["quality"] == 1.0 and summary["small"]["quality"] == 0.2
        listed = httpx.get(f"{gw.base_url}/admin/evals", headers=headers, timeout=10).json()["data"]
        assert [r["name"] for r in listed] == ["experiment:main"]
    path = tmp_path / "modelgate.yaml"
    path.write_text(yaml.safe_dump(body))
    done = subprocess.run([sys.executable, "-m", "modelgate", "eval", "report", "experiment:main", "--config",
                           str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    table = {line.split("|")[1].strip(): line for line in done.stdout.splitlines() if line.startswith("| ")}
    assert table["big"].split("|")[2].strip() == "1.000" and table["small"].split("|")[2].strip() == "0.200"
    assert "Online experiment on deployment `main`" in done.stdout and "treatment `small`" in done.stdout


def test_a_gateway_error_is_what_the_client_gets_when_both_arms_fail(sim: SimulatorThread, tmp_path: Path) -> None:
    body = config(sim, tmp_path, {"target": {"deployment": "broken"}, "share": 1.0})
    body["deployments"][-1] = {"name": "main", "targets": [{"deployment": "slow"}], "timeout": 0.3,
                               "max_duration": 0.3, "experiment": {"target": {"deployment": "broken"}, "share": 1.0}}

    async def run() -> None:
        services = await start_services(parse_settings(body, {}, source="test"))
        try:
            with pytest.raises(GatewayError):
                await ask(services)
        finally:
            await services.stop()

    asyncio.run(run())
    rows = asyncio.run(results(tmp_path))
    assert [r.deployment for r in rows] == ["broken"] and "503" in (rows[0].error or "")

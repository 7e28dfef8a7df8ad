"""The admin API's evaluation runs on a running gateway: runs made by `modelgate eval run` in
another process on the gateway's database, over scripted models whose right scores are known
(strong knows both answers, weak neither exactly), listed with their progress, reported per
deployment and per tag, their results a page at a time, and per dataset a leaderboard. Every
answer is checked against the admin OpenAPI document."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from modelgate.simulator import SimConfig, SimulatorThread
from modelgate.storage import Storage
from modelgate.storage.evals import EvalRun
from tests.admin.test_admin_api import check
from tests.support import gateway_in_thread

MASTER = {"authorization": "Bearer mk-evals"}
SCRIPTS = {"strong": {"capital of France": "Paris", "2+2": "4"},
           "weak": {"capital of France": "Lyon, I think", "2+2": "The answer is 4"}}
ITEMS = [{"id": "capital", "input": "What is the capital of France?", "expected": "Paris", "tags": ["geo"]},
         {"id": "sum", "input": "What is 2+2?", "expected": "4", "tags": ["math"]}]


@dataclass
class World:
    admin: httpx.Client
    sha256: str
    other_sha256: str
    runs: dict[str, str]  # name → id


def eval_config(sim_url: str, folder: Path) -> dict[str, Any]:
    """The config the gateway and `modelgate eval run` share: one database."""
    return {"master_key": "mk-evals", "database_url": f"sqlite:///{folder / 'gw.db'}",
            "journal_dir": str(folder / "journal"),
            "providers": {"sim": {"type": "openai", "base_url": f"{sim_url}/v1", "api_key": "sk-sim"}},
            "deployments": [
                {"name": "strong", "provider": "sim", "model": "strong", "input_price": 5, "output_price": 15},
                {"name": "weak", "provider": "sim", "model": "weak", "input_price": 0.5, "output_price": 1.5}]}


def write_dataset(path: Path, items: list[dict[str, Any]]) -> str:
    raw = b"\n".join(orjson.dumps(item) for item in items) + b"\n"
    path.write_bytes(raw)
    return hashlib.sha256(raw).hexdigest()


def eval_run(config: Path, data: Path, deployments: str, name: str) -> None:
    done = subprocess.run([sys.executable, "-m", "modelgate", "eval", "run", str(data), "--config", str(config),
                           "--deployments", deployments, "--scorers", "exact,contains", "--name", name],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def store_pending_run(url: str, sha256: str, dataset: Path) -> str:
    """A run that has started and answered nothing yet (newest of all)."""
    async def start() -> str:
        storage = await Storage.open(url)
        try:
            run, _ = await storage.evals.start(EvalRun(name="pending", dataset=str(dataset), dataset_sha256=sha256,
                                                       items=2, deployments=["strong"], scorers=["exact"]))
            return run.id
        finally:
            await storage.close()
    return asyncio.run(start())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("evals-api")
    models = {name: {"answers": answers} for name, answers in SCRIPTS.items()}
    with SimulatorThread(SimConfig.from_dict({"api_key": "sk-sim", "models": models})) as sim:
        config = eval_config(sim.base_url, folder)
        path = folder / "modelgate.yaml"
        path.write_text(yaml.safe_dump(config))
        data, other = folder / "data.jsonl", folder / "other.jsonl"
        sha256, other_sha256 = write_dataset(data, ITEMS), write_dataset(other, ITEMS[1:])
        with gateway_in_thread(config) as gateway:
            # Made while the gateway runs: it reads what another process writes.
            eval_run(path, data, "strong,weak", "r1")
            eval_run(path, other, "strong", "other")
            eval_run(path, data, "weak", "r2")
            store_pending_run(config["database_url"], sha256, data)
            with httpx.Client(base_url=gateway.base_url, headers=MASTER, timeout=30) as admin:
                listed = admin.get("/admin/evals").json()["data"]
                yield World(admin, sha256, other_sha256, {run["name"]: run["id"] for run in listed})


def test_the_runs_newest_first_with_how_far_each_has_got(world: World) -> None:
    runs = check(world.admin.get("/admin/evals"), 200, "EvalRunList")["data"]
    assert [r["name"] for r in runs] == ["pending", "r2", "other", "r1"]
    by = {r["name"]: r for r in runs}
    r1 = by["r1"]
    assert (r1["status"], r1["answers"], r1["expected"], r1["progress"]) == ("done", 4, 4, 1.0)
    assert (r1["deployments"], r1["scorers"], r1["items"], r1["repeats"], r1["project"]) == (
        ["strong", "weak"], ["exact", "contains"], 2, 1, "evals")
    assert r1["dataset_sha256"] == world.sha256 and r1["dataset"].endswith("data.jsonl")
    assert r1["id"].startswith("run_") and r1["created_at"].endswith("Z") and r1["updated_at"] >= r1["created_at"]
    assert (by["r2"]["answers"], by["r2"]["expected"]) == (2, 2)
    pending = by["pending"]
    assert (pending["status"], pending["answers"], pending["expected"], pending["progress"]) == ("running", 0, 2, 0.0)

    only = check(world.admin.get("/admin/evals", params={"dataset": world.sha256.upper()}), 200, "EvalRunList")
    assert [r["name"] for r in only["data"]] == ["pending", "r2", "r1"]
    other = world.admin.get("/admin/evals", params={"dataset": world.other_sha256}).json()["data"]
    assert [r["name"] for r in other] == ["other"]
    for bad in ("abc", "g" * 64, world.sha256 + "0"):
        refused = check(world.admin.get("/admin/evals", params={"dataset": bad}), 400, "Error")
        assert refused["error"]["param"] == "dataset"
    assert check(world.admin.get("/admin/evals", params={"colour": "red"}), 400, "Error")["error"]["param"] == "colour"


def test_a_runs_report_per_deployment_and_per_tag(world: World) -> None:
    report = check(world.admin.get("/admin/evals/r1"), 200, "EvalRunReport")
    assert (report["name"], report["answers"], report["progress"], report["status"]) == ("r1", 4, 1.0, "done")
    strong, weak = report["deployments_summary"]  # ranked by quality
    assert strong["deployment"] == "strong" and weak["deployment"] == "weak"
    assert strong["quality"] == 1.0 and strong["pass_rate"] == {"mean": 1.0, "low": 1.0, "high": 1.0, "n": 2}
    assert strong["scores"]["exact"] == {"mean": 1.0, "low": 1.0, "high": 1.0, "n": 2}
    # weak: never exact; "4" is in "The answer is 4", "Paris" is not in "Lyon, I think".
    assert weak["scores"]["exact"]["mean"] == 0.0
    assert weak["scores"]["contains"] == {"mean": 0.5, "low": 0.0, "high": 1.0, "n": 2}
    assert weak["quality"] == 0.25 and weak["pass_rate"]["mean"] == 0.0
    assert (strong["answers"], strong["errors"], weak["answers"], weak["errors"]) == (2, 0, 2, 0)
    assert strong["cost_per_1k_items"] > weak["cost_per_1k_items"] > 0
    assert strong["cost_per_1k_items"] == pytest.approx(strong["cost_per_item"] * 1000, rel=1e-3)
    assert strong["latency_ms"]["p50"] > 0 and strong["latency_ms"]["p95"] >= strong["latency_ms"]["p50"]
    # Per tag: the dataset file is where the run read it, unchanged.
    assert set(report["tags"]) == {"geo", "math"}
    geo = {s["deployment"]: s for s in report["tags"]["geo"]}
    math = {s["deployment"]: s for s in report["tags"]["math"]}
    assert geo["strong"]["quality"] == 1.0 and geo["weak"]["quality"] == 0.0
    assert math["weak"]["scores"]["contains"]["mean"] == 1.0 and math["weak"]["answers"] == 1
    # By id the same; a run in progress has no summary yet.
    assert world.admin.get(f"/admin/evals/{world.runs['r1']}").json() == report
    pending = check(world.admin.get("/admin/evals/pending"), 200, "EvalRunReport")
    assert pending["deployments_summary"] == [] and pending["status"] == "running"

    missing = check(world.admin.get("/admin/evals/nope"), 404, "Error")["error"]
    assert "'nope'" in missing["message"] and missing["code"] == "eval_run_not_found"
    assert check(world.admin.get("/admin/evals/" + "x" * 201), 400, "Error")["error"]["param"] == "run"


def test_a_runs_results_a_page_at_a_time(world: World) -> None:
    page = check(world.admin.get("/admin/evals/r1/results"), 200, "EvalResultPage")
    assert (page["total"], page["limit"], page["offset"]) == (4, 100, 0)
    assert [(r["item"], r["deployment"]) for r in page["data"]] == [(0, "strong"), (0, "weak"), (1, "strong"),
                                                                    (1, "weak")]
    first = page["data"][0]
    assert first["output"] == "Paris" and first["repeat"] == 0 and first["error"] is None
    assert first["scores"]["exact"] == {"score": 1.0, "passed": True, "detail": "exact"}
    assert first["request_id"] and first["input_tokens"] > 0 and first["output_tokens"] > 0
    assert first["latency_ms"] > 0 and first["ttft_ms"] is not None and first["price"] > 0
    assert first["tool_calls"] == [] and first["scoring_price"] == 0
    assert page["data"][1]["scores"]["contains"]["passed"] is False

    second = check(world.admin.get("/admin/evals/r1/results", params={"limit": 1, "offset": 1}), 200,
                   "EvalResultPage")
    assert [(r["item"], r["deployment"]) for r in second["data"]] == [(0, "weak")] and second["total"] == 4
    past = world.admin.get("/admin/evals/r1/results", params={"offset": 10}).json()
    assert past["data"] == [] and past["total"] == 4
    by_id = world.admin.get(f"/admin/evals/{world.runs['r1']}/results", params={"limit": 1000}).json()
    assert by_id["data"] == page["data"]

    for name, value in (("limit", "0"), ("limit", "1001"), ("limit", "ten"), ("offset", "-1"), ("offset", "1.5")):
        refused = check(world.admin.get("/admin/evals/r1/results", params={name: value}), 400, "Error")["error"]
        assert refused["param"] == name and value in refused["message"]
    check(world.admin.get("/admin/evals/nope/results"), 404, "Error")


def test_leaderboards_per_dataset(world: World) -> None:
    datasets = check(world.admin.get("/admin/evals/leaderboards"), 200, "EvalDatasetList")["data"]
    assert [(d["name"], d["dataset_sha256"], d["runs"], d["items"]) for d in datasets] == [
        ("data.jsonl", world.sha256, 3, 2), ("other.jsonl", world.other_sha256, 1, 1)]

    board = check(world.admin.get(f"/admin/evals/leaderboards/{world.sha256}"), 200, "Leaderboard")
    assert (board["dataset"], board["runs"], board["finished_runs"]) == ("data.jsonl", 3, 2)
    strong, weak = board["data"]
    # Each deployment from the most recent finished run that asked it: the pending run does not count.
    assert (strong["rank"], strong["deployment"], strong["run"]["name"]) == (1, "strong", "r1")
    assert (weak["rank"], weak["deployment"], weak["run"]["name"]) == (2, "weak", "r2")
    assert (strong["quality"], strong["pass_rate"], weak["quality"], weak["pass_rate"]) == (1.0, 1.0, 0.25, 0.0)
    assert strong["run"]["id"] == world.runs["r1"] and strong["run"]["scorers"] == ["exact", "contains"]
    assert strong["cost_per_1k_items"] > weak["cost_per_1k_items"] > 0 and strong["latency_p50_ms"] > 0
    assert (strong["answers"], weak["answers"], weak["errors"]) == (2, 2, 0)
    # The report of the run it came from says the same.
    r1 = world.admin.get("/admin/evals/r1").json()["deployments_summary"][0]
    assert (r1["quality"], r1["cost_per_1k_items"], r1["latency_ms"]["p50"]) == (
        strong["quality"], strong["cost_per_1k_items"], strong["latency_p50_ms"])

    other = check(world.admin.get(f"/admin/evals/leaderboards/{world.other_sha256}"), 200, "Leaderboard")
    assert [(e["deployment"], e["quality"]) for e in other["data"]] == [("strong", 1.0)]
    missing = check(world.admin.get(f"/admin/evals/leaderboards/{'0' * 64}"), 404, "Error")["error"]
    assert missing["code"] == "eval_dataset_not_found"
    bad = check(world.admin.get("/admin/evals/leaderboards/nope"), 400, "Error")["error"]
    assert bad["param"] == "dataset_sha256"


def test_only_the_master_key_reads_them(world: World) -> None:
    created = world.admin.post("/admin/keys", json={"project": "team-evals"})
    key = created.json()["key"]
    paths = ["/admin/evals", "/admin/evals/r1", "/admin/evals/r1/results", "/admin/evals/leaderboards",
             f"/admin/evals/leaderboards/{world.sha256}"]
    base = str(world.admin.base_url).rstrip("/")
    for path in paths:
        refused = check(httpx.get(base + path, headers={"authorization": f"Bearer {key}"}, timeout=10), 403, "Error")
        assert refused["error"]["code"] == "master_key_required", path
        assert httpx.get(base + path, timeout=10).status_code == 401

"""The shipped dataset (datasets/tasks.jsonl): it loads, its script writes it again byte for byte,
and `modelgate eval router` on it, over the simulator's scripted models and the shipped gateway
config, finds the savings docs/evals.md reports."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson

from modelgate.evals.dataset import load_dataset
from modelgate.simulator import SimConfig, SimulatorThread

DATASETS = Path(__file__).resolve().parents[2] / "datasets"
KINDS = {"arithmetic", "capitals", "units", "classification", "json", "tools", "extraction"}
WRITTEN = ("tasks.jsonl", "tasks-sim.yaml", "tasks-gateway.yaml", "tasks-gateway-local.yaml")


def test_the_dataset_loads_with_every_kind() -> None:
    dataset = load_dataset(DATASETS / "tasks.jsonl")
    lines = (DATASETS / "tasks.jsonl").read_bytes().splitlines()
    assert len(dataset.items) == len(lines) >= 400
    assert len({item.id for item in dataset.items}) == len(dataset.items)
    assert len({item.question for item in dataset.items}) == len(dataset.items)  # the simulator's keys
    kinds = Counter(tag for item in dataset.items for tag in item.tags)
    assert set(kinds) == KINDS and min(kinds.values()) >= 40, kinds


def test_the_script_writes_the_same_files(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(DATASETS / "make_tasks.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for name in WRITTEN:
        assert (tmp_path / name).read_bytes() == (DATASETS / name).read_bytes(), f"{name} differs: run make_tasks.py"


def test_the_router_keeps_the_best_quality_for_less(tmp_path: Path) -> None:
    with SimulatorThread(SimConfig.from_file(DATASETS / "tasks-sim.yaml")) as simulator:
        # The shipped config as it is: its SQLite file and journal land in the working folder.
        done = subprocess.run([sys.executable, "-m", "modelgate", "eval", "router", str(DATASETS / "tasks.jsonl"),
                               "--config", str(DATASETS / "tasks-gateway.yaml"), "--deployment", "router",
                               "--holdout", "0.3", "--scorers", "exact,numeric,json_schema,tool_call,regex", "--json"],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path,
                              env={**os.environ, "SIM_PORT": str(simulator.port)})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "datasets-run.db").exists()
    study = orjson.loads(done.stdout)
    assert (study["best"], study["cheapest"]) == ("large", "small")
    policies = {p["policy"]: p for p in study["policies"]}
    best, router = policies["always best"], policies["router"]
    assert best["picks"] == {"large": study["held_out_items"]}
    assert abs(router["quality"] - best["quality"]) <= 0.02
    assert policies["always cheapest"]["quality"] < best["quality"] - 0.2
    assert study["savings"]["share"] > 0.30 and study["savings"]["interval"][0] > 0
    assert set(router["picks"]) == {"large", "medium", "small"}

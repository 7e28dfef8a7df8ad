"""`modelgate eval` end to end: runs over the simulator's scripted models (which know different
things, so the right result is known), every scorer, the progress it prints, the results stored,
the run's cost on the usage report under its project, a run killed halfway and resumed, reports in
Markdown, HTML and JSON, and a comparison of two runs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from modelgate.simulator import SimConfig, SimulatorThread
from modelgate.storage import Storage, UsageFilters
from tests.support import wait_until

SCRIPTS = {
    "strong": {"capital of France": "Paris", "2+2": "4", "JSON person": '{"name": "Ada", "age": 36}'},
    "weak": {"capital of France": "Lyon, I think", "2+2": "The answer is 4", "JSON person": '{"name": "Ada"}'},
}
ITEMS: list[dict[str, Any]] = [
    {"id": "capital", "messages": [{"role": "user", "content": "What is the capital of France?"}],
     "expected": "Paris", "tags": ["geo"], "rubric": "names Paris"},
    {"id": "sum", "messages": [{"role": "user", "content": "What is 2+2?"}], "expected": "4", "tags": ["math"]},
    {"id": "person", "input": "Give a JSON person", "tags": ["json"],
     "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": {
         "type": "object", "required": ["name", "age"],
         "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}}}},
]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    config = SimConfig.from_dict({"api_key": "sk-sim", "models": {
        "strong": {"answers": SCRIPTS["strong"]}, "weak": {"answers": SCRIPTS["weak"]},
        "grader": {"reply": '{"score": 9, "reasoning": "it names the right city"}'},
        "slow": {"ttft_ms": 400, "reply": "4"}}})
    with SimulatorThread(config) as simulator:
        yield simulator


def config(sim: SimulatorThread, tmp_path: Path) -> Path:
    v1 = f"{sim.base_url}/v1"
    body = {"database_url": f"sqlite:///{tmp_path / 'gw.db'}", "journal_dir": str(tmp_path / "journal"),
            "providers": {"sim": {"type": "openai", "base_url": v1, "api_key": "sk-sim"}},
            "deployments": [
                {"name": "strong", "provider": "sim", "model": "strong", "input_price": 5, "output_price": 15},
                {"name": "weak", "provider": "sim", "model": "weak", "input_price": 0.5, "output_price": 1.5},
                {"name": "grader", "provider": "sim", "model": "grader", "input_price": 1, "output_price": 1},
                {"name": "slow", "provider": "sim", "model": "slow", "input_price": 1, "output_price": 1},
                {"name": "embed", "provider": "sim", "model": "text-embedding-3-small"}]}
    path = tmp_path / "modelgate.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def dataset(tmp_path: Path, items: list[dict[str, Any]], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"\n".join(orjson.dumps(item) for item in items) + b"\n")
    return path


def modelgate(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "modelgate", *args], capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def stored(url: str) -> Any:
    async def read() -> Any:
        storage = await Storage.open(url)
        try:
            run = await storage.evals.get("r1")
            assert run is not None
            results = await storage.evals.results(run.id)
            usage = await storage.query_usage(UsageFilters(project="evals"), ["deployment"])
            return run, results, usage
        finally:
            await storage.close()
    return asyncio.run(read())


def test_a_run_scores_every_answer_and_reports_it(sim: SimulatorThread, tmp_path: Path) -> None:
    path = config(sim, tmp_path)
    data = dataset(tmp_path, ITEMS)
    done = modelgate("eval", "run", str(data), "--config", str(path), "--deployments", "strong,weak",
                     "--scorers", "exact,contains,numeric,json_schema,judge:grader,similarity:embed",
                     "--name", "r1", "--concurrency", "3")
    # Progress on stderr (a line each tenth when not a terminal), a summary on stdout.
    assert "6/6 answers · 0 errors" in done.stderr and "ETA" in done.stderr
    assert "run r1" in done.stdout and "done" in done.stdout
    run, results, usage = stored(f"sqlite:///{tmp_path / 'gw.db'}")
    assert run.status == "done" and run.items == 3 and len(results) == 6
    by = {(r.item, r.deployment): r for r in results}
    assert by[(0, "strong")].output == "Paris" and by[(0, "strong")].scores["exact"] == {
        "score": 1.0, "passed": True, "detail": "exact"}
    assert by[(0, "weak")].scores["exact"]["passed"] is False and by[(0, "weak")].scores["contains"]["passed"] is False
    assert by[(1, "weak")].scores["numeric"]["passed"] is True and by[(1, "weak")].scores["exact"]["passed"] is False
    assert by[(2, "strong")].scores["json_schema"]["passed"] is True
    weak_json = by[(2, "weak")].scores["json_schema"]
    assert weak_json["passed"] is False and "age" in weak_json["detail"]
    assert by[(0, "strong")].scores["judge"] == {"score": 0.9, "passed": True, "detail": "it names the right city"}
    assert by[(0, "strong")].scores["similarity"]["score"] == pytest.approx(1.0)  # the same text as expected
    assert all(r.latency_ms > 0 and r.ttft_ms is not None and r.input_tokens > 0 and r.request_id for r in results)
    assert by[(0, "strong")].price > by[(0, "weak")].price > 0 and by[(0, "strong")].scoring_price > 0
    # Metered under the run's project: the answers, the judge's and the embedder's calls.
    requests = {row.deployment: row.requests for row in usage}
    assert requests["strong"] == 3 and requests["weak"] == 3 and requests["grader"] == 6 and requests["embed"] == 4

    report = modelgate("eval", "report", "r1", "--config", str(path), "--format", "json").stdout
    body = orjson.loads(report)
    ranked = {d["deployment"]: d for d in body["deployments"]}
    assert ranked["strong"]["quality"] > ranked["weak"]["quality"]
    assert ranked["strong"]["pass_rate"]["mean"] == 1.0 and ranked["weak"]["pass_rate"]["mean"] == 0.0
    assert ranked["strong"]["cost_per_1k_items"] > ranked["weak"]["cost_per_1k_items"] > 0
    assert set(body["tags"]) == {"geo", "math", "json"}
    markdown = modelgate("eval", "report", "r1", "--config", str(path)).stdout
    assert "| strong |" in markdown and "## Tag `math`" in markdown
    html_file = tmp_path / "r1.html"
    modelgate("eval", "report", "r1", "--config", str(path), "--format", "html", "--out", str(html_file))
    page = html_file.read_text()
    assert page.count("<svg") == 2 and "Quality against cost" in page and "<td>strong</td>" in page


def test_a_killed_run_resumes_where_it_stopped(sim: SimulatorThread, tmp_path: Path) -> None:
    path = config(sim, tmp_path)
    data = dataset(tmp_path, [{"id": str(i), "input": f"What is {i}+{4 - i}?", "expected": "4"} for i in range(20)])
    command = [sys.executable, "-m", "modelgate", "eval", "run", str(data), "--config", str(path),
               "--deployments", "slow", "--scorers", "exact", "--name", "r1", "--concurrency", "2"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"sqlite:///{tmp_path / 'gw.db'}"

    def answered() -> int:
        try:
            return len(stored(url)[1])
        except Exception:  # the run's tables are not there yet
            return 0

    wait_until(lambda: answered() >= 4, what="a few answers stored")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    kept = answered()
    assert 4 <= kept < 20
    started = time.monotonic()
    again = modelgate(*command[3:])
    progress = [line for line in again.stderr.splitlines() if line.startswith("[")]
    assert f"{kept}/20 answers" in progress[0]  # it starts from what was stored
    run, results, usage = stored(url)
    assert run.status == "done" and len(results) == 20 and {r.item for r in results} == set(range(20))
    # Every answer asked is metered, those the kill cut short included (the journal keeps them).
    assert usage[0].requests >= 20
    assert time.monotonic() - started < 60
    # The same name with another dataset is refused, not mixed in.
    other = dataset(tmp_path, [{"input": "x", "expected": "y"}], "other.jsonl")
    refused = modelgate("eval", "run", str(other), "--config", str(path), "--deployments", "slow", "--scorers",
                        "exact", "--name", "r1", check=False)
    assert refused.returncode == 2 and "another --name" in refused.stderr


def test_compare_shows_the_items_that_changed(sim: SimulatorThread, tmp_path: Path) -> None:
    path = config(sim, tmp_path)
    before = dataset(tmp_path, ITEMS[:2], "before.jsonl")
    after = dataset(tmp_path, [ITEMS[0], {**ITEMS[1], "expected": "5"}], "after.jsonl")
    for name, data in (("v1", before), ("v2", after)):
        modelgate("eval", "run", str(data), "--config", str(path), "--deployments", "strong", "--scorers", "exact",
                  "--name", name)
    shown = modelgate("eval", "compare", "v1", "v2", "--config", str(path))
    assert "1 item(s) changed, 0 better, 1 worse" in shown.stdout and "item 1 on strong: 1.00 → 0.00" in shown.stdout
    changed = orjson.loads(modelgate("eval", "compare", "v1", "v2", "--config", str(path), "--json").stdout)
    assert [(c["item"], c["before"], c["after"]) for c in changed["changed"]] == [(1, 1.0, 0.0)]
    missing = modelgate("eval", "compare", "v1", "nope", "--config", str(path), check=False)
    assert missing.returncode == 2 and "no run named 'nope'" in missing.stderr


def test_mistakes_are_named_before_anything_runs(sim: SimulatorThread, tmp_path: Path) -> None:
    path = config(sim, tmp_path)
    data = dataset(tmp_path, ITEMS)
    for args, said in ((["--deployments", "nope", "--scorers", "exact"], "no deployment 'nope'"),
                       (["--deployments", "strong", "--scorers", "judge"], "judge:DEPLOYMENT"),
                       (["--deployments", "strong", "--scorers", "vibes"], "unknown scorer 'vibes'")):
        done = modelgate("eval", "run", str(data), "--config", str(path), *args, check=False)
        assert done.returncode == 2 and said in done.stderr, done.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a"}\nnot json\n')
    done = modelgate("eval", "run", str(bad), "--config", str(path), "--deployments", "strong", "--scorers", "exact",
                     check=False)
    assert done.returncode == 2 and "bad.jsonl:2: not JSON" in done.stderr

"""Own compute: a local deployment of the real SmolLM2 model with a price and a compute_cost,
whose statement shows its replicas' hours, their cost and the revenue its requests were charged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import openai
import pytest
import yaml

from tests.support import gateway_in_thread

PER_REPLICA_HOUR = 3.6  # USD: a thousandth of a dollar a second


def test_a_local_deployments_statement_shows_replica_time_its_cost_and_revenue(smollm2: str, tmp_path: Path) -> None:
    config = {"database_url": f"sqlite:///{tmp_path / 'modelgate.db'}", "journal_dir": str(tmp_path / "journal"),
              "providers": {"local": {"type": "local"}},
              "deployments": [{"name": "smol", "provider": "local", "model": smollm2, "context_window": 2048,
                               "timeout": 60, "replicas": 2, "price": {"input": 1000.0, "output": 2000.0},
                               "compute_cost": {"per_replica_hour": PER_REPLICA_HOUR}}]}
    with gateway_in_thread(config) as gateway:
        client = openai.OpenAI(base_url=gateway.v1, api_key="none", max_retries=0)
        answer = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "Hi"}],
                                                temperature=0, max_tokens=8)
        assert answer.usage is not None
        tokens = (answer.usage.prompt_tokens, answer.usage.completion_tokens)
    # The gateway has stopped: its replicas' ends are written.
    path = tmp_path / "modelgate.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "modelgate", "statements", "--config", str(path), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [local] = json.loads(done.stdout)["data"]
    [line] = local["lines"]
    assert (local["provider"], line["deployments"], line["requests"]) == ("local", ["smol"], 1)
    # The price per million tokens is charged for a local deployment as for an API one; the
    # provider's token cost is nothing (no catalog price is invented for it).
    assert line["revenue"] == round((tokens[0] * 1000.0 + tokens[1] * 2000.0) / 1e6, 8)
    assert line["cost"] == 0.0
    assert line["replica_hours"] > 0 and line["per_replica_hour"] == PER_REPLICA_HOUR
    assert line["compute_cost"] == pytest.approx(line["replica_hours"] * PER_REPLICA_HOUR, abs=1e-5)
    assert local["total"] == line["compute_cost"]
    table = subprocess.run([sys.executable, "-m", "modelgate", "statements", "--config", str(path)],
                           capture_output=True, text=True, timeout=120).stdout
    assert "replica-hours x USD 3.6/h" in table and "own compute" in table
    # The usage report shows the same own compute beside the usage, for the installation only:
    # a replica's time is charged to no project.
    usage = subprocess.run([sys.executable, "-m", "modelgate", "usage", "--config", str(path), "--json"],
                           capture_output=True, text=True, timeout=120)
    assert usage.returncode == 0, usage.stderr
    report = json.loads(usage.stdout)
    [compute] = report["compute"]
    assert (compute["provider"], compute["model"], compute["runs"]) == ("local", line["model"], 2)
    assert (compute["replica_hours"], compute["compute_cost"]) == (line["replica_hours"], line["compute_cost"])
    assert report["totals"]["requests"] == 1
    of_project = subprocess.run([sys.executable, "-m", "modelgate", "usage", "--config", str(path), "--json",
                                 "--project", "default"], capture_output=True, text=True, timeout=120)
    assert json.loads(of_project.stdout)["compute"] is None
    shown = subprocess.run([sys.executable, "-m", "modelgate", "usage", "--config", str(path)],
                           capture_output=True, text=True, timeout=120).stdout
    assert "Own compute (local models' replicas):" in shown and "REPLICA_HOURS" in shown

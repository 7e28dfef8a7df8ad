"""Usage reports and provider statements, through the admin API and the CLI alike."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelgate.simulator import SimulatorThread
from modelgate.storage import ReplicaRun, Storage, UsageRecord
from tests.support import RunningGateway, gateway_in_thread, openai_sim_config

MASTER = {"authorization": "Bearer sk-master"}
JAN31 = datetime(2030, 1, 31, 12, tzinfo=UTC)


def usage(request_id: str, at: datetime, **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "project": "p", "key_id": "key_a", "deployment": "gpt-4o", "provider": "openai", "model": "gpt-4o",
        "route": "chat", "input_tokens": 1000, "cached_input_tokens": 200, "output_tokens": 100,
        "cost": 0.002, "price": 0.003, "latency_ms": 50.0, "status": 200, "attempts": 1}
    values.update(fields)
    return UsageRecord(request_id=request_id, created_at=at, **values)


RECORDS = [
    usage("r1", JAN31),
    usage("r2", JAN31 + timedelta(hours=1), status=500, cost=0.0, price=0.0, output_tokens=0),
    usage("r3", JAN31 + timedelta(hours=3), deployment="grok-3-mini", provider="xai", model="grok-3-mini",
          cost=0.01, price=0.02, reasoning_tokens=40),
    usage("r4", JAN31 + timedelta(days=1), project="q", key_id="key_q", cost=0.004, price=0.004),
    usage("r5", JAN31 + timedelta(days=31), project="q", key_id="key_q"),  # in March
    usage("r6", JAN31, provider=None, model=None, status=429, cost=0.0, price=0.0, input_tokens=0,
          cached_input_tokens=0, output_tokens=0),
]


async def write(url: str, records: list[UsageRecord]) -> None:
    storage = await Storage.open(url)
    try:
        await storage.write_usage(records)
    finally:
        await storage.close()


@pytest.fixture
def config_file(sim: SimulatorThread, migrated_database_url: str, tmp_path: Path) -> Path:
    asyncio.run(write(migrated_database_url, RECORDS))
    path = tmp_path / "modelgate.yaml"
    path.write_text(yaml.safe_dump(openai_sim_config(sim.base_url, master_key="sk-master",
                                                     database_url=migrated_database_url)))
    return path


@pytest.fixture
def gateway(config_file: Path) -> Iterator[RunningGateway]:
    with gateway_in_thread(yaml.safe_load(config_file.read_text())) as running:
        yield running


def modelgate(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "modelgate", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def report(gateway: RunningGateway, **params: str) -> Any:
    response = httpx.get(f"{gateway.base_url}/admin/usage", params=params, headers=MASTER)
    assert response.status_code == 200, response.text
    return response.json()


def test_usage_totals_filters_and_groups(gateway: RunningGateway) -> None:
    everything = report(gateway)
    assert everything["data"] == [everything["totals"]]
    assert everything["totals"] == {
        "requests": 6, "errors": 2, "input_tokens": 5000, "cached_input_tokens": 1000, "cache_write_tokens": 0,
        "reasoning_tokens": 40, "output_tokens": 400, "cost": 0.018, "revenue": 0.03, "margin": 0.012,
        "cache_hits": 0, "saved": 0.0}

    by_day = report(gateway, group_by="day", since="2030-01-01", until="2030-03-01")
    assert [(r["day"], r["requests"]) for r in by_day["data"]] == [("2030-01-31", 4), ("2030-02-01", 1)]
    assert by_day["filters"]["since"] == "2030-01-01T00:00:00Z"

    by_project = report(gateway, group_by="project,key", period="2030-01")
    assert [(r["project"], r["key"], r["requests"], r["revenue"], r["margin"]) for r in by_project["data"]] == [
        ("p", "key_a", 4, 0.023, 0.011)]

    by_provider = report(gateway, group_by="provider,model", project="p")
    assert [(r["provider"], r["model"], r["cost"]) for r in by_provider["data"]] == [
        ("openai", "gpt-4o", 0.002), ("xai", "grok-3-mini", 0.01), (None, None, 0.0)]
    only = report(gateway, deployment="grok-3-mini", provider="xai", key="key_a", model="grok-3-mini")
    assert only["totals"]["requests"] == 1 and only["totals"]["reasoning_tokens"] == 40
    assert report(gateway, project="nobody")["data"] == []


def test_usage_as_csv(gateway: RunningGateway) -> None:
    response = httpx.get(f"{gateway.base_url}/admin/usage", headers=MASTER,
                         params={"group_by": "project", "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="usage.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == ["project", "requests", "errors", "input_tokens", "cached_input_tokens",
                             "cache_write_tokens", "reasoning_tokens", "output_tokens", "cost", "revenue", "margin",
                             "cache_hits", "saved"]
    assert [(r["project"], r["requests"], r["cost"]) for r in rows] == [("p", "4", "0.012"), ("q", "2", "0.006")]


def test_statements_show_what_each_provider_is_owed(gateway: RunningGateway) -> None:
    response = httpx.get(f"{gateway.base_url}/admin/statements", params={"period": "2030-01"}, headers=MASTER)
    assert response.status_code == 200
    statements = response.json()["data"]
    assert [(s["provider"], s["requests"], s["total"], s["since"], s["until"]) for s in statements] == [
        ("openai", 2, 0.002, "2030-01-01T00:00:00Z", "2030-02-01T00:00:00Z"),
        ("xai", 1, 0.01, "2030-01-01T00:00:00Z", "2030-02-01T00:00:00Z")]
    assert statements[1]["lines"] == [{
        "model": "grok-3-mini", "deployments": ["grok-3-mini"], "requests": 1, "input_tokens": 1000,
        "cached_input_tokens": 200, "cache_write_tokens": 0, "reasoning_tokens": 40, "output_tokens": 100,
        "cost": 0.01, "revenue": 0.02, "cache_hits": 0, "saved": 0.0, "replica_hours": None, "per_replica_hour": None,
        "compute_cost": None}]
    assert (statements[1]["revenue"], statements[1]["compute_cost"]) == (0.02, None)
    one = httpx.get(f"{gateway.base_url}/admin/statements", headers=MASTER,
                    params={"provider": "openai", "since": "2030-02-01", "format": "csv"})
    assert [(r["provider"], r["model"], r["requests"], r["cost"]) for r in csv.DictReader(io.StringIO(one.text))] == [
        ("openai", "gpt-4o", "2", "0.006")]


def test_statements_show_own_compute_beside_the_revenue_of_local_deployments(
        gateway: RunningGateway, migrated_database_url: str) -> None:
    async def store() -> None:
        storage = await Storage.open(migrated_database_url)
        try:
            await storage.write_usage([usage("l1", JAN31, deployment="smol", provider="local", model="smollm2",
                                             cost=0.0, price=0.5)])
            await storage.replica_hours.start(ReplicaRun(
                id="run_1", provider="local", model="smollm2", replica=0, process="h:1", per_replica_hour=0.8,
                started_at=JAN31 - timedelta(hours=2), heartbeat_at=JAN31))
            await storage.replica_hours.end("run_1", JAN31 + timedelta(hours=1), "stopped")
            await storage.replica_hours.start(ReplicaRun(  # no compute_cost, its gateway crashed after 30 min
                id="run_2", provider="local", model="idle", replica=0, process="h:1", per_replica_hour=None,
                started_at=JAN31, heartbeat_at=JAN31 + timedelta(minutes=30)))
        finally:
            await storage.close()

    asyncio.run(store())
    response = httpx.get(f"{gateway.base_url}/admin/statements", headers=MASTER,
                         params={"provider": "local", "since": "2030-01-31T11:00:00Z", "until": "2030-02-01"})
    [local] = response.json()["data"]
    assert (local["provider"], local["requests"], local["revenue"], local["compute_cost"], local["total"]) == (
        "local", 1, 0.5, 1.6, 1.6)
    assert [(line["model"], line["deployments"], line["requests"], line["revenue"], line["replica_hours"],
             line["per_replica_hour"], line["compute_cost"]) for line in local["lines"]] == [
        ("idle", [], 0, 0.0, 0.5, None, None), ("smollm2", ["smol"], 1, 0.5, 2.0, 0.8, 1.6)]
    as_csv = httpx.get(f"{gateway.base_url}/admin/statements", headers=MASTER,
                       params={"provider": "local", "period": "2030-01", "format": "csv"})
    assert [(r["model"], r["replica_hours"], r["compute_cost"]) for r in csv.DictReader(io.StringIO(as_csv.text))] \
        == [("idle", "0.5", ""), ("smollm2", "3.0", "2.4")]


def test_report_mistakes_are_400s_naming_the_parameter(gateway: RunningGateway) -> None:
    for params, param in [
        ({"group_by": "colour"}, "group_by"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2030-02-01", "until": "2030-01-01"}, "until"),
        ({"period": "2030"}, "period"),
        ({"format": "xml"}, "format"),
        ({"team": "a"}, "team"),
    ]:
        response = httpx.get(f"{gateway.base_url}/admin/usage", params=params, headers=MASTER)
        assert response.status_code == 400, params
        assert response.json()["error"]["param"] == param


# The CLI shares the queries tested above on both databases; one is enough for its own part.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_cli_prints_what_the_api_answers(gateway: RunningGateway, config_file: Path) -> None:
    config = ["--config", str(config_file)]
    api_csv = httpx.get(f"{gateway.base_url}/admin/usage", headers=MASTER,
                        params={"group_by": "provider,day", "since": "2030-01-31", "format": "csv"}).text
    assert modelgate("usage", *config, "--group-by", "provider,day", "--since", "2030-01-31", "--csv") == api_csv
    api_json = report(gateway, project="p", group_by="key")
    assert json.loads(modelgate("usage", *config, "--project", "p", "--group-by", "key", "--json")) == api_json
    table = modelgate("usage", *config, "--group-by", "project").splitlines()
    assert table[0].split() == ["PROJECT", "REQUESTS", "ERRORS", "INPUT_TOKENS", "CACHED_INPUT_TOKENS",
                                "CACHE_WRITE_TOKENS", "REASONING_TOKENS", "OUTPUT_TOKENS", "COST", "REVENUE",
                                "MARGIN", "CACHE_HITS", "SAVED"]
    assert table[-1].split()[:2] == ["TOTAL", "6"]
    statements = httpx.get(f"{gateway.base_url}/admin/statements", params={"period": "2030-01"}, headers=MASTER)
    assert json.loads(modelgate("statements", *config, "--period", "2030-01", "--json")) == statements.json()
    assert "xai: 1 requests, USD 0.010000 owed; USD 0.020000 charged" in modelgate(
        "statements", *config, "--period", "2030-01")

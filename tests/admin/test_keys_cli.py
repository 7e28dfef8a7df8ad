"""The CLI against running gateway processes: `modelgate db`, `modelgate keys`, and keys that stop
working on every process the moment they are revoked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from modelgate.simulator import SimulatorThread
from tests.support import RunningGateway, gateway_process, openai_sim_config


def modelgate(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "modelgate", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == code, (done.stdout, done.stderr)
    return done


def chat(gateway: RunningGateway, key: str) -> str:
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    return reply.choices[0].message.content or ""


def write_config(path: Path, config: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_postgresql_is_served_only_after_db_upgrade(sim: SimulatorThread, postgres_url: str, tmp_path: Path) -> None:
    config = openai_sim_config(sim.base_url, database_url=postgres_url)
    path = write_config(tmp_path / "modelgate.yaml", config)
    assert "pending  001_initial" in modelgate("db", "status", "--config", path, code=1).stdout
    with pytest.raises(RuntimeError, match=r"run `modelgate db upgrade"), gateway_process(config):
        pass
    assert "applied 001_initial" in modelgate("db", "upgrade", "--config", path).stdout
    assert "was up to date" in modelgate("db", "upgrade", "--config", path).stdout
    assert modelgate("db", "status", "--config", path).stdout.split() == [
        "applied", "001_initial", "applied", "002_usage_daily", "applied", "003_responses",
        "applied", "004_deployments", "applied", "005_replica_hours", "applied", "006_safety",
        "applied", "007_request_log", "applied", "008_evals", "applied", "009_cache"]
    with gateway_process(config) as gateway:
        assert chat(gateway, "anything")  # no master key: open


def test_the_demo_makes_its_sqlite_database_itself() -> None:
    with gateway_process(args=["--demo"]) as gateway:
        assert chat(gateway, "demo")
        assert httpx.get(f"{gateway.base_url}/admin/keys").json() == {"object": "list", "data": []}


def test_cli_keys_work_at_once_and_stop_at_once_on_every_gateway(
        sim: SimulatorThread, migrated_database_url: str, redis_url: str, tmp_path: Path) -> None:
    config = openai_sim_config(sim.base_url, master_key="sk-master", database_url=migrated_database_url,
                               redis_url=redis_url)
    path = write_config(tmp_path / "modelgate.yaml", config)
    with gateway_process(config) as a, gateway_process(config) as b:
        created = modelgate("keys", "create", "--config", path, "--project", "p", "--deployments", "gpt-4o",
                            "--rpm", "100", "--budget", "5", "--json")
        issued = json.loads(created.stdout)
        assert {"id", "key", "project"} <= set(issued) and issued["project"] == "p"
        assert "2 of 2 running gateway process(es) applied the change" in created.stderr
        assert chat(a, issued["key"]) and chat(b, issued["key"])

        listed = json.loads(modelgate("keys", "list", "--config", path, "--json").stdout)["data"]
        assert [(k["id"], k["deployments"], k["rpm"], k["budget"]) for k in listed] == [
            (issued["id"], ["gpt-4o"], 100, 5.0)]
        assert issued["key"] not in modelgate("keys", "list", "--config", path).stdout

        modelgate("keys", "revoke", issued["id"], "--config", path)
        for gateway in (a, b):
            with pytest.raises(openai.AuthenticationError):
                chat(gateway, issued["key"])

        # The same through the admin API of one process, seen by the other at once.
        admin = httpx.Client(base_url=a.base_url, headers={"authorization": "Bearer sk-master"})
        second = admin.post("/admin/keys", json={"project": "p"}).json()
        assert chat(b, second["key"])
        assert admin.delete(f"/admin/keys/{second['id']}").status_code == 200
        with pytest.raises(openai.AuthenticationError):
            chat(b, second["key"])
        assert [k["status"] for k in admin.get("/admin/keys?include_revoked=true").json()["data"]] == [
            "revoked", "revoked"]


def test_cli_mistakes_name_the_fix(sim: SimulatorThread, tmp_path: Path) -> None:
    config = openai_sim_config(sim.base_url, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    path = write_config(tmp_path / "modelgate.yaml", config)
    unknown = modelgate("keys", "create", "--config", path, "--project", "p", "--deployments", "gpt-9", code=2)
    assert "'gpt-9'" in unknown.stderr and "gpt-4o" in unknown.stderr
    assert "expired" not in unknown.stderr
    past = modelgate("keys", "create", "--config", path, "--project", "p", "--expires", "2001-01-01", code=2)
    assert "in the past" in past.stderr
    missing = modelgate("keys", "revoke", "key_nope", "--config", path, code=1)
    assert "there is no key 'key_nope'" in missing.stderr
    made = modelgate("keys", "create", "--config", path, "--project", "p")
    # Without Redis running gateways pick the key up at their next refresh, and the CLI says so.
    assert made.stdout.startswith("mg-") and "within 2s" in made.stderr


def test_cli_values_the_database_cannot_hold_are_refused_naming_the_flag(
        sim: SimulatorThread, migrated_database_url: str, tmp_path: Path) -> None:
    config = openai_sim_config(sim.base_url, database_url=migrated_database_url)
    path = write_config(tmp_path / "modelgate.yaml", config)
    rpm = modelgate("keys", "create", "--config", path, "--project", "p", "--rpm", str(2**31), code=2)
    assert "'rpm' must be a whole number from 1 to 2147483647" in rpm.stderr
    budget = modelgate("keys", "create", "--config", path, "--project", "p", "--budget", "1e308", code=2)
    assert "'budget' must be USD as a number from 0 to 1000000000" in budget.stderr
    # Bytes that are not UTF-8 reach Python as lone surrogates, which no database stores.
    undecodable = b"p\xff"
    for args in ([b"keys", b"create", b"--project", b"p", b"--name", undecodable],
                 [b"keys", b"list", b"--project", undecodable],
                 [b"keys", b"revoke", undecodable],
                 [b"usage", b"--model", undecodable],
                 [b"statements", b"--provider", undecodable]):
        done = subprocess.run([sys.executable.encode(), b"-m", b"modelgate", *args, b"--config", path.encode()],
                              capture_output=True, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert b"surrogate" in done.stderr, done.stderr
    assert json.loads(modelgate("keys", "list", "--config", path, "--json").stdout)["data"] == []

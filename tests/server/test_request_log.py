"""The request log end to end, on SQLite and PostgreSQL: requests through a running gateway, then
searched through ``GET /admin/requests`` with every filter and a cursor, read one by one with their
attempts (a failover shows both) and, where the deployment logs payloads, their bodies with secrets
and personal data redacted; and printed and followed by `modelgate logs`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml

from modelgate.simulator import SimConfig, SimulatorThread
from tests.services import upgrade
from tests.support import RunningGateway, gateway_in_thread, wait_until

MASTER = "mk-requests"
ADMIN = {"authorization": f"Bearer {MASTER}"}
SECRET = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0" * 2
EMAIL = "jane.doe@example.com"


@pytest.fixture(scope="module")
def log_sim() -> Iterator[SimulatorThread]:
    config = SimConfig.from_dict({"api_key": "sk-sim", "models": {"broken": {"fault": "status=500"}}})
    with SimulatorThread(config) as simulator:
        yield simulator


def config(sim: SimulatorThread, database_url: str, journal: Path) -> dict[str, Any]:
    v1 = f"{sim.base_url}/v1"
    return {
        "master_key": MASTER,
        "database_url": database_url,
        "journal_dir": str(journal),
        "providers": {"openai": {"type": "openai", "base_url": v1, "api_key": "sk-sim", "flavor": "openai"},
                      "anthropic": {"type": "anthropic", "base_url": sim.base_url, "api_key": "sk-sim"}},
        "deployments": [
            {"name": "gpt-4o", "provider": "openai", "model": "gpt-4o", "log_payloads": True},
            {"name": "quiet", "provider": "openai", "model": "gpt-4o-mini", "log_payloads": "errors"},
            {"name": "claude", "provider": "anthropic", "model": "claude-sonnet-4-5"},
            {"name": "flaky", "provider": "openai", "model": "broken", "fallbacks": ["gpt-4o"]},
            {"name": "broken", "provider": "openai", "model": "broken", "log_payloads": "errors"},
        ],
    }


def search(gateway: RunningGateway, **params: Any) -> dict[str, Any]:
    response = httpx.get(f"{gateway.base_url}/admin/requests", params=params, headers=ADMIN, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def detail(gateway: RunningGateway, request_id: str) -> dict[str, Any]:
    response = httpx.get(f"{gateway.base_url}/admin/requests/{request_id}", headers=ADMIN, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def logged(gateway: RunningGateway, count: int) -> list[dict[str, Any]]:
    """The newest page once ``count`` requests are in the log (it is written behind the requests)."""
    wait_until(lambda: len(search(gateway, limit=100)["data"]) >= count, what=f"{count} requests in the log")
    return list(search(gateway, limit=100)["data"])


@pytest.fixture
def gateway(log_sim: SimulatorThread, database_url: str, tmp_path: Path) -> Iterator[RunningGateway]:
    asyncio.run(upgrade(database_url))
    with gateway_in_thread(config(log_sim, database_url, tmp_path / "journal")) as running:
        yield running


def make_key(gateway: RunningGateway, project: str) -> str:
    response = httpx.post(f"{gateway.base_url}/admin/keys", json={"project": project}, headers=ADMIN, timeout=30)
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def test_every_request_is_logged_and_searchable(gateway: RunningGateway) -> None:
    key = make_key(gateway, "team-a")
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    plain = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": f"Mail {EMAIL} the key {SECRET}"}])
    streamed = list(client.chat.completions.create(model="quiet", messages=[{"role": "user", "content": "hi"}],
                                                   stream=True))
    assert streamed
    failed_over = client.chat.completions.with_raw_response.create(
        model="flaky", messages=[{"role": "user", "content": "hello"}])
    with pytest.raises(openai.APIStatusError) as broken:
        client.chat.completions.create(model="broken", messages=[{"role": "user", "content": f"call {EMAIL}"}])
    with anthropic.Anthropic(base_url=gateway.base_url, api_key=MASTER, max_retries=0) as claude:
        claude.messages.create(model="claude", max_tokens=50, messages=[{"role": "user", "content": "hey"}])

    entries = logged(gateway, 5)
    assert [e["deployment"] for e in entries] == ["claude", "broken", "flaky", "quiet", "gpt-4o"]
    by_deployment = {e["deployment"]: e for e in entries}
    first = by_deployment["gpt-4o"]
    assert first["id"] == plain.headers["x-request-id"]
    assert first["project"] == "team-a" and first["key"].startswith("key_")
    assert first["surface"] == "openai" and first["route"] == "chat" and first["path"] == "/v1/chat/completions"
    assert first["status"] == 200 and first["provider"] == "openai" and first["input_tokens"] > 0
    assert first["client_ip"] == "127.0.0.1" and first["user_agent"].startswith("OpenAI/Python")
    assert by_deployment["claude"]["surface"] == "anthropic" and by_deployment["claude"]["project"] is None
    assert by_deployment["broken"]["status"] == broken.value.status_code >= 500
    assert by_deployment["broken"]["error"]

    # Filters: the names of /admin/usage's, and status and q.
    assert [e["deployment"] for e in search(gateway, status="5xx")["data"]] == ["broken"]
    assert [e["deployment"] for e in search(gateway, status=str(broken.value.status_code))["data"]] == ["broken"]
    assert {e["deployment"] for e in search(gateway, status="2xx")["data"]} == {"claude", "flaky", "quiet", "gpt-4o"}
    assert [e["deployment"] for e in search(gateway, project="team-a", deployment="quiet")["data"]] == ["quiet"]
    assert len(search(gateway, key=first["key"])["data"]) == 4
    assert search(gateway, provider="anthropic")["data"][0]["deployment"] == "claude"
    assert search(gateway, q=by_deployment["broken"]["error"][-20:])["data"][0]["deployment"] == "broken"
    assert search(gateway, since="2999-01-01")["data"] == []

    # A cursor walks the pages; the last says so.
    page = search(gateway, limit=2)
    seen = [e["id"] for e in page["data"]]
    while page["next_cursor"] is not None:
        page = search(gateway, limit=2, cursor=page["next_cursor"])
        seen += [e["id"] for e in page["data"]]
    assert seen == [e["id"] for e in entries]

    # One request: its attempts, and its payloads where its deployment logs them, redacted.
    shown = detail(gateway, first["id"])
    assert EMAIL not in shown["request_body"] and SECRET not in shown["request_body"]
    assert "[EMAIL]" in shown["request_body"] and "[SECRET]" in shown["request_body"]
    answer = plain.parse().choices[0].message.content
    assert answer and answer.split()[0] in shown["response_body"]
    assert [a["outcome"] for a in shown["history"]] == ["answered"]
    fallback = detail(gateway, failed_over.headers["x-request-id"])
    assert [(a["model"], a["outcome"]) for a in fallback["history"]] == [("broken", "failed"), ("gpt-4o", "answered")]
    assert fallback["history"][0]["status"] == 500 and fallback["attempts"] == 2
    assert fallback["request_body"] is None  # the deployment logs no payloads
    assert detail(gateway, by_deployment["quiet"]["id"])["request_body"] is None  # "errors": it did not fail
    failed = detail(gateway, by_deployment["broken"]["id"])
    assert "[EMAIL]" in failed["request_body"] and EMAIL not in failed["request_body"]


def test_bad_searches_are_400s_and_unknown_ids_404s(gateway: RunningGateway) -> None:
    for params, param in (({"status": "9xx"}, "status"), ({"limit": "0"}, "limit"), ({"cursor": "nope"}, "cursor"),
                          ({"since": "yesterday"}, "since"), ({"sort": "x"}, "sort")):
        response = httpx.get(f"{gateway.base_url}/admin/requests", params=params, headers=ADMIN, timeout=30)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param
    response = httpx.get(f"{gateway.base_url}/admin/requests/req_unknown", headers=ADMIN, timeout=30)
    assert response.status_code == 404
    assert "retention_days" in response.json()["error"]["message"]
    project_key = make_key(gateway, "team-b")
    response = httpx.get(f"{gateway.base_url}/admin/requests", headers={"authorization": f"Bearer {project_key}"},
                         timeout=30)
    assert response.status_code == 403


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_modelgate_logs_prints_and_follows(gateway: RunningGateway, database_url: str, tmp_path: Path) -> None:
    client = openai.OpenAI(base_url=gateway.v1, api_key=MASTER, max_retries=0)
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "one"}])
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="broken", messages=[{"role": "user", "content": "two"}])
    logged(gateway, 2)
    path = tmp_path / "modelgate.yaml"
    path.write_text(yaml.safe_dump({"database_url": database_url}))
    command = [sys.executable, "-m", "modelgate", "logs", "--config", str(path)]
    printed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert [line.split()[3] for line in printed] == ["chat", "chat"] and "broken" in printed[1]
    only = subprocess.run([*command, "--status", "5xx"], capture_output=True, text=True, timeout=60,
                          check=True).stdout.splitlines()
    assert len(only) == 1 and " 5" in only[0] and "broken" in only[0]

    follower = subprocess.Popen([*command, "--follow", "--deployment", "gpt-4o", "--json"], stdout=subprocess.PIPE,
                                text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(follower.stdout.readline, "")),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    try:
        wait_until(lambda: len(lines) >= 1, what="the recent request printed")
        new = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=[{"role": "user",
                                                                                          "content": "three"}])
        wait_until(lambda: len(lines) >= 2, what="the new request followed")
        assert new.headers["x-request-id"] in lines[1]
    finally:
        follower.terminate()
        follower.wait(timeout=30)
    assert len(lines) == 2  # printed once each, though every poll looks back

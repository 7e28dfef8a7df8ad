"""Deployments made through the admin API: stored in the database, in force on every gateway
process sharing it without a restart, checked by the config's reader, config ones read-only."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelgate.cli import main
from modelgate.simulator import SimulatorThread
from modelgate.storage import Storage
from tests.admin.test_admin_api import MASTER, check
from tests.support import RunningGateway, gateway_in_thread, openai_sim_config, wait_until

HI = {"messages": [{"role": "user", "content": "Hi"}]}


def chat(gateway: RunningGateway, model: str) -> httpx.Response:
    return httpx.post(f"{gateway.v1}/chat/completions", headers=MASTER, json={"model": model, **HI}, timeout=30)


@pytest.fixture
def pair(sim: SimulatorThread, migrated_database_url: str, redis_url: str) -> Iterator[list[RunningGateway]]:
    """Two gateways on one database and one Redis, as two processes of one installation."""
    config = openai_sim_config(sim.base_url, master_key="sk-master", database_url=migrated_database_url,
                               redis_url=redis_url)
    with ExitStack() as stack:
        yield [stack.enter_context(gateway_in_thread(config)) for _ in range(2)]


def test_a_deployment_made_on_one_gateway_answers_on_the_other(pair: list[RunningGateway]) -> None:
    one, other = pair
    admin = httpx.Client(base_url=one.base_url, headers=MASTER)
    assert chat(other, "dyn").status_code == 404
    created = check(admin.post("/admin/deployments", json={
        "name": "dyn", "provider": "openai", "model": "gpt-4o", "timeout": 30, "price": {"input": 1, "output": 2}}),
        201, "Deployment")
    assert (created["source"], created["targets"][0]["provider"], created["timeout"]) == ("api", "openai", 30.0)
    # Announced on Redis: in force on the other process when the call returns.
    reply = chat(other, "dyn")
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-modelgate-provider"] == "openai"

    listed = check(httpx.get(f"{other.base_url}/admin/deployments", headers=MASTER), 200, "DeploymentList")
    sources = {d["name"]: d["source"] for d in listed["data"]}
    assert sources["dyn"] == "api" and sources["gpt-4o"] == "config"

    # PATCH changes routing everywhere: the inline target replaced by another provider.
    changed = check(admin.patch("/admin/deployments/dyn", json={"provider": "xai", "model": "grok-3-mini"}),
                    200, "Deployment")
    assert changed["body"]["provider"] == "xai" and changed["body"]["price"] == {"input": 1, "output": 2}
    reply = chat(other, "dyn")
    assert reply.status_code == 200 and reply.headers["x-modelgate-provider"] == "xai"

    # A key may name it.
    key = admin.post("/admin/keys", json={"project": "p", "deployments": ["dyn"]})
    assert key.status_code == 201, key.text

    check(admin.delete("/admin/deployments/dyn"), 200, "Deployment")
    assert chat(other, "dyn").status_code == 404
    assert check(admin.get("/admin/deployments/dyn"), 404, "Error")["error"]["code"] == "deployment_not_found"
    # The name can be used again.
    check(admin.post("/admin/deployments", json={"name": "dyn", "provider": "openai", "model": "gpt-4o"}),
          201, "Deployment")
    wait_until(lambda: chat(other, "dyn").status_code == 200, 5, "the re-made deployment on the other gateway")


def test_without_redis_the_refresh_applies_changes(sim: SimulatorThread, migrated_database_url: str) -> None:
    config = openai_sim_config(sim.base_url, master_key="sk-master", database_url=migrated_database_url)
    with gateway_in_thread(config) as one, gateway_in_thread(config) as other:
        created = httpx.post(f"{one.base_url}/admin/deployments", headers=MASTER,
                             json={"name": "later", "provider": "deepseek", "model": "deepseek-chat"})
        assert created.status_code == 201, created.text
        assert chat(one, "later").status_code == 200
        wait_until(lambda: chat(other, "later").status_code == 200, 6, "the refresh on the other gateway")


@pytest.fixture
def gateway(sim: SimulatorThread, migrated_database_url: str) -> Iterator[RunningGateway]:
    config = openai_sim_config(sim.base_url, master_key="sk-master", database_url=migrated_database_url)
    with gateway_in_thread(config) as running:
        yield running


def test_config_deployments_are_read_only_and_names_unique(gateway: RunningGateway) -> None:
    admin = httpx.Client(base_url=gateway.base_url, headers=MASTER)
    config_one = check(admin.get("/admin/deployments/gpt-4o"), 200, "Deployment")
    assert config_one["source"] == "config" and config_one["body"] is None
    for response in (admin.patch("/admin/deployments/gpt-4o", json={"timeout": 5}),
                     admin.delete("/admin/deployments/gpt-4o"),
                     admin.post("/admin/deployments", json={"name": "gpt-4o", "provider": "openai", "model": "x"})):
        error = check(response, 409, "Error")["error"]
        assert error["code"] == "deployment_from_config" and "config file" in error["message"]
    body = {"name": "mine", "provider": "openai", "model": "gpt-4o"}
    check(admin.post("/admin/deployments", json=body), 201, "Deployment")
    assert check(admin.post("/admin/deployments", json=body), 409, "Error")["error"]["code"] == "already_exists"
    # A deployment another falls back to cannot go.
    check(admin.post("/admin/deployments", json={**body, "name": "front", "fallbacks": ["mine"]}), 201, "Deployment")
    assert check(admin.delete("/admin/deployments/mine"), 409, "Error")["error"]["code"] == "deployment_in_use"
    check(admin.patch("/admin/deployments/front", json={"fallbacks": None}), 200, "Deployment")
    check(admin.delete("/admin/deployments/mine"), 200, "Deployment")
    assert check(admin.delete("/admin/deployments/mine"), 404, "Error")["error"]["code"] == "deployment_not_found"
    assert check(admin.patch("/admin/deployments/nope", json={}), 404, "Error")["error"]["code"] == (
        "deployment_not_found")
    # Project keys may not.
    key = admin.post("/admin/keys", json={"project": "p"}).json()["key"]
    assert httpx.get(f"{gateway.base_url}/admin/deployments",
                     headers={"authorization": f"Bearer {key}"}).status_code == 403


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"name": "x", "provider": "nowhere", "model": "m"}, "provider", "'nowhere' is not a configured provider"),
    ({"name": "x", "provider": "openai", "model": "m", "timeout": -1}, "timeout", "positive number of seconds"),
    ({"name": "x", "provider": "openai", "model": "m", "strategy": "random"}, "strategy", "must be one of"),
    ({"name": "x", "provider": "openai", "model": "m", "fallbacks": ["ghost"]}, "fallbacks", "'ghost'"),
    ({"name": "x", "provider": "openai", "model": "m", "colour": "red"}, "colour", "colour"),
    ({"name": "x", "provider": "openai", "model": "m", "targets": []}, None, "not both"),
    ({"name": "x"}, None, "provider"),
    ({"name": "bad name", "provider": "openai", "model": "m"}, "name", "letters, digits"),
    ({"provider": "openai", "model": "m"}, "name", "required"),
])
def test_a_deployment_is_checked_as_the_config_checks_one(gateway: RunningGateway, body: dict[str, Any],
                                                          param: str | None, words: str) -> None:
    response = httpx.post(f"{gateway.base_url}/admin/deployments", headers=MASTER, json=body)
    error = check(response, 400, "Error")["error"]
    assert words in error["message"]
    if param is not None:
        assert error["param"] == param
    assert chat(gateway, "x").status_code == 404


def test_a_patch_is_checked_before_it_is_stored(gateway: RunningGateway) -> None:
    admin = httpx.Client(base_url=gateway.base_url, headers=MASTER)
    check(admin.post("/admin/deployments", json={"name": "p1", "provider": "openai", "model": "gpt-4o"}),
          201, "Deployment")
    error = check(admin.patch("/admin/deployments/p1", json={"retries": -2}), 400, "Error")["error"]
    assert error["param"] == "retries" and "deployments.p1.retries" in error["message"]
    assert check(admin.patch("/admin/deployments/p1", json={"name": "p2"}), 400, "Error")["error"]["param"] == "name"
    assert admin.get("/admin/deployments/p1").json()["body"] == {"name": "p1", "provider": "openai", "model": "gpt-4o"}
    check(admin.patch("/admin/deployments/p1", json={"targets": [
        {"provider": "openai", "model": "gpt-4o", "weight": 1}, {"provider": "xai", "model": "grok-3-mini"}]}),
        200, "Deployment")
    assert [t["provider"] for t in admin.get("/admin/deployments/p1").json()["targets"]] == ["openai", "xai"]
    assert chat(gateway, "p1").status_code == 200


def test_the_deployments_command_shows_both_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database = f"sqlite:///{tmp_path / 'modelgate.db'}"
    config = tmp_path / "modelgate.yaml"
    config.write_text(yaml.safe_dump({
        "database_url": database,
        "providers": {"openai": {"type": "openai", "api_key": "sk"}},
        "deployments": [{"name": "main", "provider": "openai", "model": "gpt-4o"}]}))

    async def made() -> None:
        storage = await Storage.open_prepared(database)
        try:
            await storage.deployments.create("extra", {"name": "extra", "provider": "openai", "model": "gpt-4o-mini"})
            await storage.deployments.create("gone", {"name": "gone", "provider": "openai", "model": "gpt-4o"})
            await storage.deployments.delete("gone")
        finally:
            await storage.close()

    asyncio.run(made())
    assert main(["deployments", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "SOURCE"
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"main", "extra"}
    assert rows["main"][-1] == "config" and rows["extra"][-1] == "api" and rows["extra"][2] == "gpt-4o-mini"

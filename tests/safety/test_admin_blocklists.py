"""/admin/blocklists: a config's lists given new terms at run time, on every gateway of the database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from modelgate.simulator import SimConfig, SimulatorThread
from modelgate.surfaces.admin.openapi import admin_openapi
from tests.support import RunningGateway, gateway_in_thread, wait_until

MASTER = "mk-lists"
HEADERS = {"authorization": f"Bearer {MASTER}"}


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, RunningGateway]]:
    folder: Path = tmp_path_factory.mktemp("lists")
    with SimulatorThread(SimConfig.from_dict({"api_key": "sk-sim"})) as sim:
        config = {
            "master_key": MASTER, "database_url": f"sqlite:///{folder / 'modelgate.db'}",
            "providers": {"openai": {"type": "openai", "base_url": f"{sim.base_url}/v1", "api_key": "sk-sim"}},
            "safety": {"blocklists": {"codenames": {"terms": ["Project Falcon"]}, "runtime": {}},
                       "policies": {"inbound": {"input": [
                           {"check": "blocklist", "action": "block", "list": "codenames"},
                           {"check": "blocklist", "action": "block", "list": "runtime"}]}}},
            "deployments": [{"name": "chat", "provider": "openai", "model": "gpt-4o", "safety": "inbound"}],
        }
        with gateway_in_thread({**config, "journal_dir": str(folder / "a")}) as first, \
                gateway_in_thread({**config, "journal_dir": str(folder / "b")}) as second:
            yield first, second


def check(response: httpx.Response, status: int, schema: str) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{schema}",
                                     "components": admin_openapi()["components"]}).validate(body)
    return body


def blocked(gateway: RunningGateway, text: str) -> bool:
    with openai.OpenAI(base_url=gateway.v1, api_key=MASTER, max_retries=0) as client:
        try:
            client.chat.completions.create(model="chat", messages=[{"role": "user", "content": text}])
        except openai.BadRequestError as error:
            assert error.code == "content_filter"
            return True
    return False


def test_terms_set_and_removed_at_run_time_apply_on_every_gateway(
        gateways: tuple[RunningGateway, RunningGateway]) -> None:
    first, second = gateways
    admin = httpx.Client(base_url=first.base_url, headers=HEADERS)
    listed = check(admin.get("/admin/blocklists"), 200, "BlocklistList")["data"]
    assert [(e["name"], e["terms"], e["source"], e["used_by"]) for e in listed] == [
        ("codenames", ["Project Falcon"], "config", ["inbound"]), ("runtime", [], "config", ["inbound"])]
    assert not blocked(first, "Status of operation osprey?")

    put = check(admin.put("/admin/blocklists/runtime", json={"terms": ["Operation Osprey"],
                                                              "patterns": [r"(?i)\bOSP-\d{3}\b"]}), 200, "Blocklist")
    assert (put["source"], put["terms"], put["patterns"]) == ("api", ["Operation Osprey"], [r"(?i)\bOSP-\d{3}\b"])
    assert put["updated_at"] is not None
    assert blocked(first, "Status of OPERATION  Osprey?")  # in force here when the PUT returned
    wait_until(lambda: blocked(second, "ticket osp-123"), what="the other gateway applying the list")

    # The config's own lists can be replaced too; deleting brings the config's terms back.
    check(admin.put("/admin/blocklists/codenames", json={"terms": ["Kestrel"]}), 200, "Blocklist")
    assert blocked(first, "kestrel?") and not blocked(first, "Project Falcon?")
    gone = check(admin.delete("/admin/blocklists/codenames"), 200, "Blocklist")
    assert (gone["source"], gone["terms"]) == ("config", ["Project Falcon"])
    assert blocked(first, "Project Falcon?") and not blocked(first, "kestrel?")
    check(admin.delete("/admin/blocklists/runtime"), 200, "Blocklist")
    assert not blocked(first, "Operation Osprey")
    wait_until(lambda: not blocked(second, "Operation Osprey"), what="the other gateway dropping the list")


def test_bad_changes_are_refused_with_the_field_and_the_fix(gateways: tuple[RunningGateway, RunningGateway]) -> None:
    admin = httpx.Client(base_url=gateways[0].base_url, headers=HEADERS)
    bad = check(admin.put("/admin/blocklists/runtime", json={"terms": ["ok"], "patterns": ["(open"]}), 400, "Error")
    assert bad["error"]["code"] == "invalid_blocklist" and bad["error"]["param"] == "patterns"
    assert "patterns[0]: is not a valid regular expression" in bad["error"]["message"]
    wrong = check(admin.put("/admin/blocklists/runtime", json={"words": ["x"]}), 400, "Error")
    assert "words: unknown key; allowed here: patterns, terms" in wrong["error"]["message"]
    unknown = check(admin.put("/admin/blocklists/other", json={"terms": ["x"]}), 404, "Error")
    assert "Declare it under safety.blocklists (an empty entry, other: {}, is enough)" in unknown["error"]["message"]
    missing = check(admin.delete("/admin/blocklists/runtime"), 404, "Error")
    assert missing["error"]["code"] == "blocklist_not_set"
    assert httpx.get(f"{gateways[0].base_url}/admin/blocklists").status_code == 401

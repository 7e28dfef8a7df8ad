"""The admin API on a running gateway: projects, keys, their effect on the OpenAI and Anthropic
surfaces, errors, and the OpenAPI document that describes it all."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import jsonschema
import openai
import pytest

from modelgate.simulator import SimulatorThread
from modelgate.surfaces.admin.openapi import admin_openapi
from modelgate.surfaces.admin.routes import ENDPOINTS
from tests.support import RunningGateway, gateway_in_thread, openai_sim_config

MASTER = {"authorization": "Bearer sk-master"}


@pytest.fixture
def gateway(sim: SimulatorThread, migrated_database_url: str) -> Iterator[RunningGateway]:
    config = openai_sim_config(sim.base_url, master_key="sk-master", database_url=migrated_database_url)
    with gateway_in_thread(config) as running:
        yield running


def check(response: httpx.Response, status: int, schema: str) -> Any:
    """The body of ``response``, checked against ``schema`` of the admin OpenAPI document."""
    assert response.status_code == status, response.text
    body = response.json()
    document = admin_openapi()
    jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": document["components"]}).validate(body)
    return body


def chat(gateway: RunningGateway, key: str, model: str = "gpt-4o") -> str:
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
    return reply.choices[0].message.content or ""


def test_projects_and_keys_from_creation_to_revocation(gateway: RunningGateway) -> None:
    admin = httpx.Client(base_url=gateway.base_url, headers=MASTER)
    project = check(admin.post("/admin/projects", json={"name": "team-a", "deployments": ["gpt-4o", "embed"],
                                                        "rpm": 100, "budget": 50}), 201, "Project")
    assert (project["name"], project["deployments"], project["rpm"], project["budget"], project["budget_period"]) == (
        "team-a", ["gpt-4o", "embed"], 100, 50.0, "month")
    conflict = check(admin.post("/admin/projects", json={"name": "team-a"}), 409, "Error")
    assert conflict["error"]["code"] == "already_exists"

    created = check(admin.post("/admin/keys", json={
        "project": "team-a", "deployments": ["gpt-4o", "grok-3-mini"], "rpm": 10, "tpm": 10000, "budget": 5.0}),
        201, "KeyCreated")
    key = created["key"]
    assert key.startswith("mg-") and created["project"] == "team-a" and created["id"].startswith("key_")
    assert (created["rpm"], created["tpm"], created["budget"], created["status"]) == (10, 10000, 5.0, "active")

    listed = check(admin.get("/admin/keys"), 200, "KeyList")
    assert [k["id"] for k in listed["data"]] == [created["id"]]
    assert "key" not in listed["data"][0] and key.startswith(listed["data"][0]["prefix"])
    assert check(admin.get(f"/admin/keys/{created['id']}"), 200, "Key")["prefix"] == created["prefix"]

    # The key sees and calls only what both it and its project allow.
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    assert [m.id for m in client.models.list()] == ["gpt-4o"]
    assert chat(gateway, key)
    with pytest.raises(openai.NotFoundError):
        chat(gateway, key, "grok-3-mini")
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="embed", input="hello")
    # The admin API is the master key's alone.
    denied = check(httpx.get(f"{gateway.base_url}/admin/keys", headers={"authorization": f"Bearer {key}"}),
                   403, "Error")
    assert denied["error"]["type"] == "permission_error"

    revoked = check(admin.delete(f"/admin/keys/{created['id']}"), 200, "Key")
    assert revoked["status"] == "revoked" and revoked["revoked_at"]
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, key)
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0).messages.create(
            model="gpt-4o", max_tokens=16, messages=[{"role": "user", "content": "Hi"}])
    assert check(admin.get("/admin/keys"), 200, "KeyList")["data"] == []
    everything = check(admin.get("/admin/keys", params={"include_revoked": "true"}), 200, "KeyList")
    assert [k["status"] for k in everything["data"]] == ["revoked"]


def test_project_limits_change_and_reach_keys_at_once(gateway: RunningGateway) -> None:
    admin = httpx.Client(base_url=gateway.base_url, headers=MASTER)
    created = check(admin.post("/admin/keys", json={"project": "solo", "name": "ci"}), 201, "KeyCreated")
    assert created["name"] == "ci" and created["deployments"] is None
    project = check(admin.get("/admin/projects/solo"), 200, "Project")
    assert project["rpm"] is None  # made by the key, with no limits
    client = openai.OpenAI(base_url=gateway.v1, api_key=created["key"], max_retries=0)
    assert len(client.models.list().data) == 6

    changed = check(admin.patch("/admin/projects/solo", json={"deployments": ["grok-3-mini"], "tpm": 500}),
                    200, "Project")
    assert (changed["deployments"], changed["tpm"]) == (["grok-3-mini"], 500)
    assert [m.id for m in client.models.list()] == ["grok-3-mini"]
    cleared = check(admin.patch("/admin/projects/solo", json={"deployments": None}), 200, "Project")
    assert cleared["deployments"] is None and cleared["tpm"] == 500
    assert len(client.models.list().data) == 6
    assert [p["name"] for p in check(admin.get("/admin/projects"), 200, "ProjectList")["data"]] == ["solo"]
    check(admin.get("/admin/projects/nobody"), 404, "Error")
    check(admin.patch("/admin/projects/nobody", json={"rpm": 1}), 404, "Error")


MISTAKES = [
    ("/admin/keys", {"project": "p", "rpm": "ten"}, "rpm", "whole number"),
    ("/admin/keys", {"project": "p", "tpm": 0}, "tpm", "from 1 to"),
    ("/admin/keys", {"project": "p", "budget": -1}, "budget", "from 0 to"),
    ("/admin/keys", {"project": "p", "budget_period": "week"}, "budget_period", "day, month"),
    ("/admin/keys", {"project": "p", "deployments": ["gpt-4o", "gpt-9"]}, "deployments", "'gpt-9'"),
    ("/admin/keys", {"project": "p", "expires": "2001-01-01"}, "expires", "in the past"),
    ("/admin/keys", {"project": "p", "expires": "soon"}, "expires", "ISO date"),
    ("/admin/keys", {"project": "p", "colour": "red"}, "colour", "Unknown field"),
    ("/admin/keys", {"rpm": 5}, "project", "required"),
    ("/admin/keys", {"project": "has space"}, "project", "letters, digits"),
    ("/admin/projects", {"name": "p", "rpm": True}, "rpm", "whole number"),
]


def test_mistakes_in_bodies_are_400s_naming_the_field(gateway: RunningGateway) -> None:
    for path, body, param, fragment in MISTAKES:
        error = check(httpx.post(f"{gateway.base_url}{path}", json=body, headers=MASTER), 400, "Error")["error"]
        assert (error["param"], error["type"]) == (param, "invalid_request_error"), body
        assert fragment in error["message"], body
    # Nothing was stored on the way.
    assert check(httpx.get(f"{gateway.base_url}/admin/projects", headers=MASTER), 200, "ProjectList")["data"] == []


def test_authentication_and_unknown_records(gateway: RunningGateway) -> None:
    base = gateway.base_url
    assert check(httpx.get(f"{base}/admin/keys"), 401, "Error")["error"]["code"] == "missing_api_key"
    check(httpx.get(f"{base}/admin/keys", headers={"authorization": "Bearer wrong"}), 401, "Error")
    assert check(httpx.delete(f"{base}/admin/keys/key_nope", headers=MASTER), 404, "Error")["error"]["code"] == (
        "key_not_found")
    check(httpx.get(f"{base}/admin/keys/key_nope", headers=MASTER), 404, "Error")
    bad_json = httpx.post(f"{base}/admin/keys", content=b"{", headers={**MASTER, "content-type": "application/json"})
    assert check(bad_json, 400, "Error")["error"]["code"] == "invalid_json"
    check(httpx.post(f"{base}/admin/keys", json=["p"], headers=MASTER), 400, "Error")
    check(httpx.get(f"{base}/admin/keys", params={"include_revoked": "yes"}, headers=MASTER), 400, "Error")
    check(httpx.get(f"{base}/admin/keys", params={"projcet": "p"}, headers=MASTER), 400, "Error")


def test_the_openapi_document_describes_every_admin_route(gateway: RunningGateway) -> None:
    served = httpx.get(f"{gateway.base_url}/admin/openapi.json", headers=MASTER)
    assert served.status_code == 200
    document = served.json()
    assert document == admin_openapi()
    assert document["openapi"] == "3.1.0"
    documented = {(method.upper(), path) for path, item in document["paths"].items()
                  for method in item if method != "parameters"}
    assert documented == {(method, path) for method, path, _ in ENDPOINTS}
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    # Every reference points at a schema that exists.
    references = set(re.findall(r'"\$ref":\s*"#/components/schemas/(\w+)"', served.text))
    assert references and references <= set(document["components"]["schemas"])

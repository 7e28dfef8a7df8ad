"""A project's content policy (its ``safety``, set through the admin API) adds to its deployments'."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from modelgate.simulator import SimConfig, SimulatorThread
from modelgate.surfaces.admin.openapi import admin_openapi
from tests.support import RunningGateway, gateway_in_thread

MASTER = "mk-projects"
HEADERS = {"authorization": f"Bearer {MASTER}"}


@pytest.fixture(scope="module")
def gateway() -> Iterator[RunningGateway]:
    with SimulatorThread(SimConfig.from_dict({"api_key": "sk-sim"})) as sim:
        config = {
            "master_key": MASTER,
            "providers": {"openai": {"type": "openai", "base_url": f"{sim.base_url}/v1", "api_key": "sk-sim"}},
            "safety": {"policies": {
                "inbound": {"input": [{"check": "blocklist", "action": "block", "terms": ["Project Falcon"]}]},
                "strict": {"input": [{"check": "blocklist", "action": "block", "terms": ["Kestrel"]}],
                           "output": [{"check": "pii", "action": "redact", "entities": ["email"]}]}}},
            "deployments": [{"name": "chat", "provider": "openai", "model": "gpt-4o", "safety": "inbound"},
                            {"name": "open", "provider": "openai", "model": "gpt-4o"}],
        }
        with gateway_in_thread(config) as running:
            yield running


def check(response: httpx.Response, status: int, schema: str) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{schema}",
                                     "components": admin_openapi()["components"]}).validate(body)
    return body


def ask(gateway: RunningGateway, key: str, model: str, text: str) -> str:
    """The answer's text, or the policy named by a content-filter refusal."""
    with openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0) as client:
        try:
            reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
        except openai.BadRequestError as error:
            assert error.code == "content_filter"
            return "blocked by " + error.message.split("content ")[1].split(":")[0]
    return reply.choices[0].message.content or ""


def test_a_projects_policy_runs_besides_its_deployments(gateway: RunningGateway) -> None:
    admin = httpx.Client(base_url=gateway.base_url, headers=HEADERS)
    project = check(admin.post("/admin/projects", json={"name": "team", "safety": "strict"}), 201, "Project")
    assert project["safety"] == "strict"
    key = check(admin.post("/admin/keys", json={"project": "team"}), 201, "KeyCreated")["key"]

    assert ask(gateway, key, "open", "About Kestrel") == "blocked by policy 'strict'"
    assert "About Kestrel" in ask(gateway, MASTER, "open", "About Kestrel")  # not the project's request
    assert "[EMAIL]" in ask(gateway, key, "open", "Mail ann@example.com")  # its output checks too
    assert ask(gateway, key, "chat", "Project Falcon and Kestrel") == "blocked by policies 'inbound' and 'strict'"
    assert ask(gateway, key, "chat", "Project Falcon") == "blocked by policy 'inbound'"

    cleared = check(admin.patch("/admin/projects/team", json={"safety": None}), 200, "Project")
    assert cleared["safety"] is None
    assert "About Kestrel" in ask(gateway, key, "open", "About Kestrel")


def test_a_project_may_only_name_a_policy_of_the_config(gateway: RunningGateway) -> None:
    admin = httpx.Client(base_url=gateway.base_url, headers=HEADERS)
    wrong = check(admin.post("/admin/projects", json={"name": "other", "safety": "lenient"}), 400, "Error")
    assert wrong["error"]["param"] == "safety"
    assert wrong["error"]["message"] == ("'safety' must name a content policy of the config or be null, got "
                                         "'lenient'; policies: inbound, strict")
    check(admin.post("/admin/projects", json={"name": "other"}), 201, "Project")
    assert check(admin.patch("/admin/projects/other", json={"safety": 3}), 400, "Error")["error"]["param"] == "safety"


def test_a_deployment_made_through_the_admin_api_names_a_policy(gateway: RunningGateway) -> None:
    admin = httpx.Client(base_url=gateway.base_url, headers=HEADERS)
    body = {"name": "guarded", "provider": "openai", "model": "gpt-4o", "safety": "lenient"}
    wrong = check(admin.post("/admin/deployments", json=body), 400, "Error")
    assert "deployments.guarded.safety: 'lenient' is not a policy under safety.policies (inbound, strict)" in \
        wrong["error"]["message"]
    check(admin.post("/admin/deployments", json={**body, "safety": "strict"}), 201, "Deployment")
    assert ask(gateway, MASTER, "guarded", "Kestrel?") == "blocked by policy 'strict'"

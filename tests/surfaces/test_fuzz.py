"""Fuzzing with schemathesis: requests generated from the admin API's own OpenAPI document and from
the official OpenAI spec (chat completions, embeddings, models), valid and invalid ones, against a
real gateway on the simulator; no answer may be a 5xx.

The seed is fixed and the number of examples bounded, so a run is repeatable and short: each
operation gets the spec's examples, schemathesis' coverage cases (boundary values, wrong types,
missing fields, other media types) and ``EXAMPLES`` generated requests of each kind, valid and
invalid; about 2,600 requests in all, the admin API's on SQLite and on PostgreSQL. Besides the
status, the admin API's answers must match its document (status codes, media types, bodies), and
the OpenAI surface's bodies the official spec.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, seed, settings
from schemathesis import Case
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from modelgate.simulator import SimulatorThread
from tests.openai_spec import load_spec, spec_path
from tests.services import _admin, upgrade
from tests.support import RunningGateway, gateway_in_thread, openai_sim_config

MASTER = "mk-fuzz"
AUTH = {"authorization": f"Bearer {MASTER}"}
SEED = 1111
EXAMPLES = 25
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck))
# The OpenAI operations the gateway serves, by the spec's paths (under /v1).
OPENAI_OPERATIONS = {"/chat/completions": "post", "/embeddings": "post", "/models": "get", "/models/{model}": "get",
                     "/responses": "post", "/responses/{response_id}": "get"}


@pytest.fixture(scope="module")
def openai_gateway(sim: SimulatorThread) -> Iterator[RunningGateway]:
    with gateway_in_thread(openai_sim_config(sim.base_url, master_key=MASTER)) as running:
        yield running


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def admin_gateway(request: pytest.FixtureRequest, sim: SimulatorThread) -> Iterator[RunningGateway]:
    """A gateway on a new database of each kind: what the admin API stores goes through it."""
    if request.param == "sqlite":
        with gateway_in_thread(openai_sim_config(sim.base_url, master_key=MASTER)) as running:
            yield running
        return
    server = request.getfixturevalue("postgres_server")
    name = "mg_test_" + secrets.token_hex(6)
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        url = server.rsplit("/", 1)[0] + "/" + name
        asyncio.run(upgrade(url))
        with gateway_in_thread(openai_sim_config(sim.base_url, master_key=MASTER, database_url=url)) as running:
            yield running
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def admin_api(admin_gateway: RunningGateway) -> Any:
    document = httpx.get(f"{admin_gateway.base_url}/admin/openapi.json", headers=AUTH, timeout=30).json()
    return schemathesis.openapi.from_dict(document)


@pytest.fixture(scope="module")
def openai_api() -> Any:
    load_spec()  # fails under CI=true, skips elsewhere, where the spec is missing
    path = spec_path()
    assert path is not None
    with path.open("rb") as handle:
        document = yaml.load(handle, Loader=yaml.CSafeLoader)
    document["paths"] = {path: {method: document["paths"][path][method]}
                         for path, method in OPENAI_OPERATIONS.items()}
    # The spec's discriminator of a message's tool calls names no mapping, so by OpenAPI's rules
    # its values would be the schemas' names; the API (and the gateway) write each call's own
    # `type`, "function" or "custom", which is what the schemas themselves say.
    calls = document["components"]["schemas"]["ChatCompletionMessageToolCalls"]["items"]["discriminator"]
    calls.setdefault("mapping", {"function": "#/components/schemas/ChatCompletionMessageToolCall",
                                 "custom": "#/components/schemas/ChatCompletionMessageCustomToolCall"})
    return schemathesis.openapi.from_dict(document)


admin_schema = schemathesis.pytest.from_fixture("admin_api")
openai_schema = schemathesis.pytest.from_fixture("openai_api")


@admin_schema.parametrize()
@FUZZ
@seed(SEED)
def test_the_admin_api_never_answers_5xx(case: Case[Any], admin_gateway: RunningGateway) -> None:
    response = case.call(base_url=admin_gateway.base_url, headers=AUTH)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                             response_schema_conformance])


@openai_schema.parametrize()
@FUZZ
@seed(SEED)
def test_the_openai_surface_never_answers_5xx(case: Case[Any], openai_gateway: RunningGateway) -> None:
    if isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
        # A model the gateway has, so that valid requests go all the way to the upstream and back.
        case.body["model"] = "embed" if case.path == "/embeddings" else "gpt-4o"
    response = case.call(base_url=f"{openai_gateway.base_url}/v1", headers=AUTH)
    checks = [not_a_server_error, response_schema_conformance]
    if isinstance(case.body, dict) and case.body.get("encoding_format") == "base64":
        # The spec types an embedding as an array of floats only; OpenAI (and the gateway) answer
        # base64 as a string (tests/surfaces/test_openai_sdk.py checks those bodies).
        checks.remove(response_schema_conformance)
    case.validate_response(response, checks=checks)

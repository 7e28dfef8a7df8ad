"""The admin API takes only what the database and the gateway can hold: every value past that is a
400 naming the field and the allowed range, and the largest values it takes work, on SQLite and
PostgreSQL (with limits and budgets in Redis, where the counters are scripts)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from modelgate.auth.keystore import hash_key
from modelgate.simulator import SimulatorThread
from modelgate.storage import LimitFields, Storage
from modelgate.storage.bounds import MAX_BUDGET, MAX_RPM, MAX_TPM
from tests.support import RunningGateway, gateway_in_thread, openai_sim_config

MASTER = {"authorization": "Bearer sk-master"}
KEY = "mg-stored-before-the-bounds-0123456789"


@pytest.fixture
def gateway(sim: SimulatorThread, migrated_database_url: str, redis_url: str) -> Iterator[RunningGateway]:
    config = openai_sim_config(sim.base_url, master_key="sk-master", database_url=migrated_database_url,
                               redis_url=redis_url)
    with gateway_in_thread(config) as running:
        yield running


def refused(response: httpx.Response, param: str, *fragments: str) -> None:
    assert response.status_code == 400, (response.status_code, response.text)
    error = response.json()["error"]
    assert (error["param"], error["type"]) == (param, "invalid_request_error"), error
    for fragment in fragments:
        assert fragment in error["message"], error


BODIES: list[tuple[str, dict[str, Any], str, tuple[str, ...]]] = [
    ("/admin/keys", {"project": "p", "rpm": 2**31}, "rpm", (f"from 1 to {MAX_RPM}",)),
    ("/admin/keys", {"project": "p", "rpm": 2**64}, "rpm", (f"from 1 to {MAX_RPM}",)),
    ("/admin/keys", {"project": "p", "tpm": MAX_TPM + 1}, "tpm", (f"from 1 to {MAX_TPM}",)),
    ("/admin/keys", {"project": "p", "budget": 1e308}, "budget", ("from 0 to 1000000000",)),
    ("/admin/keys", {"project": "p", "budget": 1e19}, "budget", ("from 0 to 1000000000",)),
    ("/admin/keys", {"project": "p", "name": "a\u0000b"}, "name", ("NUL",)),
    ("/admin/keys", {"project": "p", "name": "n" * 201}, "name", ("201 characters", "at most 200")),
    ("/admin/keys", {"project": "p" * 201}, "project", ("up to 200",)),
    ("/admin/keys", {"project": "p\n"}, "project", ("letters, digits",)),
    ("/admin/keys", {"project": "p\u0000"}, "project", ("letters, digits",)),
    ("/admin/keys", {"project": "p", "expires": "9999-12-31T23:59:59-14:00"}, "expires", ("up to 9999-12-31",)),
    ("/admin/keys", {"project": "p", "deployments": ["gpt-4o\u0000"]}, "deployments", ("not have",)),
    ("/admin/projects", {"name": "p", "rpm": 2**31}, "rpm", (f"from 1 to {MAX_RPM}",)),
    ("/admin/projects", {"name": "p", "budget": -0.5}, "budget", ("from 0 to",)),
]


def test_bodies_past_what_the_database_holds_are_400s_naming_the_field(gateway: RunningGateway) -> None:
    admin = httpx.Client(base_url=gateway.base_url, headers=MASTER)
    for path, body, param, fragments in BODIES:
        refused(admin.post(path, json=body), param, *fragments)
    assert admin.post("/admin/projects", json={"name": "p"}).status_code == 201
    refused(admin.patch("/admin/projects/p", json={"rpm": 2**31}), "rpm", f"from 1 to {MAX_RPM}")
    refused(admin.patch("/admin/projects/p", json={"budget": 1e308}), "budget", "from 0 to")
    # Nothing was stored on the way.
    assert admin.get("/admin/keys").json()["data"] == []
    assert [p["rpm"] for p in admin.get("/admin/projects").json()["data"]] == [None]


QUERIES: list[tuple[str, str, dict[str, str], str]] = [
    ("GET", "/admin/keys", {"project": "\u0000"}, "project"),
    ("GET", "/admin/keys", {"project": "p" * 201}, "project"),
    *[("GET", "/admin/usage", {name: "a\u0000"}, name)
      for name in ("project", "key", "deployment", "provider", "model")],
    ("GET", "/admin/usage", {"model": "m" * 201}, "model"),
    ("GET", "/admin/statements", {"provider": "\u0000"}, "provider"),
    ("GET", "/admin/usage", {"since": "9999-12-31T23:00:00-05:00"}, "since"),
    ("GET", "/admin/usage", {"until": "0001-01-01T00:00:00+01:00"}, "until"),
    ("GET", "/admin/usage", {"period": "9999-12"}, "period"),
    ("GET", "/admin/statements", {"period": "9999-12-31"}, "period"),
]


def test_query_parameters_the_database_cannot_compare_are_400s(gateway: RunningGateway) -> None:
    admin = httpx.Client(base_url=gateway.base_url, headers=MASTER)
    for method, path, params, param in QUERIES:
        refused(admin.request(method, path, params=params), param)
    # Names and ids in paths, too.
    refused(admin.get("/admin/projects/a%00b"), "name", "NUL")
    refused(admin.patch("/admin/projects/a%00b", json={"rpm": 1}), "name", "NUL")
    refused(admin.get("/admin/keys/key_%00"), "id", "NUL")
    refused(admin.delete("/admin/keys/key_%00"), "id", "NUL")
    refused(admin.get("/admin/keys/" + "k" * 41), "id", "at most 40")
    # Within the bounds, a name that matches nothing is an empty answer or a 404, as before.
    assert admin.get("/admin/usage", params={"model": "m" * 200}).json()["data"] == []
    assert admin.get("/admin/projects/" + "p" * 200).status_code == 404


def test_the_largest_values_taken_are_stored_and_work(gateway: RunningGateway) -> None:
    admin = httpx.Client(base_url=gateway.base_url, headers=MASTER)
    largest = {"project": "p" * 200, "name": "ü" * 200, "rpm": MAX_RPM, "tpm": MAX_TPM, "budget": MAX_BUDGET,
               "expires": "9999-12-31"}
    created = admin.post("/admin/keys", json=largest)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["project"], body["name"], body["rpm"], body["tpm"], body["budget"], body["expires_at"]) == (
        "p" * 200, "ü" * 200, MAX_RPM, MAX_TPM, MAX_BUDGET, "9999-12-31T00:00:00Z")
    assert admin.get(f"/admin/keys/{body['id']}").json()["tpm"] == MAX_TPM
    # The key's limits and budget are counted without failing, request after request.
    client = openai.OpenAI(base_url=gateway.v1, api_key=body["key"], max_retries=0)
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], max_tokens=5)
        assert raw.status_code == 200
        assert raw.headers["x-ratelimit-limit-tokens"] == str(MAX_TPM)
        assert raw.headers["x-ratelimit-limit-requests"] == str(MAX_RPM)
    project = admin.patch("/admin/projects/" + "p" * 200, json={"rpm": MAX_RPM, "budget": MAX_BUDGET})
    assert project.status_code == 200 and project.json()["rpm"] == MAX_RPM


def test_a_key_stored_with_limits_past_the_bounds_still_works(
        sim: SimulatorThread, migrated_database_url: str, redis_url: str) -> None:
    # As the admin API stored them before it checked them (the columns take these values).
    async def store() -> str:
        storage = await Storage.open(migrated_database_url)
        try:
            record = await storage.keys.create_key(
                id="key_old", project="old", key_hash=hash_key(KEY), prefix=KEY[:10],
                limits=LimitFields(budget=1e308, tpm=2**62))
            return record.id
        finally:
            await storage.close()

    asyncio.run(store())
    config = openai_sim_config(sim.base_url, master_key="sk-master", database_url=migrated_database_url,
                               redis_url=redis_url)
    with gateway_in_thread(config) as gateway:
        shown = httpx.get(f"{gateway.base_url}/admin/keys/key_old", headers=MASTER).json()
        assert (shown["budget"], shown["tpm"]) == (MAX_BUDGET, MAX_TPM)
        client = openai.OpenAI(base_url=gateway.v1, api_key=KEY, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], max_tokens=5)
        assert raw.status_code == 200
        assert raw.headers["x-ratelimit-limit-tokens"] == str(MAX_TPM)

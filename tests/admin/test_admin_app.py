"""The admin app on a running gateway, where its framework could show through: routes it does not
have, methods a route does not take, bodies that are not JSON, keys that are not the master's, and
failures nobody expected. Every one of them is an OpenAI-style error object with a request id."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from modelgate.schema.errors import ServiceUnavailable
from modelgate.simulator import SimulatorThread
from modelgate.surfaces.admin import wire
from modelgate.surfaces.admin.app import gateway_error
from tests.support import RunningGateway, gateway_in_thread, openai_sim_config

MASTER = {"authorization": "Bearer sk-master"}


@pytest.fixture
def gateway(sim: SimulatorThread) -> Iterator[RunningGateway]:
    with gateway_in_thread(openai_sim_config(sim.base_url, master_key="sk-master")) as running:
        yield running


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error object of ``response``, after checking it is one, as the OpenAI surface sends them."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert re.fullmatch(r"req_[0-9a-f]{24}", response.headers["x-request-id"])
    body = response.json()
    assert list(body) == ["error"] and list(body["error"]) == ["message", "type", "param", "code"]
    return dict(body["error"])


@pytest.mark.parametrize("path", ["/admin", "/admin/", "/admin/nope", "/admin/projects/a/b", "/administrator",
                                  "/health/deployments/x"])
def test_a_path_without_a_route_is_a_404_before_any_key_is_asked_for(gateway: RunningGateway, path: str) -> None:
    for headers in ({}, MASTER):
        found = error(httpx.get(f"{gateway.base_url}{path}", headers=headers), 404)
        assert found == {"message": f"There is no route GET {path}. The OpenAI API is under /v1 "
                                    "(POST /v1/chat/completions, GET /v1/models).",
                         "type": "invalid_request_error", "param": None, "code": "unknown_url"}


@pytest.mark.parametrize(("method", "path"), [("PUT", "/admin/projects/p"), ("DELETE", "/admin/projects"),
                                              ("POST", "/admin/keys/key_x"), ("POST", "/health/deployments"),
                                              ("OPTIONS", "/admin/usage"), ("HEAD", "/admin/keys")])
def test_a_method_a_route_does_not_take_is_a_405(gateway: RunningGateway, method: str, path: str) -> None:
    response = httpx.request(method, f"{gateway.base_url}{path}", headers=MASTER)
    if method == "HEAD":  # no body to read: the status and headers say it
        assert (response.status_code, response.headers["content-type"]) == (405, "application/json")
        return
    assert error(response, 405) == {"message": f"{method} is not allowed on {path}",
                                     "type": "invalid_request_error", "param": None, "code": "method_not_allowed"}


def test_trailing_slashes_reach_the_route(gateway: RunningGateway) -> None:
    admin = httpx.Client(base_url=gateway.base_url, headers=MASTER)
    assert admin.post("/admin/projects/", json={"name": "p"}).status_code == 201
    assert admin.get("/admin/projects//").json()["data"][0]["name"] == "p"
    assert admin.get("/admin/projects/p/").json()["name"] == "p"
    health = admin.get("/health/deployments/")
    assert health.status_code == 200 and health.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(("body", "code"), [(b"{", "invalid_json"), (b"", "invalid_json"), (b"[1]", None)])
def test_a_body_that_is_not_a_json_object_is_a_400(gateway: RunningGateway, body: bytes, code: str | None) -> None:
    response = httpx.post(f"{gateway.base_url}/admin/projects", content=body,
                          headers={**MASTER, "content-type": "application/json"})
    found = error(response, 400)
    assert (found["type"], found["code"]) == ("invalid_request_error", code)
    if code == "invalid_json":
        assert found["message"].startswith("We could not parse the JSON body of your request")


def test_a_body_over_the_limit_is_a_413(gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("modelgate.http.request.MAX_BODY", 1024)
    response = httpx.post(f"{gateway.base_url}/admin/keys", content=b"x" * 2048, headers=MASTER)
    assert error(response, 413)["code"] == "request_too_large"


def test_query_parameters_as_before(gateway: RunningGateway) -> None:
    admin = httpx.Client(base_url=gateway.base_url, headers=MASTER)
    assert admin.post("/admin/keys", json={"project": "p"}).status_code == 201
    # A blank parameter counts as absent (also an unknown one); the last of a repeated one wins.
    assert len(admin.get("/admin/keys", params={"project": "", "colour": ""}).json()["data"]) == 1
    assert admin.get("/admin/keys?project=p&project=q").json()["data"] == []
    assert admin.get("/admin/keys?project=q&project=p&project=").json()["data"][0]["project"] == "p"
    unknown = error(admin.get("/admin/usage", params={"colour": "red"}), 400)
    assert unknown["param"] == "colour" and unknown["message"].startswith("Unknown query parameter 'colour'")
    report = admin.get("/admin/usage", params={"group_by": "project", "format": "csv"})
    assert report.headers["content-type"] == "text/csv; charset=utf-8"
    assert report.headers["content-disposition"] == 'attachment; filename="usage.csv"'
    assert report.text.startswith("project,requests,errors,")


def test_a_project_key_is_refused_everywhere(gateway: RunningGateway) -> None:
    created = httpx.post(f"{gateway.base_url}/admin/keys", json={"project": "p"}, headers=MASTER).json()
    key = {"authorization": f"Bearer {created['key']}"}
    for method, path in [("GET", "/admin/openapi.json"), ("GET", "/admin/projects"), ("POST", "/admin/keys"),
                         ("DELETE", f"/admin/keys/{created['id']}"), ("GET", "/admin/usage")]:
        refused = error(httpx.request(method, f"{gateway.base_url}{path}", headers=key), 403)
        assert refused == {"message": "The admin API needs the gateway's master key; this is a project key.",
                           "type": "permission_error", "param": None, "code": "master_key_required"}, path
    refused = error(httpx.get(f"{gateway.base_url}/health/deployments", headers=key), 403)
    assert refused["message"] == "GET /health/deployments needs the gateway's master key; this is a project key."
    # The key still works where it should, and was not revoked by the refused DELETE.
    assert httpx.get(f"{gateway.base_url}/v1/models", headers=key).status_code == 200
    # No key, or a wrong one: 401.
    assert error(httpx.get(f"{gateway.base_url}/admin/projects"), 401)["code"] == "missing_api_key"
    wrong = error(httpx.get(f"{gateway.base_url}/admin/projects", headers={"x-api-key": "nope"}), 401)
    assert wrong["type"] == "authentication_error"


def test_an_unexpected_failure_is_logged_and_answered_as_a_500(
        gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(wire, "usage_report_json", broken)
    with caplog.at_level(logging.ERROR, logger="modelgate"):
        found = error(httpx.get(f"{gateway.base_url}/admin/usage", headers=MASTER), 500)
    assert found == {"message": "The gateway hit an internal error; the log has the details.",
                     "type": "server_error", "param": None, "code": "internal_error"}
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error on GET /admin/usage"]
    assert logged and logged[0].exc_info is not None and "a bug" in str(logged[0].exc_info[1])
    # The gateway goes on answering.
    assert httpx.get(f"{gateway.base_url}/admin/projects", headers=MASTER).status_code == 200


@pytest.mark.parametrize(("wait", "header"), [(3.4, "3"), (0.2, "1"), (float("nan"), None), (float("inf"), None),
                                              (10**9, "86400")])
async def test_retry_after_is_whole_finite_seconds_or_absent(wait: float, header: str | None) -> None:
    response = await gateway_error(Request({"type": "http", "method": "GET", "path": "/admin/keys", "headers": []}),
                                   ServiceUnavailable("busy", retry_after=wait))
    assert response.status_code == 503
    assert response.headers.get("retry-after") == header

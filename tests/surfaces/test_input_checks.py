"""What request bodies the gateway takes: JSON by its media type (or with none), and image inputs
only as http(s) or data: URLs, on both surfaces; anything else is answered in the surface's
error format, naming the fix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from modelgate.simulator import SimulatorThread
from tests.support import RunningGateway, gateway_in_thread, openai_sim_config

MASTER = "mk-input-checks"
AUTH = {"authorization": f"Bearer {MASTER}"}
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
MESSAGES = {"model": "claude", "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}
PNG = "data:image/png;base64,iVBORw0KGgo="


@pytest.fixture(scope="module")
def gateway(sim: SimulatorThread) -> Iterator[RunningGateway]:
    config = openai_sim_config(sim.base_url, master_key=MASTER)
    config["providers"]["anthropic"] = {"type": "anthropic", "base_url": sim.base_url, "api_key": "sk-sim"}
    config["deployments"].append({"name": "claude", "provider": "anthropic", "model": "claude-sonnet-4-5"})
    with gateway_in_thread(config) as running:
        yield running


@pytest.fixture(scope="module")
def client(gateway: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base_url, headers=AUTH, timeout=30) as http:
        yield http


def post(client: httpx.Client, path: str, body: bytes, content_type: str | None) -> httpx.Response:
    headers = {"content-type": content_type} if content_type is not None else {}
    return client.post(path, content=body, headers=headers)


def openai_image(url: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}]}]}


def anthropic_image(source: dict[str, Any]) -> dict[str, Any]:
    return {**MESSAGES, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, {"type": "image", "source": source}]}]}


# Content types


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "Application/JSON", "application/vnd.api+json", None,
])
def test_json_bodies_are_taken_as_json_or_with_no_content_type(client: httpx.Client, content_type: str | None) -> None:
    body = httpx.Request("POST", "/", json=CHAT).content
    assert post(client, "/v1/chat/completions", body, content_type).status_code == 200
    body = httpx.Request("POST", "/", json=MESSAGES).content
    assert post(client, "/v1/messages", body, content_type).status_code == 200


@pytest.mark.parametrize("content_type", [
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/json",
])
def test_other_content_types_are_415_in_the_openai_format(client: httpx.Client, content_type: str) -> None:
    body = httpx.Request("POST", "/", json=CHAT).content
    for path in ("/v1/chat/completions", "/v1/embeddings"):
        response = post(client, path, body, content_type)
        assert response.status_code == 415, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == "unsupported_media_type"
        assert repr(content_type) in error["message"]
        assert "Content-Type: application/json" in error["message"]


def test_other_content_types_are_415_in_the_anthropic_format(client: httpx.Client) -> None:
    body = httpx.Request("POST", "/", json=MESSAGES).content
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        response = post(client, path, body, "text/plain")
        assert response.status_code == 415, response.text
        answer = response.json()
        assert answer["type"] == "error" and answer["error"]["type"] == "invalid_request_error"
        assert "Content-Type: application/json" in answer["error"]["message"]
        assert response.headers["request-id"] == answer["request_id"]


def test_the_admin_api_takes_json_only(client: httpx.Client) -> None:
    body = b'{"name": "media-types"}'
    response = post(client, "/admin/projects", body, "text/plain")
    assert response.status_code == 415, response.text
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert post(client, "/admin/projects", body, "application/json").status_code in (200, 201)


# Image inputs


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "FILE:///etc/passwd", "ftp://example.com/a.png", "gopher://example.com/",
    "javascript:alert(1)", "/etc/passwd", "http:///no-host", "https://[::1/a.png", "data:image/png;base64", "",
])
def test_openai_image_urls_other_than_http_and_data_are_refused(client: httpx.Client, url: str) -> None:
    response = client.post("/v1/chat/completions", json=openai_image(url))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "messages[0].content[1].image_url.url"
    assert "must be an http(s) URL or a data: URL" in error["message"]


def test_openai_image_urls_that_are_not_strings_are_refused(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json=openai_image({"path": "/etc/passwd"}))
    assert response.status_code == 400
    assert "got object" in response.json()["error"]["message"]


@pytest.mark.parametrize("url", ["https://example.com/cat.png", "HTTP://example.com/cat.png", PNG])
def test_openai_image_urls_over_http_and_data_are_taken(client: httpx.Client, url: str) -> None:
    response = client.post("/v1/chat/completions", json=openai_image(url))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("source", [
    {"type": "url", "url": "file:///etc/passwd"},
    {"type": "url", "url": "data:image/png;base64,iVBORw0KGgo="},
    {"type": "url", "url": "ftp://example.com/a.png"},
    {"type": "url", "url": 7},
    {"type": "base64", "media_type": "text/html", "data": "PGgxPg=="},
    {"type": "base64", "media_type": "image/png;x=,", "data": "iVBORw0KGgo="},
])
def test_anthropic_image_sources_other_than_http_and_base64_images_are_refused(
        client: httpx.Client, source: dict[str, Any]) -> None:
    response = client.post("/v1/messages", json=anthropic_image(source))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "must be an http(s) URL" in error["message"] or "must be an image type" in error["message"]


def test_anthropic_image_sources_in_tool_results_are_checked_too(client: httpx.Client) -> None:
    body = {**MESSAGES, "messages": [
        {"role": "user", "content": "Look"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "look", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
            {"type": "image", "source": {"type": "url", "url": "file:///etc/shadow"}}]}]}]}
    response = client.post("/v1/messages", json=body)
    assert response.status_code == 400, response.text
    assert "must be an http(s) URL, got 'file:///etc/shadow'" in response.json()["error"]["message"]


@pytest.mark.parametrize("source", [
    {"type": "url", "url": "https://example.com/cat.png"},
    {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
])
def test_anthropic_image_sources_over_http_and_base64_are_taken(client: httpx.Client, source: dict[str, Any]) -> None:
    response = client.post("/v1/messages", json=anthropic_image(source))
    assert response.status_code == 200, response.text

"""Every route that reaches a model is governed: auth, rate limits, budgets and metering, on both
surfaces, streaming or not, driven by the official openai and anthropic SDKs."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from modelgate.simulator import SimulatorThread
from tests.support import RunningGateway, gateway_in_thread, openai_sim_config

MASTER = "mk-routes"


@dataclass
class Result:
    status: int
    request_id: str
    headers: Mapping[str, str]
    error_type: str | None = None


def chat(gateway: RunningGateway, key: str) -> Result:
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], max_tokens=10)
    raw.parse()
    return Result(raw.status_code, raw.headers["x-request-id"], raw.headers)


def chat_stream(gateway: RunningGateway, key: str) -> Result:
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    with client.chat.completions.with_streaming_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], max_tokens=10, stream=True,
            stream_options={"include_usage": True}) as response:
        chunks = list(response.parse())
        assert chunks[-1].usage is not None
        return Result(response.status_code, response.headers["x-request-id"], response.headers)


def embeddings(gateway: RunningGateway, key: str) -> Result:
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    raw = client.embeddings.with_raw_response.create(model="embed", input=["one", "two"])
    raw.parse()
    return Result(raw.status_code, raw.headers["x-request-id"], raw.headers)


def messages(gateway: RunningGateway, key: str) -> Result:
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="gpt-4o", max_tokens=10, messages=[{"role": "user", "content": "Hi"}])
    raw.parse()
    return Result(raw.status_code, raw.headers["request-id"], raw.headers)


def messages_stream(gateway: RunningGateway, key: str) -> Result:
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)
    with client.messages.with_streaming_response.create(
            model="gpt-4o", max_tokens=10, messages=[{"role": "user", "content": "Hi"}], stream=True) as response:
        events = list(response.parse())
        assert events[-1].type == "message_stop"
        return Result(response.status_code, response.headers["request-id"], response.headers)


def responses(gateway: RunningGateway, key: str) -> Result:
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    raw = client.responses.with_raw_response.create(model="gpt-4o", input="Hi", max_output_tokens=16)
    raw.parse()
    return Result(raw.status_code, raw.headers["x-request-id"], raw.headers)


def responses_stream(gateway: RunningGateway, key: str) -> Result:
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    with client.responses.with_streaming_response.create(
            model="gpt-4o", input="Hi", max_output_tokens=16, stream=True) as response:
        events = list(response.parse())
        assert events[-1].type == "response.incomplete"
        return Result(response.status_code, response.headers["x-request-id"], response.headers)


ROUTES: dict[str, tuple[Callable[[RunningGateway, str], Result], str]] = {
    "chat": (chat, "chat"),
    "chat-stream": (chat_stream, "chat"),
    "embeddings": (embeddings, "embeddings"),
    "messages": (messages, "messages"),
    "messages-stream": (messages_stream, "messages"),
    "responses": (responses, "responses"),
    "responses-stream": (responses_stream, "responses"),
}


def refused(route: Callable[[RunningGateway, str], Result], gateway: RunningGateway, key: str) -> Result:
    try:
        route(gateway, key)
    except (openai.APIStatusError, anthropic.APIStatusError) as error:
        body: Any = error.body
        inner = body.get("error", body) if isinstance(body, dict) else {}
        headers = error.response.headers
        return Result(error.status_code, headers.get("x-request-id") or headers.get("request-id") or "", headers,
                      inner.get("type"))
    raise AssertionError("the request was not refused")


@pytest.fixture(scope="module")
def gateway(sim: SimulatorThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, Path]]:
    folder = tmp_path_factory.mktemp("routes")
    database = folder / "modelgate.db"
    config = openai_sim_config(sim.base_url, master_key=MASTER, database_url=f"sqlite:///{database}",
                               journal_dir=str(folder / "journal"))
    with gateway_in_thread(config) as running:
        yield running, database


def new_key(gateway: RunningGateway, **limits: Any) -> str:
    response = httpx.post(f"{gateway.base_url}/admin/keys", headers={"authorization": f"Bearer {MASTER}"},
                          json={"project": "routes", **limits})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def records(database: Path, request_ids: list[str]) -> dict[str, tuple[str, int]]:
    """The usage records of these requests, once the recorder wrote them all: id → (route, status)."""
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(database) as connection:
            marks = ",".join("?" * len(request_ids))
            rows = connection.execute(f"SELECT request_id, route, status FROM usage WHERE request_id IN ({marks})",
                                      request_ids).fetchall()
        if len(rows) == len(request_ids) or time.monotonic() > deadline:
            return {row[0]: (row[1], row[2]) for row in rows}
        time.sleep(0.05)


@pytest.mark.parametrize("name", list(ROUTES))
def test_every_model_route_is_limited_budgeted_and_metered(gateway: tuple[RunningGateway, Path], name: str) -> None:
    running, database = gateway
    route, route_name = ROUTES[name]

    with pytest.raises((openai.AuthenticationError, anthropic.AuthenticationError)):
        route(running, "mg-not-a-key")

    limited = new_key(running, rpm=1)
    answered = route(running, limited)
    assert answered.status == 200
    assert answered.headers["x-ratelimit-limit-requests"] == "1"
    assert answered.headers["x-ratelimit-remaining-requests"] == "0"
    over_rate = refused(route, running, limited)
    assert over_rate.status == 429 and over_rate.error_type == "rate_limit_error"
    assert int(over_rate.headers["retry-after"]) >= 1
    # The refusal says which limit and when it resets, as every answer does.
    assert over_rate.headers["x-ratelimit-limit-requests"] == "1"
    assert over_rate.headers["x-ratelimit-remaining-requests"] == "0"
    assert over_rate.headers["x-ratelimit-reset-requests"]

    broke = new_key(running, budget=0)
    over_budget = refused(route, running, broke)
    assert over_budget.status == 429
    # OpenAI's type for a spent quota; the Anthropic surface speaks its own error vocabulary.
    assert over_budget.error_type == ("rate_limit_error" if route_name == "messages" else "insufficient_quota")

    ids = [answered.request_id, over_rate.request_id, over_budget.request_id]
    assert records(database, ids) == {answered.request_id: (route_name, 200), over_rate.request_id: (route_name, 429),
                                      over_budget.request_id: (route_name, 429)}


def test_stored_responses_are_read_without_a_model_call_or_a_record(gateway: tuple[RunningGateway, Path]) -> None:
    running, database = gateway
    key = new_key(running, rpm=1)
    client = openai.OpenAI(base_url=running.v1, api_key=key, max_retries=0)
    raw = client.responses.with_raw_response.create(model="gpt-4o", input="Hi", max_output_tokens=16)
    created = raw.parse()
    # The key's one request a minute is spent: reading, listing and deleting call no model.
    ids = []
    for call in (lambda: client.responses.with_raw_response.retrieve(created.id),
                 lambda: client.responses.input_items.with_raw_response.list(created.id),
                 lambda: client.responses.with_raw_response.delete(created.id)):
        answer = call()
        assert answer.status_code == 200
        ids.append(answer.headers["x-request-id"])
    assert records(database, [raw.headers["x-request-id"], *ids]) == {raw.headers["x-request-id"]: ("responses", 200)}

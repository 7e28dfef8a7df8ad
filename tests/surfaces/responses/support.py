"""What the Responses API tests share: tools, the deployments that think, requests, and the checks
every Responses stream gets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from modelgate.simulator import SimulatorThread
from tests.openai_spec import OpenAISpec
from tests.support import RunningGateway, gateway_in_thread

MASTER = "mk-responses"
WEATHER: dict[str, Any] = {
    "type": "function", "name": "get_weather", "description": "Weather for a city", "strict": False,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TIME: dict[str, Any] = {
    "type": "function", "name": "get_time", "strict": False,
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}
# Deployments that think, and what it takes to make them think.
REASONERS: dict[str, dict[str, Any]] = {
    "claude": {"reasoning": {"effort": "low", "summary": "auto"}, "max_output_tokens": 4000},
    "gemini": {"reasoning": {"effort": "low", "summary": "auto"}},
    "deepseek-reasoner": {},
}


@contextmanager
def sim_gateway(sim: SimulatorThread, master: str, deployments: list[dict[str, Any]]) -> Iterator[RunningGateway]:
    """A gateway with ``deployments`` in front of the simulator as an OpenAI-, DeepSeek-,
    Anthropic- and Gemini-type provider."""
    root = sim.base_url
    providers = {
        "openai": {"type": "openai", "base_url": f"{root}/v1", "api_key": "sk-sim", "flavor": "openai"},
        "deepseek": {"type": "openai", "base_url": f"{root}/v1", "api_key": "sk-sim", "flavor": "deepseek"},
        "anthropic": {"type": "anthropic", "base_url": root, "api_key": "sk-sim"},
        "gemini": {"type": "gemini", "base_url": root, "api_key": "sk-sim"},
    }
    with gateway_in_thread({"master_key": master, "providers": providers, "deployments": deployments}) as running:
        yield running


def post(gateway: RunningGateway, body: dict[str, Any], key: str = MASTER) -> httpx.Response:
    return httpx.post(f"{gateway.v1}/responses", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30)


def get(gateway: RunningGateway, path: str, key: str = MASTER, **params: Any) -> httpx.Response:
    return httpx.get(f"{gateway.v1}/responses{path}", params=params, headers={"authorization": f"Bearer {key}"},
                     timeout=30)


def new_key(gateway: RunningGateway, project: str) -> str:
    response = httpx.post(f"{gateway.base_url}/admin/keys", headers={"authorization": f"Bearer {MASTER}"},
                          json={"project": project})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def stream_events(response: httpx.Response, spec: OpenAISpec) -> list[dict[str, Any]]:
    """The events of a Responses stream, each checked: its ``event:`` line names its type, it
    matches its component of the spec, and sequence numbers count up from 0."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for frame in response.text.split("\n\n"):
        if not frame.strip():
            continue
        lines = frame.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
        event = json.loads(lines[1][6:])
        assert event["type"] == lines[0][7:]
        spec.validate_stream_event(event)
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "[DONE]" not in response.text
    return events


def check_item_events(events: list[dict[str, Any]]) -> None:
    """Every item is added before its deltas and done after them, at one output index and id;
    the items' output indexes count up from 0."""
    added: dict[int, str] = {}
    done: set[int] = set()
    for event in events:
        index = event.get("output_index")
        if event["type"] == "response.output_item.added":
            assert index == len(added) and index not in added
            added[index] = event["item"]["id"]
        elif index is not None:
            assert index in added and index not in done, event
            item_id = event["item"]["id"] if "item" in event else event["item_id"]
            assert item_id == added[index]
            if event["type"] == "response.output_item.done":
                done.add(index)
    assert done == set(added)

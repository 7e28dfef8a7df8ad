"""Fixtures: a simulator per test (async) and one per module in a background thread (sync SDK clients)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from modelgate.simulator import SimConfig, Simulator, SimulatorThread

API_KEY = "sk-sim-test"


def post_json(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """A plain HTTP POST (no SDK) for wire-level assertions; returns (status, parsed JSON body)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def make_config(**models: dict[str, object]) -> SimConfig:
    return SimConfig.from_dict(
        {
            "api_key": API_KEY,
            "models": {
                "reasoner-r": {"reasoning": True, "reasoning_field": "reasoning"},
                "deepseek-v4": {"reasoning": True, "require_reasoning_echo": True},
                "tiny-context": {"context_window": 10},
                "embed-small": {"embedding_dimensions": 16},
                **models,
            },
        }
    )


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(make_config())
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture(scope="module")
def sim_thread() -> Iterator[SimulatorThread]:
    with SimulatorThread(make_config()) as running:
        yield running

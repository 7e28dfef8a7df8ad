"""A gateway in front of every provider type of the simulator, for the Responses API tests."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from modelgate.simulator import SimConfig, SimulatorThread
from tests.support import RunningGateway
from tests.surfaces.responses.support import MASTER, sim_gateway


@pytest.fixture(scope="module")
def responses_sim() -> Iterator[SimulatorThread]:
    config = SimConfig.from_dict({"api_key": "sk-sim", "models": {
        "deepseek-reasoner": {"reasoning": True, "require_reasoning_echo": True},
        "midstream": {"fault": "error_after=6"},
    }})
    with SimulatorThread(config) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def gateway(responses_sim: SimulatorThread) -> Iterator[RunningGateway]:
    with sim_gateway(responses_sim, MASTER, [
        {"name": "gpt-4o", "provider": "openai", "model": "gpt-4o"},
        {"name": "midstream", "provider": "openai", "model": "midstream"},
        {"name": "deepseek-reasoner", "provider": "deepseek", "model": "deepseek-reasoner"},
        {"name": "claude", "provider": "anthropic", "model": "claude-sonnet-4-5"},
        {"name": "gemini", "provider": "gemini", "model": "gemini-2.5-flash"},
    ]) as running:
        yield running


@pytest.fixture
def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=MASTER, max_retries=0)

"""The OpenAI Agents SDK, unchanged, against the gateway: its default model (whatever name the SDK
picks, served here by a deployment of that name in front of each provider type) over the Responses
API, with its own client made from ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``.

An agent with a function tool runs its loop (model → tool call → tool output → model), goes on
with ``to_input_list()`` and with ``previous_response_id``, and streams; with reasoning asked for,
the reasoning items it sends back by id carry each provider's signatures to the next turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from agents import Agent, ModelSettings, RunConfig, Runner, function_tool
from agents.items import ReasoningItem, ToolCallItem, ToolCallOutputItem
from agents.models import get_default_model
from openai.types.shared import Reasoning

from modelgate.simulator import SimulatorThread
from tests.support import RunningGateway
from tests.surfaces.responses.support import MASTER, sim_gateway

T = TypeVar("T")

# The upstream behind the SDK's default model, per provider type.
UPSTREAMS: dict[str, dict[str, Any]] = {
    "openai-chat": {"provider": "openai", "model": "gpt-4o"},
    "openai-responses": {"provider": "openai", "model": "gpt-5", "api": "responses"},
    "deepseek": {"provider": "deepseek", "model": "deepseek-reasoner"},
    "anthropic": {"provider": "anthropic", "model": "claude-sonnet-4-5"},
    "gemini": {"provider": "gemini", "model": "gemini-2.5-flash"},
}


# The upstreams that think when asked (the simulator's reasoning models).
THINKERS = frozenset({"deepseek", "anthropic", "gemini"})


@pytest.fixture(scope="module", params=list(UPSTREAMS))
def upstream(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def default_model_gateway(upstream: str, responses_sim: SimulatorThread) -> Iterator[RunningGateway]:
    with sim_gateway(responses_sim, MASTER, [{"name": get_default_model(), **UPSTREAMS[upstream]}]) as running:
        yield running


@pytest.fixture
def sdk_env(default_model_gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> RunConfig:
    """The SDK's own client, configured as its users do: from the environment."""
    monkeypatch.setenv("OPENAI_BASE_URL", default_model_gateway.v1)
    monkeypatch.setenv("OPENAI_API_KEY", MASTER)
    monkeypatch.delenv("OPENAI_DEFAULT_MODEL", raising=False)
    return RunConfig(tracing_disabled=True)  # traces would go to OpenAI's servers


@pytest.fixture(scope="module")
def run() -> Iterator[Callable[[Awaitable[T]], T]]:
    """Runs coroutines on one event loop for the whole module: the SDK keeps one HTTP client per
    process, bound to the loop that first used it."""
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete
    loop.close()


@function_tool
def get_weather(city: str) -> str:
    """The weather for a city."""
    return f"Sunny in {city}, 24 degrees"


def weather_agent(**settings: Any) -> Agent[Any]:
    return Agent(name="forecaster", instructions="Answer briefly.", tools=[get_weather],
                 model_settings=ModelSettings(**settings))


def test_agent_loop_with_a_tool_and_follow_ups(sdk_env: RunConfig, run: Callable[[Awaitable[None]], None]) -> None:
    agent = weather_agent()

    async def conversation() -> None:
        first = await Runner.run(agent, "What is the weather in Oslo?", run_config=sdk_env)
        kinds = [type(item) for item in first.new_items]
        assert ToolCallItem in kinds and ToolCallOutputItem in kinds
        # The tool's output went back to the model, which answered with it.
        assert "after the tool returned: Sunny in" in str(first.final_output)
        assert first.last_response_id and first.last_response_id.startswith("resp_")
        # Carried on by the client (the whole history sent again) and by the gateway (stored state).
        by_history = await Runner.run(agent, [*first.to_input_list(), {"role": "user", "content": "And tomorrow?"}],
                                      run_config=sdk_env)
        assert str(by_history.final_output).startswith("Simulated reply from")
        by_id = await Runner.run(agent, "And in Bergen?", run_config=sdk_env,
                                 previous_response_id=first.last_response_id)
        assert str(by_id.final_output).startswith("Simulated reply from")

    run(conversation())


def test_streamed_agent_run(sdk_env: RunConfig, run: Callable[[Awaitable[tuple[str, list[str]]]], Any]) -> None:
    async def streamed() -> tuple[str, list[str]]:
        result = Runner.run_streamed(weather_agent(), "What is the weather in Rome?", run_config=sdk_env)
        types: list[str] = [event.type async for event in result.stream_events()]
        return str(result.final_output), types

    final, types = run(streamed())
    assert "after the tool returned: Sunny in" in final
    assert "raw_response_event" in types and "run_item_stream_event" in types


def test_reasoning_items_go_back_by_id(sdk_env: RunConfig, upstream: str, run: Callable[[Awaitable[Any]], Any]) -> None:
    """With reasoning asked for, the SDK sends each reasoning item back as it came (by id, without
    encrypted content): the tool turn after it reaches the provider with its signatures, or the
    provider (which checks them in the simulator) refuses it."""
    agent = weather_agent(reasoning=Reasoning(effort="low", summary="auto"), max_tokens=4000)
    result = run(Runner.run(agent, "What is the weather in Oslo?", run_config=sdk_env))
    assert "after the tool returned: Sunny in" in str(result.final_output)
    thought = any(isinstance(item, ReasoningItem) for item in result.new_items)
    assert thought == (upstream in THINKERS)

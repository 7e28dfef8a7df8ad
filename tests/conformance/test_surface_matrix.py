"""The conformance matrix across formats: every scenario through every surface to every provider type.

The provider suite (``test_conformance.py``) checks each adapter on its own; this one checks the whole
gateway as clients see it. Each scenario is sent in each wire format the gateway speaks (Chat
Completions, Responses, Messages, ``surface_clients.py``) to a deployment of each provider type, all
backed by the simulator, which speaks each upstream's format and refuses, as the real APIs do, a turn
whose opaque reasoning state was lost or forged. ``docs/conformance.md`` has the matrix as a table;
``test_the_documented_matrix_is_the_tested_one`` keeps the two the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from modelgate.simulator import SimConfig, SimulatorThread
from tests.conformance.surface_clients import (
    CLOCK,
    PERSON,
    SURFACES,
    WEATHER,
    Answer,
    Ask,
    SurfaceClient,
)
from tests.support import RunningGateway, gateway_in_thread

MASTER = "mk-matrix"
DOCS = Path(__file__).parents[2] / "docs" / "conformance.md"

PLAIN, REASONER, DEEPSEEK = "matrix-plain", "matrix-reasoner", "matrix-deepseek"
LIMITED, BROKEN_STREAM = "matrix-429", "matrix-midstream"

# Provider type -> (provider settings without the simulator's address, the simulator model that reasons).
# Anthropic thinks when asked to; the others think by model.
PROVIDERS: dict[str, tuple[dict[str, Any], str | None]] = {
    "openai": ({"type": "openai", "flavor": "openai"}, None),
    "azure": ({"type": "azure", "api_version": "2024-10-21"}, None),
    "anthropic": ({"type": "anthropic"}, PLAIN),
    "gemini": ({"type": "gemini"}, REASONER),
    "deepseek": ({"type": "openai", "flavor": "deepseek"}, DEEPSEEK),
    # OpenAI's Responses API upstream (api: responses): reasoning items with encrypted content.
    "openai-responses": ({"type": "openai", "flavor": "openai"}, REASONER),
}
API = {"openai-responses": "responses"}
# Where the provider type's reasoning is raw text with no opaque state to carry (DeepSeek's
# reasoning_content must still come back on tool turns: the simulator checks that).
REASONS = [name for name, (_, model) in PROVIDERS.items() if model is not None]

# What the catalog would say of a reasoning model: an upstream of OpenAI's formats is asked for
# reasoning (a Messages client's thinking budget, as an effort) only where the model reasons.
REASONS_FACTS = {"capabilities": ["chat", "tools", "reasoning", "json", "streaming"]}

SCENARIOS = ("text", "usage", "tool_call", "streamed_tool_arguments", "parallel_tools", "reasoning",
             "multi_turn", "structured_output", "errors", "mid_stream_failure")


def applies(scenario: str, provider: str) -> bool:
    """Reasoning scenarios need a provider type whose models show their reasoning."""
    return provider in REASONS if scenario in ("reasoning", "multi_turn") else True


def cases() -> Iterator[Any]:
    for scenario in SCENARIOS:
        for surface in SURFACES:
            for provider in PROVIDERS:
                if applies(scenario, provider):
                    yield pytest.param(scenario, surface, provider, id=f"{scenario}-{surface}-{provider}")


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorThread]:
    config = SimConfig.from_dict({"api_key": "sk-sim", "models": {
        PLAIN: {},
        REASONER: {"reasoning": True},
        DEEPSEEK: {"reasoning": True, "require_reasoning_echo": True},
        LIMITED: {"fault": "status=429;retry_after=3"},
        BROKEN_STREAM: {"fault": "error_after=6"},  # every API has sent some text by then
    }})
    with SimulatorThread(config) as sim:
        yield sim


def base_url(provider: dict[str, Any], sim: SimulatorThread) -> str:
    return f"{sim.base_url}/v1" if provider["type"] == "openai" else sim.base_url


@pytest.fixture(scope="module")
def gateway(simulator: SimulatorThread) -> Iterator[RunningGateway]:
    providers: dict[str, Any] = {}
    deployments: list[dict[str, Any]] = []
    for name, (settings, reasoner) in PROVIDERS.items():
        providers[name] = {**settings, "base_url": base_url(settings, simulator), "api_key": "sk-sim"}
        models = {"plain": PLAIN, "limited": LIMITED, "broken": BROKEN_STREAM}
        if reasoner is not None:
            models["reasoner"] = reasoner
        deployments += [{"name": f"{name}-{kind}", "provider": name, "model": model, "retries": 0,
                         "api": API.get(name, "chat"), **(REASONS_FACTS if kind == "reasoner" else {})}
                        for kind, model in models.items()]
    with gateway_in_thread({"master_key": MASTER, "providers": providers, "deployments": deployments}) as running:
        yield running


@pytest.fixture
def http(gateway: RunningGateway) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {MASTER}", "x-api-key": MASTER, "anthropic-version": "2023-06-01"}
    with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=30) as client:
        yield client


def answer(result: httpx.Response | Answer) -> Answer:
    if isinstance(result, httpx.Response):
        raise AssertionError(f"{result.request.url.path} answered {result.status_code}: {result.text[:500]}")
    assert result.completed, f"the answer did not end cleanly: {result}"
    return result


def both(client: SurfaceClient, http: httpx.Client, deployment: str, history: list[dict[str, Any]],
         ask: Ask) -> tuple[Answer, Answer]:
    return (answer(client.send(http, deployment, history, ask, stream=False)),
            answer(client.send(http, deployment, history, ask, stream=True)))


def tool_round(client: SurfaceClient, http: httpx.Client, deployment: str, ask: Ask) -> Answer:
    """A tool call, its results sent back with the assistant turn as it came, and the final answer."""
    history = client.user(ask.text)
    first = answer(client.send(http, deployment, history, ask, stream=False))
    assert first.calls and first.finish == "tool_calls", first
    history += first.history + client.tool_results(first, "18 degrees")
    final = answer(client.send(http, deployment, history, ask, stream=False))
    assert not final.calls and "after the tool returned: 18 degrees" in final.text, final
    return first


@pytest.mark.parametrize(("scenario", "surface", "provider"), list(cases()))
def test_matrix(scenario: str, surface: str, provider: str, http: httpx.Client) -> None:
    client = SURFACES[surface]
    run = globals()[f"scenario_{scenario}"]
    run(client, http, provider)


def scenario_text(client: SurfaceClient, http: httpx.Client, provider: str) -> None:
    whole, streamed = both(client, http, f"{provider}-plain", client.user("Tell me about the sea"), Ask())
    assert whole.text.startswith(f"Simulated reply from {PLAIN} to: Tell me about the sea")
    assert streamed.text == whole.text and whole.finish == streamed.finish == "stop"
    assert streamed.events > 3, "the answer was not streamed"


def scenario_usage(client: SurfaceClient, http: httpx.Client, provider: str) -> None:
    whole, streamed = both(client, http, f"{provider}-plain", client.user("Count these tokens please"), Ask())
    assert whole.input_tokens > 0 and whole.output_tokens > 0
    assert (streamed.input_tokens, streamed.output_tokens) == (whole.input_tokens, whole.output_tokens)


def scenario_tool_call(client: SurfaceClient, http: httpx.Client, provider: str) -> None:
    ask = Ask(text="What is the weather in Paris?", tools=[WEATHER])
    whole = answer(client.send(http, f"{provider}-plain", client.user(ask.text), ask, stream=False))
    assert [c.name for c in whole.calls] == ["get_weather"] and whole.finish == "tool_calls"
    assert isinstance(whole.calls[0].arguments.get("city"), str) and whole.calls[0].id


def scenario_streamed_tool_arguments(client: SurfaceClient, http: httpx.Client, provider: str) -> None:
    ask = Ask(text="What is the weather in Rome?", tools=[WEATHER])
    whole, streamed = both(client, http, f"{provider}-plain", client.user(ask.text), ask)
    assert [(c.name, c.arguments) for c in streamed.calls] == [(c.name, c.arguments) for c in whole.calls]
    assert streamed.finish == "tool_calls"


def scenario_parallel_tools(client: SurfaceClient, http: httpx.Client, provider: str) -> None:
    ask = Ask(text="Use parallel tools for the weather and the time", tools=[WEATHER, CLOCK])
    first = tool_round(client, http, f"{provider}-plain", ask)
    assert [c.name for c in first.calls] == ["get_weather", "get_time"]
    assert len({c.id for c in first.calls}) == 2


def scenario_reasoning(client: SurfaceClient, http: httpx.Client, provider: str) -> None:
    ask = Ask(text="Think about the sea", reasoning=True)
    whole, streamed = both(client, http, f"{provider}-reasoner", client.user(ask.text), ask)
    assert "The user wrote about Think about the sea" in "".join(r.text for r in whole.reasoning)
    assert [r.text for r in streamed.reasoning] == [r.text for r in whole.reasoning]
    assert whole.text and whole.finish == "stop"


def scenario_multi_turn(client: SurfaceClient, http: httpx.Client, provider: str) -> None:
    """The simulator refuses the second turn unless the first turn's opaque state came back intact."""
    first = tool_round(client, http, f"{provider}-reasoner",
                       Ask(text="Weather in Oslo, think first", tools=[WEATHER], reasoning=True))
    assert first.reasoning


def scenario_structured_output(client: SurfaceClient, http: httpx.Client, provider: str) -> None:
    ask = Ask(text="Invent a person", schema=PERSON)
    whole = answer(client.send(http, f"{provider}-plain", client.user(ask.text), ask, stream=False))
    person = orjson.loads(whole.text)
    assert isinstance(person["name"], str) and isinstance(person["age"], int), person


def scenario_errors(client: SurfaceClient, http: httpx.Client, provider: str) -> None:
    for stream in (False, True):
        refused = client.send(http, f"{provider}-limited", client.user("hello"), Ask(), stream=stream)
        assert isinstance(refused, httpx.Response) and refused.status_code == 429
        body = refused.json()
        if client.name == "messages":
            assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
        else:
            # An OpenAI-format upstream's own word is kept ("requests" is what OpenAI says on a 429).
            assert body["error"]["type"] in ("rate_limit_error", "requests") and body["error"]["message"]
        # The upstream's 3 s, or what is left of the target's cool-down after an earlier 429 of it.
        assert 1 <= int(refused.headers["retry-after"]) <= 3


def scenario_mid_stream_failure(client: SurfaceClient, http: httpx.Client, provider: str) -> None:
    result = client.send(http, f"{provider}-broken", client.user("Tell me a long story"), Ask(), stream=True)
    assert isinstance(result, Answer), f"the stream should have started: {result}"
    assert result.error is not None and not result.completed, result


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "deepseek"])
def test_a_conversation_that_switches_format_keeps_its_reasoning_state(provider: str, http: httpx.Client) -> None:
    """Responses → Chat Completions → Messages on one reasoning deployment, the client carrying each
    turn into the next format itself; the simulator refuses any tool turn whose reasoning state
    (signature, thought signature, reasoning_content) did not come back intact."""
    responses, chat, messages = SURFACES["responses"], SURFACES["chat"], SURFACES["messages"]
    deployment = f"{provider}-reasoner"
    ask = Ask(text="Weather in Lima, think first", tools=[WEATHER], reasoning=True)
    first = answer(responses.send(http, deployment, responses.user(ask.text), ask, stream=False))
    assert first.calls and first.reasoning

    history = chat.user(ask.text) + chat.to_history(first, "responses") + chat.tool_results(first, "rain")
    second = answer(chat.send(http, deployment, history, ask, stream=True))
    assert "after the tool returned: rain" in second.text

    follow = Ask(text="Use parallel tools now, think first", tools=[WEATHER, CLOCK], reasoning=True)
    history = (messages.user(ask.text) + messages.to_history(first, "responses") + messages.tool_results(first, "rain")
               + messages.to_history(second, "chat") + messages.user(follow.text))
    third = answer(messages.send(http, deployment, history, follow, stream=False))
    assert len(third.calls) == 2 and third.reasoning
    history += third.history + messages.tool_results(third, "noon")
    fourth = answer(messages.send(http, deployment, history, follow, stream=True))
    assert "after the tool returned: noon" in fourth.text


@pytest.mark.parametrize("surface", ["chat", "messages"])
def test_a_tool_turn_of_another_provider_goes_on_on_gemini(surface: str, http: httpx.Client) -> None:
    """A conversation moved to Gemini mid-turn: the call Claude made has no thought signature, which
    Gemini 3 (the simulator's reasoning model) requires of the turn's first call, so the gateway sends
    Google's documented stand-in."""
    client = SURFACES[surface]
    ask = Ask(text="Weather in Quito, think first", tools=[WEATHER], reasoning=True)
    first = answer(client.send(http, "anthropic-reasoner", client.user(ask.text), ask, stream=False))
    assert first.calls
    history = client.user(ask.text) + first.history + client.tool_results(first, "sun")
    second = answer(client.send(http, "gemini-reasoner", history, ask, stream=True))
    assert "after the tool returned: sun" in second.text


def test_the_documented_matrix_is_the_tested_one() -> None:
    if not DOCS.exists():
        pytest.fail(f"{DOCS} is missing: it documents this matrix")
    rows = {}
    for line in DOCS.read_text().splitlines():
        match = re.fullmatch(r"\| `(\w+)` \|(.*)\|", line.strip())
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    assert list(rows) == list(SCENARIOS)
    for scenario, cells in rows.items():
        expected = ["all" if all(applies(scenario, p) for p in PROVIDERS)
                    else ", ".join(p for p in PROVIDERS if applies(scenario, p))] * len(SURFACES)
        assert cells[:len(SURFACES)] == expected, f"docs/conformance.md row {scenario}: {cells}"

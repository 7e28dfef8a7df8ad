"""Config, tokens, fault specs, schema values, the control API and the ways to run a simulator."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from modelgate.simulator import (
    DEFAULT_REASONING_MODELS,
    FaultSpecError,
    ModelSpec,
    SimConfig,
    Simulator,
    SimulatorThread,
    count_tokens,
    message_tokens,
    parse_fault,
)
from modelgate.simulator.replies import Prompt, generate_reply
from modelgate.simulator.schema_values import value_for_schema
from modelgate.simulator.tokens import split_words, truncate_to_tokens
from tests.simulator.conftest import API_KEY
from tests.support import DEADLINE_S, eventually


def test_count_tokens_formula() -> None:
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("") == 0
    assert count_tokens("don't stop-me now") == 7
    assert count_tokens('{"city": "Paris"}') == 9
    assert message_tokens("Hello, world!") == 7


def test_truncate_and_split_words() -> None:
    assert truncate_to_tokens("Hello, big world!", 3) == "Hello, big"
    assert truncate_to_tokens("Hello", 5) == "Hello"
    assert truncate_to_tokens("Hello", 0) == ""
    assert split_words("a bc  d") == ["a ", "bc  ", "d"]
    assert "".join(split_words(" x y ")) == " x y "


def test_parse_fault_specs() -> None:
    limited = parse_fault("status=429;retry_after=2;retry_after_ms=150")
    assert (limited.kind, limited.status, limited.retry_after, limited.retry_after_ms) == ("status", 429, "2", "150")
    assert parse_fault("timeout").seconds == 600
    assert parse_fault("timeout=1.5").seconds == 1.5
    assert (parse_fault("cut=3").kind, parse_fault("cut=3").after) == ("cut", 3)
    assert parse_fault("error_after=0").after == 0
    assert parse_fault("malformed").kind == "malformed" and parse_fault("safety").kind == "safety"
    assert (parse_fault("echo=user").kind, parse_fault("echo=user").field) == ("echo", "user")
    for bad, fragment in [
        ("status=200", "400-599"),
        ("status=abc", "integer"),
        ("explode", "unknown fault"),
        ("cut=1;colour=red", "unknown fault option"),
        ("", "empty"),
        ("safety=1", "no value"),
        ("echo", "body field"),
    ]:
        with pytest.raises(FaultSpecError, match=fragment):
            parse_fault(bad)


def test_config_from_dict_and_file(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(
        "api_key: k1\n"
        "defaults:\n  latency_ms: 5\n"
        "models:\n"
        "  deepseek-reasoner:\n    require_reasoning_echo: true\n"
        "  plain:\n    fault: status=503\n    embedding_dimensions: 4\n"
    )
    config = SimConfig.from_file(path)
    assert config.api_key == "k1"
    assert config.model("deepseek-reasoner") == ModelSpec(reasoning=True, require_reasoning_echo=True, latency_ms=5)
    assert config.model("plain").fault == "status=503" and config.model("plain").latency_ms == 5
    assert config.model("unlisted") == ModelSpec(latency_ms=5)
    assert config.model("o4-mini").reasoning is True and "o4-mini" in DEFAULT_REASONING_MODELS
    off = SimConfig.from_dict({"models": {"o3-mini": {"reasoning": False}}})
    assert off.model("o3-mini").reasoning is False
    with pytest.raises(ValueError, match="unknown model setting"):
        SimConfig.from_dict({"models": {"x": {"latency": 1}}})
    with pytest.raises(ValueError, match="unknown simulator setting"):
        SimConfig.from_dict({"apikey": "x"})


def test_schema_values() -> None:
    assert value_for_schema({"type": "OBJECT", "properties": {"n": {"type": "NUMBER"}, "s": {"type": "STRING"}}}) == {
        "n": 1,
        "s": "text",
    }
    assert value_for_schema({"type": "array", "items": {"type": "integer"}, "minItems": 2}) == [1, 1]
    assert value_for_schema({"anyOf": [{"type": "null"}, {"type": "boolean"}]}) is True
    assert value_for_schema({"type": "integer", "minimum": 5}) == 5
    assert value_for_schema({"type": "string", "format": "date"}) == "2025-01-01"
    assert value_for_schema({"allOf": [{"properties": {"a": {"type": "string"}}}, {"properties": {"b": {}}}]}) == {
        "a": "text",
        "b": "text",
    }
    assert value_for_schema({"type": ["string", "null"], "minLength": 6}) == "textxx"


def test_reply_generator_budget_covers_reasoning_first() -> None:
    prompt = Prompt(
        model="m",
        last_user_text="why is the sky blue",
        fingerprint=b"\x00" * 32,
        prompt_tokens=8,
        reasoning=True,
        max_tokens=5,
    )
    reply = generate_reply(prompt)
    assert reply.finish == "length" and reply.text == "" and count_tokens(reply.reasoning) == 5
    assert reply.completion_tokens == 5


@pytest.fixture
async def http(sim: Simulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=sim.base_url) as session:
        yield session


async def _chat(http: aiohttp.ClientSession, model: str, headers: dict[str, str] | None = None) -> int:
    async with http.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "x"}]},
        headers={"authorization": f"Bearer {API_KEY}", **(headers or {})},
    ) as response:
        await response.read()
        return response.status


async def test_control_api_faults_with_count_stats_and_reset(http: aiohttp.ClientSession) -> None:
    async with http.post("/sim/faults", json={"model": "flaky", "fault": "status=503", "count": 2}) as response:
        assert response.status == 200
        assert (await response.json())["faults"] == {"flaky": {"fault": "status=503", "remaining": 2}}
    assert [await _chat(http, "flaky") for _ in range(3)] == [503, 503, 200]
    async with http.post("/sim/faults", json={"model": "*", "fault": "status=500"}):
        pass
    assert await _chat(http, "anything") == 500
    assert await _chat(http, "other", {"x-sim-fault": "status=429"}) == 429
    async with http.post("/sim/faults", json={"model": "*", "fault": None}):
        pass
    assert await _chat(http, "anything") == 200
    async with http.get("/sim/stats") as response:
        stats = await response.json()
    assert stats["requests"] == 6 and stats["by_api"] == {"openai": 6}
    assert stats["by_model"] == {"flaky": 3, "anything": 2, "other": 1}
    assert stats["faults"] == {"status=503": 2, "status=500": 1, "status=429": 1} and stats["faults_served"] == 4
    async with http.post("/sim/faults", json={"model": "x", "fault": "nonsense"}) as response:
        assert response.status == 400 and "unknown fault" in (await response.json())["error"]
    async with http.post("/sim/reset") as response:
        assert response.status == 200
    async with http.get("/sim/stats") as response:
        assert (await response.json())["requests"] == 0


async def test_config_fault_and_latency_per_model() -> None:
    config = SimConfig.from_dict({"models": {"broken": {"fault": "status=500"}, "slow": {"latency_ms": 120}}})
    async with Simulator(config) as sim, aiohttp.ClientSession(base_url=sim.base_url) as http:
        assert await _chat(http, "broken") == 500
        started = time.monotonic()
        assert await _chat(http, "slow") == 200
        assert time.monotonic() - started >= 0.12
        # No api_key configured: any non-empty key passes, a missing one does not.
        async with http.post("/v1/chat/completions", json={"model": "m", "messages": []}) as response:
            assert response.status == 401


async def test_stop_releases_hung_timeout_requests() -> None:
    sim = Simulator()
    await sim.start()
    async with openai.AsyncOpenAI(base_url=f"{sim.base_url}/v1", api_key="any", max_retries=0) as client:
        pending = asyncio.create_task(
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}], extra_headers={"x-sim-fault": "timeout"}
            )
        )
        await eventually(lambda: sim.state.stats.faults["timeout"] == 1, what="the request hanging in the simulator")
        assert not pending.done()
        await sim.stop()
        with pytest.raises(openai.APIConnectionError):
            await asyncio.wait_for(pending, DEADLINE_S)  # the fault alone would hang for 600 s


def test_simulator_thread_serves_sync_clients_and_stops() -> None:
    with SimulatorThread() as sim:
        url = sim.base_url
        assert url.startswith("http://127.0.0.1:") and sim.port > 0
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
        reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "ping"}])
        assert (reply.choices[0].message.content or "").startswith("Simulated reply from m to: ping.")
    with pytest.raises(openai.APIConnectionError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0).models.list()


def test_simulator_thread_reports_bind_errors() -> None:
    with SimulatorThread() as first, pytest.raises(OSError):
        SimulatorThread(port=first.port).start()


async def test_unknown_route_and_bad_json(http: aiohttp.ClientSession) -> None:
    async with http.post(
        "/v1/chat/completions", data=b"{nope", headers={"authorization": f"Bearer {API_KEY}"}
    ) as response:
        body: dict[str, Any] = await response.json()
        assert response.status == 400 and body["error"]["code"] == "invalid_json"
    async with http.get("/v2/nothing") as response:
        assert response.status == 404


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_run_serves_until_signalled(stop_signal: signal.Signals) -> None:
    script = (
        "import sys\n"
        "from modelgate.simulator import SimConfig, run\n"
        "run('127.0.0.1', 0, SimConfig(api_key='k'), on_ready=lambda url: print(url, flush=True))\n"
        "print('stopped', flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        reply = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "cli"}]
        )
        assert (reply.choices[0].message.content or "").startswith("Simulated reply from m to: cli.")
        process.send_signal(stop_signal)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read().strip() == "stopped"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

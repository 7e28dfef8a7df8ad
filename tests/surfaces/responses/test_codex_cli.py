"""Codex CLI, unchanged, against the gateway: a custom provider with ``wire_api = "responses"`` in
front of each provider type, configured as its users configure it (``config.toml`` in
``CODEX_HOME``), running ``codex exec`` in a folder of its own.

Codex speaks only the Responses API, with ``store: false`` and the reasoning state carried by the
client in ``encrypted_content``: a turn where the model calls Codex's shell tool and answers from
its output, with reasoning on, then the same session resumed for a second turn, shows that the
state of every provider (Anthropic's signed thinking, Gemini's thought signatures, DeepSeek's
reasoning) goes round through Codex and back.

Codex comes from npm (``bash requirements/codex.sh`` puts it in ``.codex-cli``; or name a binary
with ``MODELGATE_TEST_CODEX``). Without it these tests skip saying so; with CI=true they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelgate.simulator import SimulatorThread
from tests.services import in_ci
from tests.support import RunningGateway
from tests.surfaces.responses.support import sim_gateway

ROOT = Path(__file__).resolve().parents[3]
CODEX = os.environ.get("MODELGATE_TEST_CODEX", str(ROOT / ".codex-cli" / "node_modules" / ".bin" / "codex"))
KEY = "mk-codex"
RUN_S = 120

# The upstream behind the deployment Codex calls, per provider type, and how it thinks: with
# summaries (Codex shows them as reasoning items), raw (DeepSeek's reasoning_content, which the
# simulator wants back on tool turns: Codex does not show it, its usage counts it), or not at all.
UPSTREAMS: dict[str, tuple[dict[str, Any], str | None]] = {
    "openai-chat": ({"provider": "openai", "model": "gpt-4o"}, None),
    "openai-responses": ({"provider": "openai", "model": "gpt-5-codex", "api": "responses"}, None),
    "deepseek": ({"provider": "deepseek", "model": "deepseek-reasoner"}, "raw"),
    "anthropic": ({"provider": "anthropic", "model": "claude-sonnet-4-5"}, "summary"),
    "gemini": ({"provider": "gemini", "model": "gemini-2.5-flash"}, "summary"),
}


@pytest.fixture(scope="module")
def codex() -> str:
    if not os.access(CODEX, os.X_OK):
        message = f"Codex CLI is not installed at {CODEX}: install it with `bash requirements/codex.sh`"
        if in_ci():
            pytest.fail(f"{message} (CI=true: these tests must run, not skip)")
        pytest.skip(message)
    return CODEX


@pytest.fixture(scope="module", params=list(UPSTREAMS))
def upstream(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def codex_gateway(upstream: str, responses_sim: SimulatorThread) -> Iterator[RunningGateway]:
    with sim_gateway(responses_sim, KEY, [{"name": "coder", **UPSTREAMS[upstream][0]}]) as running:
        yield running


def codex_home(folder: Path, gateway: RunningGateway) -> Path:
    """Codex's configuration for a gateway, as its documentation has users write it. Web search
    runs on OpenAI's servers: it is turned off, as the gateway's README says for such deployments."""
    folder.mkdir()
    (folder / "config.toml").write_text(f"""\
model = "coder"
model_provider = "modelgate"
model_reasoning_effort = "low"
model_reasoning_summary = "auto"
web_search = "disabled"

[model_providers.modelgate]
name = "modelgate"
base_url = "{gateway.v1}"
env_key = "MODELGATE_API_KEY"
wire_api = "responses"
""")
    return folder


def run_codex(codex: str, home: Path, work: Path, *args: str) -> list[dict[str, Any]]:
    """``codex exec --json``'s events; the run must end well."""
    env = {**os.environ, "CODEX_HOME": str(home), "MODELGATE_API_KEY": KEY}
    done = subprocess.run([codex, "exec", "--skip-git-repo-check", "--sandbox", "read-only", "--json", *args],
                          cwd=work, env=env, capture_output=True, text=True, timeout=RUN_S, stdin=subprocess.DEVNULL)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, (done.stdout[-4000:], done.stderr[-4000:])
    return events


def items(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["item"] for e in events if e["type"] == "item.completed" and e["item"]["type"] == kind]


def test_codex_turns_with_a_tool_and_reasoning(codex: str, codex_gateway: RunningGateway, upstream: str,
                                                 tmp_path: Path) -> None:
    home, work = codex_home(tmp_path / "codex-home", codex_gateway), tmp_path / "work"
    work.mkdir()
    thinks = UPSTREAMS[upstream][1]
    for turn in (["What files are here?"], ["resume", "--last", "Now say what you found"]):
        events = run_codex(codex, home, work, *turn)
        kinds = [e["type"] for e in events]
        assert "turn.completed" in kinds and "turn.failed" not in kinds and "error" not in kinds, events
        # The model called Codex's shell tool, Codex ran it, and its output went back to the model.
        (command,) = items(events, "command_execution")
        assert command["status"] in ("completed", "failed") and command["exit_code"] is not None
        (message,) = items(events, "agent_message")
        assert "after the tool returned" in message["text"], message
        # Reasoning reached Codex on both model calls of the turn (before and after the tool): the
        # second call carried the first one's state back, which the provider checks.
        assert len(items(events, "reasoning")) == (2 if thinks == "summary" else 0), events
        usage = next(e["usage"] for e in events if e["type"] == "turn.completed")
        assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
        # DeepSeek and Gemini count reasoning tokens apart; Anthropic counts thinking in its output tokens.
        assert (usage["reasoning_output_tokens"] > 0) == (upstream in ("deepseek", "gemini")), usage

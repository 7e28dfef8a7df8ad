"""The `modelgate` command as a user runs it: real processes on real sockets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import openai

from modelgate import __version__
from tests.support import gateway_process


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelgate", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=60)


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"modelgate {__version__}"


def test_deployments_lists_catalog_facts(tmp_path: Path) -> None:
    config = tmp_path / "modelgate.yaml"
    config.write_text("providers:\n  openai: {type: openai, api_key: ${OPENAI_API_KEY}}\n"
                      "deployments:\n  - {name: main, provider: openai, model: gpt-4o}\n"
                      "  - {name: mine, provider: openai, model: my-finetune, context_window: 4096}\n")
    result = run_cli("deployments", "--config", str(config), env={"OPENAI_API_KEY": "sk"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "PROVIDER", "MODEL"]
    main = lines[1].split()
    assert main[:5] == ["main", "openai", "gpt-4o", "128000", "16384"] and main[5:7] == ["2.5", "10"]
    assert lines[2].split()[:4] == ["mine", "openai", "my-finetune", "4096"]


def test_config_errors_stop_the_server_before_it_starts(tmp_path: Path) -> None:
    config = tmp_path / "modelgate.yaml"
    config.write_text("master_key: ${MODELGATE_MASTER_KEY}\nproviders: {}\ndeployments: []\n")
    result = run_cli("serve", "--config", str(config), "--port", "0")
    assert result.returncode == 2
    assert "master_key: environment variable MODELGATE_MASTER_KEY is not set" in result.stderr


def test_demo_serves_simulated_providers_with_no_config(tmp_path: Path) -> None:
    with gateway_process(args=["--demo"]) as gateway:
        client = openai.OpenAI(base_url=gateway.v1, api_key="anything", max_retries=0)
        models = {m.id for m in client.models.list()}
        assert {"gpt-4o", "grok-3", "deepseek-reasoner"} <= models
        reply = client.chat.completions.create(model="deepseek-reasoner",
                                               messages=[{"role": "user", "content": "Why is the sky blue?"}])
        assert (reply.choices[0].message.content or "").startswith("Simulated reply from deepseek-reasoner")
        assert reply.choices[0].message.reasoning_content  # type: ignore[attr-defined]
        assert httpx.get(f"{gateway.base_url}/health").json() == {"status": "ok"}
        group = client.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "Hi"}])
        assert group.headers["x-modelgate-provider"] in ("openai", "anthropic")
        import anthropic

        claude = anthropic.Anthropic(base_url=gateway.base_url, api_key="anything", max_retries=0)
        message = claude.messages.create(model="grok-3", max_tokens=200, messages=[{"role": "user", "content": "Hi"}])
        assert message.content[0].type == "text" and message.stop_reason == "end_turn"


def test_sim_command_serves_the_provider_apis() -> None:
    process = subprocess.Popen([sys.executable, "-m", "modelgate", "sim", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        # Printed once it listens, with the port it got.
        seen: list[str] = []
        for line in process.stdout:
            if line.startswith("modelgate simulator on http://127.0.0.1:"):
                break
            seen.append(line)
        else:
            raise AssertionError(f"the simulator exited before listening: {''.join(seen)}")
        base = line.split()[3]
        assert httpx.get(f"{base}/sim/stats", timeout=10).status_code == 200
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
        reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert (reply.choices[0].message.content or "").startswith("Simulated reply from gpt-4o")
    finally:
        process.terminate()
        process.wait(timeout=10)


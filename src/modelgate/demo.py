"""``modelgate serve --demo``: the gateway in front of simulated providers, with no config or keys.

The providers are the built-in simulator (``modelgate.simulator``), started in this process on a
free port: OpenAI-like, xAI-like, DeepSeek-like (reasoning), Anthropic-like and Gemini-like APIs.
Usage is metered into SQLite. Nothing leaves the machine.
"""

from __future__ import annotations

from typing import Any

from modelgate.config import Settings, parse_settings


def start_demo_simulator() -> Any:
    from modelgate.simulator import SimulatorThread

    simulator = SimulatorThread()
    simulator.__enter__()  # lives as long as the process
    return simulator


def demo_config(simulator_url: str) -> dict[str, Any]:
    v1 = f"{simulator_url}/v1"
    return {
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


def demo_settings(simulator_url: str) -> Settings:
    return parse_settings(demo_config(simulator_url), {}, source="demo")


def print_demo_help(host: str, port: int) -> None:
    base = f"http://{host}:{port}"
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
""", flush=True)

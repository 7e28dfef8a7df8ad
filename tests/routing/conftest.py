"""Helpers for routing tests: the session simulator's fault controls, and gateways in front of it.

Every test names its own upstream models (``Names``), so the faults it sets on the shared
simulator and the requests it counts there are its own.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from modelgate.simulator import SimulatorThread
from tests.support import DEADLINE_S, wait_until


def user(text: str = "Hello there") -> Any:
    return [{"role": "user", "content": text}]


class Names:
    """Model names unique to one test: ``names.a`` is e.g. ``rt3f9a1c-a``."""

    def __init__(self) -> None:
        self.prefix = "rt" + secrets.token_hex(3)

    def __getattr__(self, suffix: str) -> str:
        if suffix.startswith("_"):
            raise AttributeError(suffix)
        return f"{self.prefix}-{suffix}"


@pytest.fixture
def names() -> Names:
    return Names()


@dataclass
class SimControl:
    sim: SimulatorThread

    def fault(self, model: str, spec: str | None, count: int | None = None) -> None:
        response = httpx.post(f"{self.sim.base_url}/sim/faults",
                              json={"model": model, "fault": spec, "count": count}, timeout=5)
        response.raise_for_status()

    def served(self, model: str) -> int:
        """Requests the simulator has seen for ``model`` (faulted ones included)."""
        stats = httpx.get(f"{self.sim.base_url}/sim/stats", timeout=5).json()
        return int(stats["by_model"].get(model, 0))


@pytest.fixture
def simctl(sim: SimulatorThread, names: Names) -> Iterator[SimControl]:
    control = SimControl(sim)
    yield control
    # Clear whatever this test left installed on its own models.
    stats = httpx.get(f"{sim.base_url}/sim/stats", timeout=5).json()
    for model in stats["active_faults"]:
        if model.startswith(names.prefix):
            control.fault(model, None)


def providers(sim_url: str, **extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "openai": {"type": "openai", "base_url": f"{sim_url}/v1", "api_key": "sk-sim"},
        "azure": {"type": "azure", "base_url": sim_url, "api_key": "sk-sim", "api_version": "2024-10-21"},
        **extra,
    }


def client(base_url: str, api_key: str = "sk-test") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=30)


def answered_by(headers: Mapping[str, str]) -> tuple[str, str, int]:
    """(provider, model, attempts) from the x-modelgate-* response headers."""
    return (headers["x-modelgate-provider"], headers["x-modelgate-model"],
            int(headers["x-modelgate-attempts"]))


def deployment_health(base_url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = httpx.get(f"{base_url}/health/deployments", headers=headers or {}, timeout=5)
    response.raise_for_status()
    return {d["name"]: d for d in response.json()["deployments"]}


def target_state(base_url: str, deployment: str, model: str, headers: dict[str, str] | None = None) -> str:
    targets = deployment_health(base_url, headers)[deployment]["targets"]
    return str(next(t["state"] for t in targets if t["model"] == model))


def wait_for_state(base_url: str, deployment: str, model: str, state: str, within: float = DEADLINE_S,
                   headers: dict[str, str] | None = None) -> None:
    """Poll /health/deployments until the target is in ``state``."""
    wait_until(lambda: target_state(base_url, deployment, model, headers) == state, within,
               f"{model} {state!r}")

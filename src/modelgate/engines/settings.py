"""What a deployment of a local model says about the engine that runs it.

The context window is not here: it is the target's ``context_window`` fact, which the router
also reads; unset, the engine uses the context the model was trained for.
"""

from __future__ import annotations

from dataclasses import dataclass

# The engines a deployment may name; only those in AVAILABLE_ENGINES run in this build.
ENGINES = ("llamacpp", "vllm", "ray")
AVAILABLE_ENGINES = ("llamacpp",)
DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True, slots=True, kw_only=True)
class ComputeCost:
    """What running the model costs the installation itself: USD per replica per hour it runs
    (a machine's or a GPU's hourly rate, shared by the replicas it holds)."""

    per_replica_hour: float


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSettings:
    engine: str = "llamacpp"
    replicas: int = 1  # child processes, each with the model loaded
    max_concurrency: int = 4  # requests one replica runs at once
    queue: int = 32  # requests that wait for a replica, beyond those running; more get 429
    device: str = "auto"  # cpu | cuda | auto (the GPU where the engine was built for one)
    # Every health_interval seconds a ready replica must answer GET /health within health_timeout
    # seconds; one that does not (hung: deadlocked, stopped, swapping) is killed and started again.
    health_interval: float = 5.0
    health_timeout: float = 5.0
    compute_cost: ComputeCost | None = None  # None: the replicas' time is recorded, not priced

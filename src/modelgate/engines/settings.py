"""What a deployment of a local model says about the engine that runs it.

The context window is not here: it is the target's ``context_window`` fact, which the router
also reads; unset, the engine uses the context the model was trained for.
"""

from __future__ import annotations

from dataclasses import dataclass

ENGINES = ("llamacpp", "vllm", "ray")
# What the vllm and ray engines need on the gateway's machine: the package their child process
# imports, and the extra of modelgate that installs it. (llamacpp's child reports a missing
# llama-cpp-python itself, as the demo does.)
NEEDS = {"vllm": ("vllm", "vllm"), "ray": ("ray", "ray")}
DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True, slots=True, kw_only=True)
class ComputeCost:
    """What running the model costs the installation itself: USD per replica per hour it runs
    (a machine's or a GPU's hourly rate, shared by the replicas it holds)."""

    per_replica_hour: float


def ray_address_problem(address: str) -> str | None:
    """What is wrong with a Ray cluster address, or None: ``auto``, ``HOST:PORT`` (the head node's
    GCS, 6379 by default) or ``ray://HOST:PORT`` (Ray Client, 10001 by default)."""
    if address == "auto":
        return None
    rest = address.removeprefix("ray://")
    host, _, port = rest.rpartition(":")
    if "://" in rest or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return ("must be auto (the cluster on this machine), HOST:PORT (the head node's GCS, port 6379 unless "
                f"changed) or ray://HOST:PORT (Ray Client, port 10001), got {address!r}")
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class RaySettings:
    """Where and how the ray engine runs a model: a Ray Serve application on the cluster at
    ``address``, its replicas scaled by Ray Serve between ``min_replicas`` and ``max_replicas`` to
    keep about ``target_ongoing_requests`` requests on each (Ray Serve's own defaults)."""

    address: str = "auto"  # as ray.init takes it: auto (the cluster on this machine), HOST:PORT, ray://HOST:PORT
    min_replicas: int = 1  # 0: none while no request comes (the first one waits for a replica to load)
    max_replicas: int = 1
    target_ongoing_requests: float = 2.0


# The arguments of vLLM's server that the vllm engine sets itself from the deployment.
VLLM_OWN_ARGS = ("--model", "--served-model-name", "--host", "--port", "--max-num-seqs", "--max-model-len")


@dataclass(frozen=True, slots=True, kw_only=True)
class VllmSettings:
    """How the vllm engine runs vLLM's server. vLLM brings its own PyTorch and pins its own
    transformers, so it is often installed in a virtual environment of its own: ``python`` is
    that environment's interpreter (None: the gateway's). ``args`` go to vLLM's server after those
    the engine sets (``--dtype``, ``--quantization``, ``--gpu-memory-utilization``, ``-O0``, ...)."""

    python: str | None = None
    args: tuple[str, ...] = ()


def vllm_args_problem(args: tuple[str, ...]) -> str | None:
    """What is wrong with a deployment's ``vllm.args``, or None: none of them is one the engine
    sets itself."""
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in VLLM_OWN_ARGS:
            return (f"sets {flag}, which the engine sets from the deployment (model:, the deployment's name, "
                    "max_concurrency: and context_window:); remove it")
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSettings:
    engine: str = "llamacpp"
    replicas: int = 1  # child processes, each with the model loaded (ray: see ray.min_replicas)
    max_concurrency: int = 4  # requests one replica runs at once
    queue: int = 32  # requests that wait for a replica, beyond those running; more get 429
    device: str = "auto"  # cpu | cuda | auto (the GPU where the engine was built for one)
    # Every health_interval seconds a ready replica must answer GET /health within health_timeout
    # seconds; one that does not (hung: deadlocked, stopped, swapping) is killed and started again.
    # (engine: ray: Ray Serve checks the application's replicas itself; the gateway does not.)
    health_interval: float = 5.0
    health_timeout: float = 5.0
    compute_cost: ComputeCost | None = None  # None: the replicas' time is recorded, not priced
    ray: RaySettings | None = None  # engine: ray only; None there: RaySettings()
    vllm: VllmSettings | None = None  # engine: vllm only; None there: VllmSettings()

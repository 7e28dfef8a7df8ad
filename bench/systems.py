"""The systems under test and the stand-in fleet they all call.

A *kind* names an upstream behaviour (instant, big, slow20, ...). Each kind has its own stand-in
process on the rig's core, and each gateway gets one deployment per kind, so one gateway process
serves every figure. ``Running.target(kind)`` says where a request of that kind goes: the stand-in
itself for ``direct``, the gateway with the kind's model name otherwise.
"""

from __future__ import annotations

import secrets
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import loadgen
import measure

BENCH = Path(__file__).resolve().parent
PY = sys.executable

# kind -> stand-in arguments. Streaming requests go to "instant": any stand-in streams on request.
KINDS: dict[str, list[str]] = {
    "instant": ["--mode", "instant"],
    "big": ["--mode", "big"],
    "slow20": ["--mode", "latency", "--latency-ms", "20"],
    "slow1000": ["--mode", "latency", "--latency-ms", "1000"],
    "f429": ["--mode", "faults", "--fault", "429"],
    "f500": ["--mode", "faults", "--fault", "500"],
    "cut": ["--mode", "faults", "--fault", "cut:8"],
}
# kind -> the model name a gateway client sends. "fallback" is a deployment whose primary is the
# 500 stand-in and whose fallback is the instant one.
MODELS = {"instant": "bench-model", "big": "bench-big", "slow20": "bench-slow20",
          "slow1000": "bench-slow1000", "f429": "bench-429", "f500": "bench-500", "cut": "bench-cut",
          "fallback": "bench-fallback", "refused": "bench-refused"}


@dataclass
class Upstreams:
    """One stand-in per kind, all on the rig's core."""

    ports: dict[str, int] = field(default_factory=dict)
    procs: list[measure.Process] = field(default_factory=list)

    async def start(self, log_dir: Path, kinds: list[str] | None = None) -> None:
        for kind in kinds or list(KINDS):
            port = measure.free_port()
            p = measure.start(f"standin-{kind}", [PY, str(BENCH / "standin.py"), "--port", str(port),
                                                  *KINDS[kind]], core=measure.RIG_CORE, log_dir=log_dir)
            self.ports[kind] = port
            self.procs.append(p)
        for kind, p in zip(self.ports, self.procs, strict=True):
            await measure.wait_ready(p, self.ports[kind])
        # Nothing listens here: the "refused connection" fault.
        self.ports["refused"] = measure.free_port()

    async def stats(self, kind: str) -> dict[str, object]:
        """The stand-in's request counters (to prove a fallback really hit the failing primary)."""
        return await measure.http_get_json("127.0.0.1", self.ports[kind], "/stats")

    def stop(self) -> None:
        for p in self.procs:
            measure.stop(p)

    def url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.ports[kind]}/v1"


@dataclass
class Running:
    name: str
    proc: measure.Process | None  # None for "direct": the stand-ins are the system
    port: int
    kinds: set[str]  # which kinds this system can serve
    startup_s: float | None = None
    upstreams: Upstreams | None = None
    api_key: str = "bench"


    def target(self, kind: str) -> loadgen.Target | None:
        if kind not in self.kinds:
            return None
        if self.proc is None:
            assert self.upstreams is not None
            return loadgen.Target("127.0.0.1", self.upstreams.ports[kind])
        return loadgen.Target("127.0.0.1", self.port, model=MODELS[kind],
                              headers=(("Authorization", f"Bearer {self.api_key}"),))


@dataclass(frozen=True)
class System:
    """How to launch one system: a command for a port, an optional config writer, a health path."""

    name: str
    command: Callable[[int, Path], list[str]]  # (port, config path) -> argv
    write_config: Callable[[Upstreams, Path, str], None] | None = None
    health: str = "/health"
    env: tuple[tuple[str, str], ...] = ()
    kinds: frozenset[str] = frozenset(MODELS)
    available: Callable[[], str | None] = lambda: None  # None when runnable, else why not
    import_check: tuple[str, str] | None = None  # (python, module) whose import time is reported
    uses_master_key: bool = False  # the config gets a fresh master key; clients send it


def _render(template: Path, dest: Path, ups: Upstreams, master_key: str = "", prefix: str = "") -> None:
    text = prefix + template.read_text().replace("BENCH_MASTER_KEY", master_key)
    for kind, port in ups.ports.items():
        text = text.replace(f"STANDIN_PORT_{kind.upper()}", str(port))
    text = text.replace("STANDIN_PORT", str(ups.ports["instant"]))
    dest.write_text(text)


def _modelgate_cmd(port: int, config: Path) -> list[str]:
    exe = shutil.which("modelgate")
    base = [exe] if exe else [PY, "-m", "modelgate"]
    return [*base, "serve", "--config", str(config), "--port", str(port), "--log-level", "warning"]


def _modelgate_available() -> str | None:
    import importlib.util

    return None if importlib.util.find_spec("modelgate") else "modelgate is not installed (pip install -e .)"


LITELLM_VENV = BENCH / ".venvs" / "litellm"


def _litellm_available() -> str | None:
    return None if (LITELLM_VENV / "bin" / "litellm").exists() else "run bench/setup.sh litellm first"


SYSTEMS: dict[str, System] = {
    "modelgate": System(
        "modelgate",
        _modelgate_cmd,
        lambda ups, path, key: _render(BENCH / "modelgate.yaml.in", path, ups, key),
        available=_modelgate_available,
        import_check=(PY, "modelgate.server.serve"),
    ),
    # Feature cost: the same gateway with key auth on (master_key), the first feature on the path.
    "modelgate-auth": System(
        "modelgate-auth",
        _modelgate_cmd,
        lambda ups, path, key: _render(BENCH / "modelgate.yaml.in", path, ups, key,
                                       prefix=f"master_key: \"{key}\"\n"),
        available=_modelgate_available,
        uses_master_key=True,
    ),
    "litellm": System(
        "litellm",
        lambda port, config: [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(config), "--port",
                              str(port), "--host", "127.0.0.1", "--num_workers", "1"],
        lambda ups, path, key: _render(BENCH / "litellm.yaml.in", path, ups, key),
        health="/health/liveliness",
        env=(("LITELLM_LOCAL_MODEL_COST_MAP", "True"), ("LITELLM_LOG", "ERROR"),
             ("LITELLM_MODE", "PRODUCTION"), ("LITELLM_DONT_SHOW_FEEDBACK_BOX", "true")),
        available=_litellm_available,
        import_check=(str(LITELLM_VENV / "bin" / "python"), "litellm"),
        # LiteLLM >= 1.106 refuses to start without one; without a database it is a plain key compare.
        uses_master_key=True,
    ),
}


async def start_system(sys_: System, ups: Upstreams, log_dir: Path, config_path: Path,
                       timeout_s: float = 120.0) -> Running:
    if (why := sys_.available()) is not None:
        raise RuntimeError(f"{sys_.name} unavailable: {why}")
    api_key = "sk-bench-" + secrets.token_hex(32) if sys_.uses_master_key else "bench"
    if sys_.write_config:
        sys_.write_config(ups, config_path, api_key)
    port = measure.free_port()
    proc = measure.start(sys_.name, sys_.command(port, config_path), core=measure.SUT_CORE, log_dir=log_dir,
                         env=dict(sys_.env), cwd=BENCH.parent)
    try:
        ready = await measure.wait_ready(proc, port, sys_.health, timeout_s)
    except BaseException:
        measure.stop(proc)
        raise
    return Running(sys_.name, proc, port, set(sys_.kinds), ready, ups, api_key)


async def start_floor(log_dir: Path) -> Running:
    """A second instant stand-in on the gateway's core: the cross-core floor."""
    port = measure.free_port()
    proc = measure.start("floor", [PY, str(BENCH / "standin.py"), "--port", str(port)], core=measure.SUT_CORE,
                         log_dir=log_dir)
    ready = await measure.wait_ready(proc, port)
    return Running("floor", proc, port, {"instant"}, ready)


def direct(ups: Upstreams) -> Running:
    return Running("direct", None, 0, set(KINDS), None, ups)

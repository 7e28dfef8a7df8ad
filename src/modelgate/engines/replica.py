"""One replica of a local model: an engine child process, started, checked and stopped.

The child reports where it serves as a JSON line on stdout: the loopback port it bound
(``{"listening": PORT}``: the llamacpp and vllm workers), or the URL of what it deployed
(``{"serving": URL}``: the ray engine's application at Ray Serve's HTTP proxy). ``GET /health``
there answers 200 once the model is loaded. Its stdin is a pipe the child watches: when this
process ends, however it ends, the pipe closes and the child stops itself. Everything else it
prints (the engine's log) is kept, the last lines of it, for the message that says why a replica
did not start or died.

For the ray engine the child is not where the model runs but what holds it on the cluster: one
"replica" here stands for the whole Ray Serve application, whose own replicas Ray Serve starts,
scales and restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from modelgate.engines.models import ModelFile
from modelgate.engines.settings import EngineSettings, RaySettings, VllmSettings

log = logging.getLogger("modelgate.engines")

OUTPUT_LINES = 20  # lines of a child's output kept for error messages
HEALTH_POLL_S = 0.05
LOAD_PROBE_S = 2.0  # how long one probe of a loading child's health may take
WORKERS = {"llamacpp": "modelgate.engines.llamacpp_worker", "vllm": "modelgate.engines.vllm_worker",
           "ray": "modelgate.engines.ray_driver"}


class ReplicaFailed(Exception):
    """A replica did not become ready; the message says why, with the end of its output, and
    ``reason`` in a line: the child's last line, or what it failed to do."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """What a pool runs: the model, its engine, and the context window each request gets."""

    model: ModelFile
    engine: EngineSettings
    context_window: int | None = None

    def command(self) -> list[str]:
        engine = self.engine
        command = [sys.executable, "-m", WORKERS[engine.engine], "--model", str(self.model.path),
                   "--name", self.model.name, "--max-concurrency", str(engine.max_concurrency),
                   "--n-ctx", str(self.context_window or 0), "--device", engine.device, "--watch-stdin"]
        if engine.engine == "ray":
            ray = engine.ray or RaySettings()
            command += ["--app", self.app_name, "--address", ray.address, "--min-replicas", str(ray.min_replicas),
                        "--max-replicas", str(ray.max_replicas),
                        "--target-ongoing-requests", f"{ray.target_ongoing_requests:g}"]
        elif engine.engine == "vllm":
            vllm = engine.vllm or VllmSettings()
            if vllm.python is not None:
                command += ["--python", vllm.python]
            command += [f"--vllm-arg={arg}" for arg in vllm.args]  # "=": an argument may begin with "-"
        return command

    @property
    def app_name(self) -> str:
        """The ray engine's application name on the cluster: the model's name and a digest of what
        is deployed, the same in every gateway process (they share one application), another for
        another model file or other settings."""
        what = repr((str(self.model.path), self.engine, self.context_window)).encode()
        slug = re.sub(r"[^a-z0-9]+", "-", self.model.name.lower()).strip("-")[:40] or "model"
        return f"modelgate-{slug}-{hashlib.sha256(what).hexdigest()[:10]}"

    @property
    def slots(self) -> int:
        """Requests one replica here runs at once: for the ray engine, what the application holds
        when Ray Serve has scaled it to ``max_replicas``."""
        engine = self.engine
        if engine.engine == "ray":
            return engine.max_concurrency * (engine.ray or RaySettings()).max_replicas
        return engine.max_concurrency


class Replica:
    """One child process; ``state`` is starting, ready, dead or stopped."""

    def __init__(self, spec: EngineSpec, index: int) -> None:
        self.spec = spec
        self.index = index
        self.label = f"{spec.model.name}#{index}"
        self.state = "stopped"
        self.url = ""  # where the child serves, once it has said
        self.running = 0  # requests admitted to it and not yet finished
        self.ready_at: float | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.output: deque[str] = deque(maxlen=OUTPUT_LINES)
        self._listening: asyncio.Future[str] | None = None
        self._reader: asyncio.Task[None] | None = None
        # Why the gateway killed the current process, if it did (``kill``): said to its requests.
        self._fault: tuple[asyncio.subprocess.Process, str] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def launch(self, within: float) -> None:
        """Start the child and return once it answers health; ``ReplicaFailed`` if it exits or
        takes longer than ``within`` seconds (the child is stopped then)."""
        self.state = "starting"
        self.url = ""
        self.output.clear()
        loop = asyncio.get_running_loop()
        self._listening = loop.create_future()
        deadline = time.monotonic() + within
        self.process = await asyncio.create_subprocess_exec(
            *self.spec.command(), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.ensure_future(self._read(self.process))
        try:
            exited = asyncio.ensure_future(self.process.wait())
            try:
                either: set[asyncio.Future[Any]] = {self._listening, exited}
                done, _ = await asyncio.wait(either, timeout=within,
                                             return_when=asyncio.FIRST_COMPLETED)
                if self._listening not in done:
                    raise self._failed("exited before it said where it serves" if exited in done else
                                       f"did not say where it serves within {within:g}s")
                self.url = self._listening.result()
                while not await _healthy(self.url):
                    if exited.done():
                        raise self._failed("exited while loading the model")
                    if time.monotonic() > deadline:
                        raise self._failed(f"did not load the model within {within:g}s")
                    await asyncio.sleep(HEALTH_POLL_S)
            finally:
                exited.cancel()
        except BaseException:
            await self.stop(grace=2.0)
            raise
        self.state = "ready"
        self.ready_at = time.monotonic()

    def _failed(self, what: str) -> ReplicaFailed:
        code = self.process.returncode if self.process is not None else None
        said = "\n".join(self.output) or "(no output)"
        exit_text = f" (exit code {code})" if code is not None else ""
        # The engine's own word on why, where it gave one; else its last line.
        lines = [line.strip() for line in self.output if line.strip()]
        last = next((line for line in reversed(lines) if line.startswith("modelgate ")), lines[-1] if lines else None)
        return ReplicaFailed(f"replica {self.label} {what}{exit_text}; its last output:\n{said}",
                             reason=last or f"its engine {what}{exit_text}")

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while True:
            raw = await process.stdout.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip()
            url = _announced(line)
            if url is not None:
                if self._listening is not None and not self._listening.done():
                    self._listening.set_result(url)
                continue
            self.output.append(line)
            log.debug("%s: %s", self.label, line)

    async def answers(self, within: float) -> bool:
        """Whether the child answers ``GET /health`` with 200 within ``within`` seconds."""
        return bool(self.url) and await _healthy(self.url, within)

    def kill(self, why: str) -> None:
        """SIGKILL the child now (a stopped or hung one takes no SIGTERM), for ``why``: what the
        requests it was running are told. It takes no more requests."""
        self.state = "dead"
        process = self.process
        if process is None or process.returncode is not None:
            return
        self._fault = (process, why)
        with contextlib.suppress(ProcessLookupError):
            process.kill()

    def fault(self, process: asyncio.subprocess.Process | None) -> str | None:
        """Why the gateway killed ``process`` (a process of this replica), if it did."""
        return self._fault[1] if self._fault is not None and self._fault[0] is process else None

    async def exited(self) -> int:
        """Wait for the child to end; its exit code."""
        assert self.process is not None
        code = await self.process.wait()
        self.state = "dead" if self.state != "stopped" else "stopped"
        return code

    def exit_code(self) -> int | None:
        return self.process.returncode if self.process is not None else None

    async def stop(self, grace: float) -> None:
        """SIGTERM (the child finishes what it runs), then SIGKILL after ``grace`` seconds."""
        self.state = "stopped"
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                log.warning("replica %s (pid %d) did not stop within %gs; killing it", self.label, process.pid, grace)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process.stdin is not None:
            process.stdin.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


def _announced(line: str) -> str | None:
    """The URL a child's line says it serves at, or None for any other line."""
    if not line.startswith("{"):
        return None
    try:
        said = json.loads(line)
    except ValueError:
        return None
    if not isinstance(said, dict):
        return None
    port, url = said.get("listening"), said.get("serving")
    if isinstance(port, int) and not isinstance(port, bool):
        return f"http://127.0.0.1:{port}"
    if isinstance(url, str) and url.startswith("http://"):
        return url.rstrip("/")
    return None


async def _healthy(url: str, within: float = LOAD_PROBE_S) -> bool:
    """Whether ``url`` answers ``GET /health`` with 200 within ``within`` seconds."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET {parts.path}/health HTTP/1.1\r\nhost: {parts.netloc}\r\nconnection: close\r\n\r\n"
                         .encode())
            status = await reader.readline()
        return status.split(b" ", 2)[1:2] == [b"200"]
    except (OSError, TimeoutError):
        return False
    finally:
        if writer is not None:
            writer.transport.abort()  # a hung child would never take part in a graceful close

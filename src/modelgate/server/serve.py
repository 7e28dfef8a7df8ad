"""Running the app under an ASGI server, in one process or several sharing one port.

uvicorn with uvloop and httptools: measured on the request path against granian and aiohttp's
own server (bench/study/RESULTS.md); see docs/benchmarks.md for the figures.

With ``workers`` > 1 the parent binds the port and forks the workers; on Linux each worker
listens on its own SO_REUSEPORT socket and the kernel spreads connections evenly over them
(elsewhere they accept on the parent's socket). Each worker has its own services (HTTP
pool, key cache, recorder); what they must agree on (limits, budgets, breakers, revocations)
goes through ``redis_url``. The parent only supervises: it restarts a worker that dies and stops
them all on SIGINT or SIGTERM.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import time
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn

from modelgate.config.settings import Settings
from modelgate.server.app import GatewayApp
from modelgate.server.protocol import HTTPProtocol
from modelgate.server.telemetry import FOLDER_ENV as METRICS_FOLDER_ENV
from modelgate.telemetry.logs import use_json_logs

log = logging.getLogger("modelgate")


class ServedApp(GatewayApp):
    """The app as served: the cyclic collector is paused while its services start (what they
    build, keys, routes and prices, lives as long as the process: walking it while it is built
    only costs time, a tenth of a second at 100,000 keys), then what start-up built is frozen out
    of the collector's sight like the settings were, and what it freed is handed back to the system."""

    async def startup(self) -> None:
        collecting = gc.isenabled()
        gc.disable()
        try:
            await super().startup()
        finally:
            settle_heap()
            if collecting:
                gc.enable()


def settle_heap() -> None:
    """Freeze what start-up built (keys, routes, prices: they live as long as the process) out
    of the collector's sight, then return the freed heap to the system: start-up's peak (the
    parsed config, the rows read) no longer stays as idle memory. No collection first: start-up
    leaves no cyclic garbage to speak of (none found at 10,000 deployments and 100,000 keys),
    and one would walk the whole heap to find it (0.15-0.2 s there)."""
    gc.freeze()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def server_config(settings: Settings, host: str, port: int, log_level: str) -> uvicorn.Config:
    """uvicorn's configuration for serving ``settings``: the protocol with the ``server:`` limits."""
    limits = settings.server
    json_logs = settings.log_format == "json"
    if json_logs:
        use_json_logs()
    return uvicorn.Config(
        ServedApp(settings), host=host, port=port, loop="uvloop", http=HTTPProtocol.with_limits(limits),
        lifespan="on", access_log=False, log_level=log_level, server_header=False,
        # JSON logs: uvicorn's loggers keep no handlers of their own and write through the root's.
        log_config=None if json_logs else uvicorn.config.LOGGING_CONFIG,
        date_header=False, timeout_keep_alive=limits.keepalive_timeout,  # type: ignore[arg-type]
        # Nothing reads the client address; behind a proxy, X-Forwarded-For is the proxy's business.
        proxy_headers=False,
    )


def tune_collector() -> None:
    """Freeze everything loaded before serving (modules, settings, the catalog: most of the heap)
    out of the collector's sight, so a full collection no longer walks it (about 50 ms each
    before, 3 ms after: the worst stalls of the request path), and forked workers do not touch,
    and so copy, those pages. The thresholds stay Python's own: raising the youngest
    generation's to 20,000 made collections rarer but 8-15 ms each, where the default's take
    under 2 ms (gc.callbacks timings at 650 requests/s)."""
    gc.collect()
    gc.freeze()


def run_server(settings: Settings, host: str, port: int, log_level: str = "info", workers: int = 1,
               sock: socket.socket | None = None) -> None:
    """``sock``: from ``bind(host, port)``, where the caller had to know the port first (port 0)."""
    tune_collector()
    if workers <= 1:
        uvicorn.Server(server_config(settings, host, port, log_level)).run(sockets=[sock] if sock else None)
        return
    if not settings.redis_url:
        log.warning("%d workers without redis_url: each keeps its own rate limits, budgets and breakers",
                    workers)
    # Bound here first, so that a port in use fails at once rather than in every worker. With
    # SO_REUSEPORT this socket only holds the port (it never listens): each worker listens on a
    # socket of its own and the kernel spreads new connections evenly over them. One shared
    # listening socket (where SO_REUSEPORT is missing) goes to whichever worker wakes first,
    # which takes a burst of connections all at once.
    sock = sock or _bind(host, port)
    sock.set_inheritable(True)
    # The workers' metrics snapshots, added up by whichever worker answers a scrape.
    with tempfile.TemporaryDirectory(prefix="modelgate-metrics-") as folder:
        os.environ[METRICS_FOLDER_ENV] = folder
        try:
            Supervisor(settings, host, port, log_level, sock, workers).run()
        finally:
            del os.environ[METRICS_FOLDER_ENV]


def bind(host: str, port: int) -> socket.socket:
    """The socket ``run_server`` serves on; port 0 binds one the system picks (read it back)."""
    return _bind(host, port)


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if REUSE_PORT:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


REUSE_PORT = hasattr(socket, "SO_REUSEPORT") and sys.platform == "linux"  # elsewhere it does not balance


def _worker(settings: Settings, host: str, port: int, log_level: str, sock: socket.socket) -> None:
    if REUSE_PORT:
        sock.close()
        sock = _bind(host, port)
    uvicorn.Server(server_config(settings, host, port, log_level)).run(sockets=[sock])


class Supervisor:
    def __init__(self, settings: Settings, host: str, port: int, log_level: str, sock: socket.socket,
                 workers: int) -> None:
        self.args = (settings, host, port, log_level, sock)
        self.count = workers
        self.processes: list[BaseProcess] = []
        self.stopping = False
        # fork: workers inherit the parsed settings and the bound socket as they are.
        self.context = multiprocessing.get_context("fork")

    def _spawn(self) -> BaseProcess:
        process = self.context.Process(target=_worker, args=self.args, daemon=False)
        process.start()
        return process

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> None:
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)
        self.processes = [self._spawn() for _ in range(self.count)]
        log.info("modelgate: %d workers (pids %s) on %s:%s", self.count,
                 ", ".join(str(p.pid) for p in self.processes), self.args[1], self.args[2])
        while not self.stopping:
            time.sleep(0.2)
            for i, process in enumerate(self.processes):
                if not process.is_alive() and not self.stopping:
                    log.warning("worker %s exited with %s; starting another", process.pid, process.exitcode)
                    self.processes[i] = self._spawn()
        for process in self.processes:
            if process.pid and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        for process in self.processes:
            process.join(timeout=30)

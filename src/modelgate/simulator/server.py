"""Running the simulator: in-process (:class:`Simulator`), in a background thread (:class:`SimulatorThread`) or
as a blocking server for the CLI (:func:`run`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from types import TracebackType

from aiohttp import web

from modelgate.simulator.anthropic_api import add_anthropic_routes
from modelgate.simulator.azure_api import add_azure_routes
from modelgate.simulator.config import SimConfig
from modelgate.simulator.control import add_control_routes
from modelgate.simulator.gemini_api import add_gemini_routes
from modelgate.simulator.openai_api import add_openai_routes
from modelgate.simulator.state import SimState

logger = logging.getLogger("modelgate.simulator")

# Handlers still running at stop (streams, hung `timeout` faults) get this long before they are cancelled.
_SHUTDOWN_TIMEOUT_S = 1.0


def build_app(state: SimState) -> web.Application:
    """The aiohttp application serving every simulated API plus the ``/sim/`` control routes."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    add_openai_routes(app, state)
    add_azure_routes(app, state)
    add_anthropic_routes(app, state)
    add_gemini_routes(app, state)
    add_control_routes(app, state)
    return app


class Simulator:
    """A simulator bound to the running event loop: ``await start()``, use ``base_url``, ``await stop()``."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.state = SimState(self.config)
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port``; port 0 picks a free port (read it back from :attr:`port`)."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running; call stop() first")
        # Handlers are cancelled when their client disconnects, so `timeout` faults do not outlive the caller.
        runner = web.AppRunner(
            build_app(self.state), handler_cancellation=True, shutdown_timeout=_SHUTDOWN_TIMEOUT_S, access_log=None
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self._host = host
        self._port = int(runner.addresses[0][1])
        self.state.stopping.clear()

    @property
    def port(self) -> int:
        if self._runner is None:
            raise RuntimeError("the simulator is not running; call start() first")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (no trailing slash); API paths such as ``/v1/chat/completions`` hang off it."""
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Stop listening and end in-flight requests (hung ``timeout`` faults drop their connections)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.state.stopping.set()
        await runner.cleanup()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class SimulatorThread:
    """A :class:`Simulator` on its own loop in a daemon thread, for sync code: ``with SimulatorThread() as sim``."""

    def __init__(self, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = Simulator(config)
        self._host = host
        self._port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return self.simulator.base_url

    @property
    def port(self) -> int:
        return self.simulator.port

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="modelgate-simulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        self._thread = None

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.simulator.start(self._host, self._port)
        except BaseException as exc:  # handed to the starting thread, which re-raises it
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.simulator.stop()

    def __enter__(self) -> SimulatorThread:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def run(host: str, port: int, config: SimConfig | None = None, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the simulator on ``host:port`` until interrupted (Ctrl-C or SIGTERM); uses uvloop when installed.

    ``on_ready`` is called with the base URL once the server listens (useful with port 0).
    """

    async def serve() -> None:
        simulator = Simulator(config)
        await simulator.start(host, port)
        logger.info("modelgate simulator listening on %s", simulator.base_url)
        if on_ready is not None:
            on_ready(simulator.base_url)
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            # SIGTERM (docker stop, systemd) shuts down as cleanly as Ctrl-C; only possible on the main thread.
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        try:
            await stop.wait()
        finally:
            await simulator.stop()

    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:
            asyncio.run(serve())
        else:
            uvloop.run(serve())

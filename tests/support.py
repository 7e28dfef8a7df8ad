"""Running real gateways for tests: in a thread of the test process, or as a `modelgate serve`
process, each on a free port of 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml

from modelgate.config import parse_settings
from modelgate.server.app import create_app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RunningGateway:
    def __init__(self, base_url: str, process: subprocess.Popen[str] | None = None) -> None:
        self.base_url = base_url
        self.process = process  # for gateway_process: a test may kill it (a crash, not a shutdown)

    @property
    def v1(self) -> str:
        return f"{self.base_url}/v1"


@contextmanager
def gateway_in_thread(config: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Iterator[RunningGateway]:
    """The gateway app under uvicorn in a background thread of this process. Without a
    ``database_url`` or ``journal_dir`` in ``config`` it gets a new SQLite database and usage
    journal in a temporary folder (not the working directory other tests share)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = {"database_url": f"sqlite:///{Path(tmp) / 'modelgate.db'}",
                  "journal_dir": str(Path(tmp) / "journal"), **config}
        with _gateway_in_thread(config, env) as gateway:
            yield gateway


@contextmanager
def _gateway_in_thread(config: Mapping[str, Any], env: Mapping[str, str] | None) -> Iterator[RunningGateway]:
    settings = parse_settings(dict(config), env or {}, source="test config")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, loop="uvloop", http="httptools",
        log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    try:
        yield RunningGateway(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def gateway_process(config: Mapping[str, Any] | None = None, *, args: list[str] | None = None,
                    env: Mapping[str, str] | None = None, timeout: float = 20) -> Iterator[RunningGateway]:
    """`modelgate serve` as its own process; ``config`` is written to a temporary YAML file."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "modelgate", "serve", "--port", str(port), "--log-level", "warning"]
        if config is not None:
            path = Path(tmp) / "modelgate.yaml"
            path.write_text(yaml.safe_dump(dict(config)))
            command += ["--config", str(path)]
        command += args or []
        process = subprocess.Popen(command, cwd=tmp, env={**os.environ, **(env or {})},
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base_url, process, timeout)
            yield RunningGateway(base_url, process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_healthy(base_url: str, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise RuntimeError(f"modelgate exited with {process.returncode}:\n{output}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"modelgate did not answer /health within {timeout}s")


def openai_sim_config(sim_url: str, **extra: Any) -> dict[str, Any]:
    """A config with OpenAI-, xAI- and DeepSeek-flavoured providers on the simulator."""
    v1 = f"{sim_url}/v1"
    config: dict[str, Any] = {
        "providers": {
            "openai": {"type": "openai", "base_url": v1, "api_key": "sk-sim", "flavor": "openai"},
            "xai": {"type": "openai", "base_url": v1, "api_key": "sk-sim", "flavor": "xai"},
            "deepseek": {"type": "openai", "base_url": v1, "api_key": "sk-sim", "flavor": "deepseek"},
            "azure": {"type": "azure", "base_url": sim_url, "api_key": "sk-sim", "api_version": "2024-10-21"},
            "azure-v1": {"type": "azure", "base_url": sim_url, "api_key": "sk-sim"},
        },
        "deployments": [
            {"name": "gpt-4o", "provider": "openai", "model": "gpt-4o"},
            {"name": "grok-3-mini", "provider": "xai", "model": "grok-3-mini"},
            {"name": "deepseek-reasoner", "provider": "deepseek", "model": "deepseek-reasoner"},
            {"name": "azure-gpt-4o", "provider": "azure", "model": "gpt-4o"},
            {"name": "azure-v1-gpt-4o", "provider": "azure-v1", "model": "gpt-4o"},
            {"name": "embed", "provider": "openai", "model": "text-embedding-3-small"},
        ],
    }
    config.update(extra)
    return config


class RecordingUpstream:
    """A real upstream on 127.0.0.1 that records what the gateway sends and answers as told.

    ``handler`` is an aiohttp handler; the default answers a fixed chat completion. Used where a
    test must see the exact bytes the gateway sends upstream (the simulator shows only replies).
    """

    def __init__(self, handler: Any = None) -> None:
        from aiohttp import web

        self.requests: list[dict[str, Any]] = []
        self.disconnects = 0
        self._handler = handler or self._default
        self._web = web
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.port = free_port()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _default(self, request: Any) -> Any:
        return self._web.json_response({
            "id": "chatcmpl-rec", "object": "chat.completion", "created": 1, "model": "recorded-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})

    async def _record(self, request: Any) -> Any:
        body = await request.read()
        self.requests.append({"path": request.path_qs, "headers": dict(request.headers),
                              "json": json.loads(body) if body else None})
        return await self._handler(request)

    def __enter__(self) -> RecordingUpstream:
        import asyncio

        web = self._web

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._record)
            runner = web.AppRunner(app, handler_cancellation=True)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            self._runner = runner
            self._ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(timeout=10)

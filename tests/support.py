"""Running real gateways for tests: in a thread of the test process, or as a `modelgate serve`
process, each on a port of 127.0.0.1 that the system picked for it; waiting on conditions.

No port is chosen first and bound later (another process could take it in between): in-process
servers get a socket this process bound, and `modelgate serve --port 0` prints the port it bound.
Tests wait for what they need to see (``wait_until``, ``eventually``), with a generous deadline,
never for a fixed time.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, cast

import anthropic
import httpx
import uvicorn
import yaml
from openai.types.chat import ChatCompletionMessageParam

from modelgate.config import parse_settings
from modelgate.server.serve import server_config

DEADLINE_S = 10.0  # how long a condition may take: generous, as a loaded machine is slow


def wait_until(condition: Callable[[], object], within: float = DEADLINE_S, what: str = "the condition") -> None:
    """Return as soon as ``condition()`` is true; fail if it is still false after ``within`` s."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {within:g}s")
        time.sleep(0.02)


async def eventually(condition: Callable[[], object], within: float = DEADLINE_S, what: str = "the condition") -> None:
    """``wait_until`` for async tests: ``condition`` may return an awaitable; the loop runs meanwhile."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await cast(Awaitable[object], result)
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {within:g}s")
        await asyncio.sleep(0.02)


def bound_socket() -> socket.socket:
    """A TCP socket bound to a port of 127.0.0.1 that the system picked, for a server to listen on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def refused_port() -> Iterator[int]:
    """A port of 127.0.0.1 that refuses connections while the block runs: bound, never listening
    (a port merely found free could be taken by another process meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


class RunningGateway:
    def __init__(self, base_url: str, process: subprocess.Popen[str] | None = None,
                 output: list[str] | None = None) -> None:
        self.base_url = base_url
        self.process = process  # for gateway_process: a test may kill it (a crash, not a shutdown)
        self.output = output if output is not None else []  # gateway_process: its lines so far

    def said(self, text: str) -> bool:
        """Whether the process has printed (or logged) a line containing ``text``."""
        return any(text in line for line in list(self.output))

    @property
    def v1(self) -> str:
        return f"{self.base_url}/v1"


@contextmanager
def gateway_in_thread(config: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Iterator[RunningGateway]:
    """The gateway app under uvicorn, configured as `modelgate serve` configures it (its HTTP
    protocol and the ``server:`` limits), in a background thread of this process. Without a
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
    sock = bound_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(settings, "127.0.0.1", port, "warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), 30, "the gateway's start")
        if not server.started:
            raise RuntimeError("the gateway did not start")
        yield RunningGateway(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextmanager
def gateway_process(config: Mapping[str, Any] | None = None, *, args: list[str] | None = None,
                    env: Mapping[str, str] | None = None, timeout: float = 60) -> Iterator[RunningGateway]:
    """`modelgate serve --port 0` as its own process; ``config`` is written to a temporary YAML
    file. The port is the one it prints; its output is collected (``RunningGateway.output``)."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "modelgate", "serve", "--port", "0", "--log-level", "warning"]
        if config is not None:
            path = Path(tmp) / "modelgate.yaml"
            path.write_text(yaml.safe_dump(dict(config)))
            command += ["--config", str(path)]
        command += args or []
        process = subprocess.Popen(command, cwd=tmp, env={**os.environ, **(env or {})},
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output: list[str] = []
        reader = threading.Thread(target=_collect, args=(process, output), daemon=True)
        reader.start()
        try:
            base_url = _wait_serving(process, output, reader, timeout)
            yield RunningGateway(base_url, process, output)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            reader.join(timeout=10)


def _collect(process: subprocess.Popen[str], output: list[str]) -> None:
    """Read the process's output as it comes (a pipe nobody reads would stall it once full)."""
    assert process.stdout is not None
    for line in process.stdout:
        output.append(line.rstrip("\n"))


SERVING = re.compile(r"^modelgate serving on (http://\S+)$")


def _wait_serving(process: subprocess.Popen[str], output: list[str], reader: threading.Thread,
                  timeout: float) -> str:
    """The URL the process printed, once it answers /health; its output if it exited first."""
    base_url: str | None = None

    def healthy() -> bool:
        nonlocal base_url
        if process.poll() is not None:
            return True
        if base_url is None:
            base_url = next((m.group(1) for line in list(output) if (m := SERVING.match(line))), None)
            if base_url is None:
                return False
        try:
            return httpx.get(f"{base_url}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout, "modelgate answering /health")
    if process.poll() is not None:
        reader.join(timeout=10)
        text = "\n".join(output)
        raise RuntimeError(f"modelgate exited with {process.returncode}:\n{text}")
    assert base_url is not None
    return base_url


def history_entry(dumped: dict[str, Any]) -> ChatCompletionMessageParam:
    """An assistant message of a reply (``model_dump``, maybe edited by the test) as a message of the
    next request. Clients send it back as it came, with the extra fields the SDK's type does not
    list (DeepSeek's reasoning_content, thinking_blocks)."""
    return cast("ChatCompletionMessageParam", dumped)


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


def native_sim_config(sim_url: str, **extra: Any) -> dict[str, Any]:
    """``openai_sim_config`` with Anthropic- and Gemini-type providers on the simulator too."""
    config = openai_sim_config(sim_url, **extra)
    config["providers"]["anthropic"] = {"type": "anthropic", "base_url": sim_url, "api_key": "sk-sim"}
    config["providers"]["gemini"] = {"type": "gemini", "base_url": sim_url, "api_key": "sk-sim"}
    return config


def anthropic_client(gateway: RunningGateway, key: str) -> anthropic.Anthropic:
    """The anthropic SDK on ``gateway`` with ``key``, without retries (use it in a ``with``)."""
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)


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
        self._socket = bound_socket()
        self.port = int(self._socket.getsockname()[1])

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

    def __enter__(self) -> Self:
        web = self._web

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._record)
            runner = web.AppRunner(app, handler_cancellation=True)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.SockSite(runner, self._socket).start())
            self._runner = runner
            self._ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the recording upstream did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(timeout=30)
        self._socket.close()

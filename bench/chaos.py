"""Chaos run: a gateway under steady load while one provider fails in every way in turn.

Three simulators stand in for three providers (openai, azure, xai), one process each, so a fault
set on one simulator is a fault of that provider alone. The gateway (``modelgate serve``, its own
process) serves the demo's providers with one deployment group in front of them::

    chat:  openai/gpt-4o (weight 3) + azure/gpt-4o (weight 1), weighted, retries 2, timeout 2 s,
           fallbacks: [grok]                       (every fault below has a healthy way around)
    grok:  xai/grok-3
    solo:  openai/gpt-4o-mini, timeout 2 s, no fallback   (the control: nothing to fail over to)

An open-loop client sends ``--rate`` requests per second to ``chat`` (half of them streaming) and
``--solo-rate`` to ``solo``, and checks every answer: status 200, content present, a stream ends
with ``[DONE]`` and carries no error event. For each fault kind the openai simulator misbehaves for
``--phase`` seconds, then recovers for ``--recover`` seconds. Refused connections are made by
stopping the openai simulator and starting it again on the same port.

Reported per phase (a request counts in the phase it was sent in): requests, client-visible
errors per deployment, retries (upstream attempts beyond the first, from ``x-modelgate-attempts``),
latency of non-streaming requests answered at the first attempt and of those that failed over, and
how long the breaker of openai/gpt-4o took to open after the fault began and to close after it
ended (polled from ``GET /health/deployments`` every 50 ms).

    python bench/chaos.py                       # all faults, about 2 minutes
    python bench/chaos.py --faults 500,timeout --phase 5 --json chaos.json

This is a script that reports figures, not a test: nothing here fails CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

MASTER_KEY = "sk-chaos"
HEADERS = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}

# Fault kind -> simulator fault spec on every model of the openai simulator ("refused" stops it).
FAULTS: dict[str, str | None] = {
    "429-retry-after": "status=429;retry_after=1",
    "500": "status=500",
    "503": "status=503",
    "529": "status=529",
    "refused": None,
    "timeout": "timeout",
    "cut-before-first-token": "cut=1",
    "cut-mid-stream": "cut=4",
    "malformed": "malformed",
}
TARGET = "openai/gpt-4o"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# Processes


@dataclass
class Proc:
    name: str
    command: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self, core: int | None) -> None:
        command = (["taskset", "-c", str(core)] if core is not None else []) + self.command
        handle = self.log.open("ab")
        self.popen = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
        handle.close()

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.popen = None


async def wait_http(url: str, session: aiohttp.ClientSession, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            async with session.get(url, headers=HEADERS) as response:
                if response.status < 500:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {within}s")


def simulator(name: str, port: int, folder: Path) -> Proc:
    config = folder / f"sim-{name}.yaml"
    # Some pacing, so that requests overlap as they do in production.
    config.write_text(yaml.safe_dump({"defaults": {"latency_ms": 20, "ttft_ms": 20, "chunk_ms": 3}}))
    return Proc(f"sim-{name}", [sys.executable, "-m", "modelgate", "sim", "--port", str(port),
                                "--config", str(config)], folder / f"sim-{name}.log")


def gateway_config(ports: dict[str, int], folder: Path) -> dict[str, Any]:
    return {
        "master_key": MASTER_KEY,
        "database_url": f"sqlite:///{folder / 'chaos.db'}",
        "routing": {"failures": 3, "cooldown": 2},
        "providers": {
            "openai": {"type": "openai", "base_url": f"http://127.0.0.1:{ports['openai']}/v1", "api_key": "sim"},
            "azure": {"type": "azure", "base_url": f"http://127.0.0.1:{ports['azure']}", "api_key": "sim",
                      "api_version": "2024-10-21"},
            "xai": {"type": "openai", "base_url": f"http://127.0.0.1:{ports['xai']}/v1", "api_key": "sim",
                    "flavor": "xai"},
        },
        "deployments": [
            {"name": "chat", "strategy": "weighted", "retries": 2, "timeout": 2, "fallbacks": ["grok"],
             "targets": [{"provider": "openai", "model": "gpt-4o", "weight": 3},
                         {"provider": "azure", "model": "gpt-4o", "weight": 1}]},
            {"name": "grok", "provider": "xai", "model": "grok-3"},
            {"name": "solo", "provider": "openai", "model": "gpt-4o-mini", "timeout": 2},
        ],
    }


# ---------------------------------------------------------------------------------------------
# Load


@dataclass
class Outcome:
    phase: str
    deployment: str
    stream: bool
    sent: float  # intended send time (monotonic)
    latency: float = 0.0
    ok: bool = False
    status: int = 0
    provider: str = ""
    attempts: int = 0
    error: str = "no answer before the run ended"


async def one_request(session: aiohttp.ClientSession, url: str, outcome: Outcome, n: int) -> None:
    body: dict[str, Any] = {"model": outcome.deployment, "stream": outcome.stream,
                            "messages": [{"role": "user", "content": f"chaos request {n}"}]}
    try:
        async with session.post(url, data=orjson.dumps(body), headers=HEADERS) as response:
            outcome.status = response.status
            outcome.provider = response.headers.get("x-modelgate-provider", "")
            outcome.attempts = int(response.headers.get("x-modelgate-attempts", "0"))
            raw = await response.read()
            outcome.error = ""
            if response.status != 200:
                outcome.error = f"HTTP {response.status}: {raw[:160].decode('utf-8', 'replace')}"
            elif outcome.stream:
                outcome.ok, outcome.error = check_stream(raw)
            else:
                text = orjson.loads(raw)["choices"][0]["message"]["content"]
                outcome.ok = bool(text)
                outcome.error = "" if text else "empty content"
    except (TimeoutError, aiohttp.ClientError, ValueError, KeyError) as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    outcome.latency = time.monotonic() - outcome.sent


def check_stream(raw: bytes) -> tuple[bool, str]:
    text, done = [], False
    for line in raw.split(b"\n"):
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            done = True
            continue
        chunk = orjson.loads(data)
        if "error" in chunk:
            return False, f"error event: {chunk['error'].get('message', '')[:160]}"
        for choice in chunk.get("choices") or ():
            text.append((choice.get("delta") or {}).get("content") or "")
    if not done:
        return False, "stream ended without [DONE]"
    return (True, "") if "".join(text) else (False, "stream without content")


class Load:
    """Open-loop load: requests leave on schedule whatever the gateway's latency."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, rate: float, solo_rate: float) -> None:
        self.session = session
        self.url = f"{base_url}/v1/chat/completions"
        self.rate = rate
        self.solo_rate = solo_rate
        self.phase = "warm-up"
        self.outcomes: list[Outcome] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()

    async def run(self) -> None:
        await asyncio.gather(self._schedule("chat", self.rate), self._schedule("solo", self.solo_rate))

    async def _schedule(self, deployment: str, rate: float) -> None:
        if rate <= 0:
            return
        interval = 1.0 / rate
        start = time.monotonic()
        n = 0
        while not self._stop.is_set():
            sent = start + n * interval
            delay = sent - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            outcome = Outcome(self.phase, deployment, stream=n % 2 == 1, sent=sent)
            self.outcomes.append(outcome)
            task = asyncio.create_task(one_request(self.session, self.url, outcome, n))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            n += 1

    async def stop(self) -> None:
        self._stop.set()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=15)


class BreakerWatch:
    """Polls /health/deployments and notes when the watched target's breaker changes state."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.url = f"{base_url}/health/deployments"
        self.state = "closed"
        self.changes: list[tuple[float, str]] = []

    async def run(self) -> None:
        while True:
            try:
                async with self.session.get(self.url, headers=HEADERS) as response:
                    report = await response.json()
                for deployment in report["deployments"]:
                    for target in deployment["targets"]:
                        if f"{target['provider']}/{target['model']}" == TARGET and target["state"] != self.state:
                            self.state = target["state"]
                            self.changes.append((time.monotonic(), self.state))
            except (aiohttp.ClientError, ValueError) as exc:
                print(f"  (health poll failed: {exc})", file=sys.stderr)
            await asyncio.sleep(0.05)

    def first(self, state: str, after: float, before: float) -> float | None:
        for at, seen in self.changes:
            if after <= at <= before and seen == state:
                return at - after
        return None


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Phase:
    name: str
    started: float
    fault_ended: float = 0.0
    ended: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)


async def set_fault(session: aiohttp.ClientSession, sim_url: str, spec: str | None) -> None:
    async with session.post(f"{sim_url}/sim/faults", data=orjson.dumps({"model": "*", "fault": spec})) as response:
        response.raise_for_status()


def summarize(phase: Phase, outcomes: list[Outcome], watch: BreakerWatch) -> dict[str, Any]:
    mine = [o for o in outcomes if o.phase == phase.name]
    chat = [o for o in mine if o.deployment == "chat"]
    solo = [o for o in mine if o.deployment == "solo"]
    # Latency figures from the non-streaming requests: a stream's total time is mostly its pacing.
    failed_over = [o.latency for o in chat if o.ok and o.attempts > 1 and not o.stream]
    direct = [o.latency for o in chat if o.ok and o.attempts == 1 and not o.stream]
    attempts = Counter(o.attempts for o in chat if o.ok)
    errors = Counter(o.error.split(":")[0] for o in chat if not o.ok)

    def ms(values: list[float], q: float) -> float | None:
        if not values:
            return None
        ordered = sorted(values)
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    opened = watch.first("open", phase.started, phase.fault_ended) if phase.name != "baseline" else None
    closed = watch.first("closed", phase.fault_ended, phase.ended) if phase.name != "baseline" else None
    return {
        "chat_requests": len(chat),
        "chat_served": sum(o.ok for o in chat),
        "chat_client_errors": len(chat) - sum(o.ok for o in chat),
        "chat_error_kinds": dict(errors),
        "solo_requests": len(solo),
        "solo_client_errors": len(solo) - sum(o.ok for o in solo),
        "retries": sum(max(o.attempts - 1, 0) for o in chat),
        "attempts_histogram": {str(k): v for k, v in sorted(attempts.items())},
        "answered_by": dict(Counter(o.provider for o in chat if o.ok)),
        "direct_p50_ms": ms(direct, 0.5),
        "direct_p99_ms": ms(direct, 0.99),
        "failover_p50_ms": ms(failed_over, 0.5),
        "failover_max_ms": ms(failed_over, 1.0),
        "breaker_open_after_s": None if opened is None else round(opened, 2),
        "breaker_closed_after_recovery_s": None if closed is None else round(closed, 2),
        "samples": ([o.error for o in chat if not o.ok] + [o.error for o in solo if not o.ok])[:3],
    }


async def chaos(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="modelgate-chaos-"))
    ports = {name: free_port() for name in ("openai", "azure", "xai")}
    sims = {name: simulator(name, port, folder) for name, port in ports.items()}
    gateway_port = free_port()
    config_path = folder / "modelgate.yaml"
    config_path.write_text(yaml.safe_dump(gateway_config(ports, folder)))
    gateway = Proc("gateway", [sys.executable, "-m", "modelgate", "serve", "--config", str(config_path),
                               "--port", str(gateway_port), "--log-level", "warning"], folder / "gateway.log")
    pin = (os.cpu_count() or 1) >= 2 and not args.no_pin
    rig_core, gateway_core = (0, 1) if pin else (None, None)
    base_url = f"http://127.0.0.1:{gateway_port}"
    sim_url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    print(f"chaos run: logs and config in {folder}", flush=True)
    if pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    for proc in sims.values():
        proc.start(rig_core)
    gateway.start(gateway_core)
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        try:
            for url in sim_url.values():
                await wait_http(f"{url}/sim/stats", session)
            await wait_http(f"{base_url}/health", session)
            load = Load(session, base_url, args.rate, args.solo_rate)
            watch = BreakerWatch(session, base_url)
            runners = [asyncio.create_task(load.run()), asyncio.create_task(watch.run())]
            await asyncio.sleep(1.0)  # warm-up: connections, first latency figures
            phases: list[Phase] = []

            async def run_phase(name: str, inject: Callable[[], Any] | None, clear: Callable[[], Any] | None) -> None:
                phase = Phase(name, time.monotonic())
                load.phase = name
                print(f"  {name} ...", flush=True)
                if inject is not None:
                    await inject()
                await asyncio.sleep(args.phase)
                if clear is not None:
                    await clear()
                phase.fault_ended = time.monotonic()
                await asyncio.sleep(args.recover if inject is not None else 0)
                phase.ended = time.monotonic()
                phases.append(phase)

            await run_phase("baseline", None, None)
            for kind in args.faults:
                if kind == "refused":
                    async def stop_openai() -> None:
                        sims["openai"].stop()

                    async def start_openai() -> None:
                        sims["openai"].start(rig_core)
                        await wait_http(f"{sim_url['openai']}/sim/stats", session)

                    await run_phase(kind, stop_openai, start_openai)
                else:
                    spec = FAULTS[kind]

                    async def inject(spec: str | None = spec) -> None:
                        await set_fault(session, sim_url["openai"], spec)

                    async def clear() -> None:
                        await set_fault(session, sim_url["openai"], None)

                    await run_phase(kind, inject, clear)
            load.phase = "cool-down"
            await load.stop()
            for runner in runners:
                runner.cancel()
            await asyncio.gather(*runners, return_exceptions=True)
            for phase in phases:
                phase.figures = summarize(phase, load.outcomes, watch)
        finally:
            gateway.stop()
            for proc in sims.values():
                proc.stop()
    return {"rate": args.rate, "solo_rate": args.solo_rate, "phase_s": args.phase, "recover_s": args.recover,
            "pinned": pin, "logs": str(folder),
            "phases": {p.name: p.figures for p in phases}}


def print_report(report: dict[str, Any]) -> None:
    print(f"\nchat at {report['rate']} req/s (half streaming), solo at {report['solo_rate']} req/s; "
          f"each fault {report['phase_s']} s on openai, then {report['recover_s']} s recovery\n")
    header = (f"{'phase':24} {'chat':>5} {'errors':>6} {'solo err':>8} {'retries':>7} "
              f"{'p50 direct ms':>13} {'failover p50/max ms':>20} {'open after':>10} {'closed after':>12}")
    print(header)
    print("-" * len(header))
    for name, f in report["phases"].items():
        failover = (f"{f['failover_p50_ms']}/{f['failover_max_ms']}" if f["failover_p50_ms"] is not None else "-")
        opened = "-" if f["breaker_open_after_s"] is None else f"{f['breaker_open_after_s']} s"
        closed = "-" if f["breaker_closed_after_recovery_s"] is None else f"{f['breaker_closed_after_recovery_s']} s"
        print(f"{name:24} {f['chat_requests']:>5} {f['chat_client_errors']:>6} "
              f"{f['solo_client_errors']:>4}/{f['solo_requests']:<3} {f['retries']:>7} "
              f"{f['direct_p50_ms']!s:>13} {failover:>20} {opened:>10} {closed:>12}")
    print()
    for name, f in report["phases"].items():
        if f["chat_client_errors"] or f["samples"]:
            print(f"{name}: chat errors {f['chat_error_kinds']}; e.g. {f['samples'][:2]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=40.0, help="requests/s to the chat group")
    parser.add_argument("--solo-rate", type=float, default=4.0, help="requests/s to the no-fallback control")
    parser.add_argument("--phase", type=float, default=6.0, help="seconds each fault lasts")
    parser.add_argument("--recover", type=float, default=4.0, help="seconds of recovery after each fault")
    parser.add_argument("--faults", type=lambda s: s.split(","), default=list(FAULTS),
                        help=f"comma-separated, from: {', '.join(FAULTS)}")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the gateway and the rig to cores")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    unknown = [f for f in args.faults if f not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s) {unknown}; choose from {', '.join(FAULTS)}")
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    report = asyncio.run(chaos(args))
    print_report(report)
    if args.json:
        args.json.write_text(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

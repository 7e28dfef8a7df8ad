"""What an answer from the response cache costs, beside a miss and beside a deployment without a
cache: the gateway's CPU per request and the client's latency.

One stand-in upstream (bench/standin.py: instant answers; a stream of 64 chunks 2 ms apart after
20 ms, so that streamed scenarios take minutes, not the protocol's 1.4 s a stream) and one
gateway (`modelgate serve`, its own process, SQLite, the request log on as by default) with two
deployments on it: ``bench-model`` (no cache) and ``bench-cached`` (``cache: {mode: exact}``).
With ``--redis URL`` a second gateway keeps its cache in Redis. Each scenario sends ``--requests``
requests from ``--concurrency`` keep-alive connections (after ``--warmup`` untimed ones), the
body of the benchmark protocol (system + user message, ``max_tokens`` 256, temperature 0):

    uncached   bench-model, each request different: the gateway's overhead on a request
    miss       bench-cached, each request different: looked up, not found, asked, kept
    hit        bench-cached, the same request every time: answered from the cache

each non-streamed and streamed. The gateway's CPU is its process's utime + stime over the timed
requests (/proc), divided by their number; the stand-in's and the load generator's are not in it.
Every answer is checked (status, body, usage) as the protocol's load generator checks it.

    python bench/cache.py                         # 3000 requests a scenario
    python bench/cache.py --redis redis://127.0.0.1:6379/0
    python bench/cache.py --smoke                 # 100 requests a scenario: the figures are produced
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import loadgen
import measure
import yaml
from systems import BENCH, PY, _modelgate_cmd

STANDIN = ["--mode", "instant", "--ttft-ms", "20", "--chunk-ms", "2"]

SCENARIOS = (("uncached", "bench-model", False), ("miss", "bench-cached", False), ("hit", "bench-cached", True))


def gateway_config(standin_port: int, database: Path, redis_url: str | None) -> dict[str, Any]:
    base = f"http://127.0.0.1:{standin_port}/v1"
    config: dict[str, Any] = {
        "database_url": f"sqlite:///{database}",
        "journal_dir": str(database.parent / "journal"),
        "providers": {"standin": {"type": "openai", "base_url": base, "api_key": "bench"}},
        "deployments": [
            {"name": "bench-model", "provider": "standin", "model": "bench-model"},
            {"name": "bench-cached", "provider": "standin", "model": "bench-model",
             "cache": {"mode": "exact", "ttl": 3600}},
        ],
    }
    if redis_url:
        config["redis_url"] = redis_url
    return config


async def timed(target: loadgen.Target, shape: loadgen.Shape, nonces: Iterator[int], count: int,
                concurrency: int, pid: int) -> dict[str, Any]:
    """``count`` requests, each with the next of ``nonces``: the gateway's CPU per request and the
    latencies, every answer checked."""
    pool = loadgen.Pool(target, concurrency)
    outcomes: list[loadgen.Outcome] = []
    left = [count]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            nonce = next(nonces)
            conn = await pool.acquire()
            response = await asyncio.wait_for(conn.send(loadgen.build_request(target, shape, nonce)), 60)
            pool.release(conn)
            outcomes.append(loadgen.check(response, shape, nonce, response.sent_at))

    with measure.CpuMeter(pid) as cpu:
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    pool.close()
    found = loadgen.report(outcomes, elapsed)
    found["cpu_us_per_request"] = 1e6 * cpu.seconds / count
    return found


async def run_gateway(label: str, config: dict[str, Any], args: argparse.Namespace,
                      log_dir: Path) -> list[dict[str, Any]]:
    path = log_dir / f"{label}.yaml"
    path.write_text(yaml.safe_dump(config))
    port = measure.free_port()
    gateway = measure.start(label, _modelgate_cmd(port, path), core=None, log_dir=log_dir)
    rows: list[dict[str, Any]] = []
    try:
        await measure.wait_ready(gateway, port)
        fresh = itertools.count(10_000_000)
        for stream in (False, True):
            shape = loadgen.Shape(stream=stream)
            for scenario, model, same in SCENARIOS:
                target = loadgen.Target("127.0.0.1", port, model=model)
                nonces: Iterator[int] = itertools.repeat(42 + stream) if same else fresh
                await timed(target, shape, nonces, args.warmup, args.concurrency, gateway.pid)
                found = await timed(target, shape, nonces, args.requests, args.concurrency, gateway.pid)
                if found["ok"] != args.requests:
                    raise RuntimeError(f"{label} {scenario}: {found['errors']}")
                rows.append({"store": label, "scenario": scenario, "stream": stream, **found})
    finally:
        measure.stop(gateway)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| store | request | streamed | gateway CPU µs/request | p50 ms | p99 ms | requests/s |",
             "|---|---|---|---:|---:|---:|---:|"]
    for row in rows:
        latency = row["latency_ms"]
        lines.append(f"| {row['store']} | {row['scenario']} | {'yes' if row['stream'] else 'no'} | "
                     f"{row['cpu_us_per_request']:.0f} | {latency['p50']:.2f} | {latency['p99']:.2f} | "
                     f"{row['achieved_rps']:.0f} |")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        standin_port = measure.free_port()
        standin = measure.start("standin", [PY, str(BENCH / "standin.py"), "--port", str(standin_port),
                                            *STANDIN], core=measure.RIG_CORE, log_dir=log_dir)
        try:
            await measure.wait_ready(standin, standin_port)
            rows = await run_gateway("memory", gateway_config(standin_port, log_dir / "memory.db", None), args,
                                     log_dir)
            if args.redis:
                rows += await run_gateway("redis", gateway_config(standin_port, log_dir / "redis.db", args.redis),
                                          args, log_dir)
        finally:
            measure.stop(standin)
    print(table(rows))


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--redis", help="a Redis URL: also measure a gateway whose cache is in Redis")
    parser.add_argument("--smoke", action="store_true", help="100 requests a scenario (checks, not figures)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.requests, args.warmup = 100, 20
    return args


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))

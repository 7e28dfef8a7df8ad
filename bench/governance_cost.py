"""What limits, budgets and metering cost on the request path: the pipeline stages timed in-process.

Each variant runs the same calls through a chain ending in a stand-in that yields a provider's
events at once (no network), so the figure is the stages' own CPU per call:

    bare          the terminal alone
    metering      + Metering (record built, journaled with one write(), queued)
    +limits       + RateLimit: key, project and deployment rpm and tpm (6 counters)
    +budget       + BudgetGuard: key and project budgets (reserve, settle)

with the counters in this process (local) and, when ``--redis`` is given, in Redis (one script
run per stage, plus the queued corrections). ``--stream`` makes each answer 64 text deltas.
The usage records go to a real SQLite database in the background, as in the gateway; their
writing is reported apart (CPU per record), since it is not on the request path.

    python bench/governance_cost.py [--calls 20000] [--stream] [--redis redis://127.0.0.1:6379/0]

Prints one JSON object: microseconds per call for each variant, and each variant's extra over bare.
"""

from __future__ import annotations

import argparse
import json
import secrets
import tempfile
import time
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelgate.auth import Limits, Principal
from modelgate.budgets import BudgetGuard, LocalLedger
from modelgate.budgets.redis import RedisLedger
from modelgate.catalog.facts import ModelFacts
from modelgate.config.settings import DeploymentSettings, Settings, TargetSettings
from modelgate.limits import LocalLimiter, RateLimit
from modelgate.limits.redis import RedisLimiter
from modelgate.metering import Journal, Metering, PriceBook, UsageRecorder
from modelgate.pipeline.contract import Call, Stage, build_chain
from modelgate.redis_client import RedisClient
from modelgate.schema.events import Event, Finish, Start, TextDelta, Usage
from modelgate.schema.request import ChatRequest, Message, TextPart
from modelgate.storage import Storage, UsageRecord, prices_from_settings

DEPLOYMENT = DeploymentSettings(
    name="bench", rpm=10**9, tpm=10**12,
    targets=[TargetSettings(provider="openai", model="gpt-4o",
                            facts=ModelFacts(input_price=2.5, output_price=10.0, max_output_tokens=16384))])
PRINCIPAL = Principal(key_id="key_bench", project="bench",
                      key_limits=Limits(rpm=10**9, tpm=10**12, budget=10.0**9),
                      project_limits=Limits(rpm=10**9, tpm=10**12, budget=10.0**9))


def events(stream: bool) -> list[Event]:
    deltas: list[Event] = [TextDelta("word ") for _ in range(64)] if stream else [TextDelta("A short answer.")]
    return [Start(model="gpt-4o-2024-08-06"), *deltas, Finish("stop"), Usage(input_tokens=40, output_tokens=70)]


def terminal(answer: list[Event]) -> Any:
    async def upstream(call: Call) -> AsyncGenerator[Event, None]:
        call.attempts += 1
        call.provider, call.upstream_model = "openai", "gpt-4o"
        for event in answer:
            yield event
    return upstream


def request(n: int) -> ChatRequest:
    return ChatRequest(model="bench", max_tokens=256, messages=[
        Message(role="system", content=[TextPart("You are a helpful assistant.")]),
        Message(role="user", content=[TextPart(f"Question number {n}: what is the capital of France?")])])


class NullSink:
    async def write_usage(self, records: Sequence[UsageRecord]) -> int:
        return len(records)


async def write_cost(url: str, records: int = 20_000) -> float:
    """CPU microseconds per usage record written in batches of 500 (the recorder's batch)."""
    storage = await Storage.open(url)
    try:
        await storage.upgrade()
        now = datetime.now(UTC)
        batch = [UsageRecord(request_id=f"req_{secrets.token_hex(8)}", created_at=now, project="bench",
                             key_id="key_bench", deployment="bench", provider="openai", model="gpt-4o",
                             route="chat", input_tokens=40, output_tokens=70, cost=0.001, price=0.001,
                             latency_ms=1.0, status=200, attempts=1) for _ in range(records)]
        cpu = time.process_time()
        for start in range(0, records, 500):
            await storage.write_usage(batch[start:start + 500])
        return round((time.process_time() - cpu) / records * 1e6, 1)
    finally:
        await storage.close()


async def run(chain: Any, calls: int) -> tuple[float, float]:
    """Wall and CPU microseconds per call, sequential (concurrency 1)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for n in range(calls):
        call = Call(request_id=f"req_{n}_{secrets.token_hex(4)}", request=request(n), deployment=DEPLOYMENT,
                    principal=PRINCIPAL)
        async for _ in chain(call):
            pass
    return ((time.perf_counter() - wall) / calls * 1e6, (time.process_time() - cpu) / calls * 1e6)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="per variant, over all rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--redis", default=None)
    parser.add_argument("--postgres", default=None, help="an empty PostgreSQL database to time writes on")
    args = parser.parse_args()

    settings = Settings(deployments={DEPLOYMENT.name: DEPLOYMENT})
    prices = PriceBook(prices_from_settings(settings), settings.deployments.values())
    answer = events(args.stream)
    end = terminal(answer)
    results: dict[str, Any] = {"calls": args.calls, "stream": args.stream, "events_per_call": len(answer)}
    with tempfile.TemporaryDirectory() as tmp:
        recorder = UsageRecorder(NullSink(), Journal(Path(tmp) / "journal"))
        await recorder.start()
        metering = Metering(recorder, prices)
        backends: list[tuple[str, Any, Any]] = [("local", LocalLimiter(), LocalLedger())]
        redis = RedisClient.from_url(args.redis) if args.redis else None
        if redis is not None:
            prefix = f"bench:{secrets.token_hex(4)}:"
            backends.append(("redis", RedisLimiter(redis, prefix + "rl:"), RedisLedger(redis, prefix + "b:")))
        variants: list[tuple[str, list[Stage]]] = [("bare", []), ("metering", [metering])]
        for name, limiter, ledger in backends:
            variants += [(f"metering+limits ({name})", [metering, RateLimit(limiter)]),
                         (f"metering+limits+budget ({name})",
                          [metering, RateLimit(limiter), BudgetGuard(ledger, prices)])]
        await run(build_chain([], end), 2000)  # warm up
        # Interleaved rounds, the best round of each variant: the machine is shared and noisy,
        # and what is compared is the stages' cost, not the neighbours'.
        chains = [(name, build_chain(stages, end)) for name, stages in variants]
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.rounds):
            for name, chain in chains:
                wall, cpu = await run(chain, args.calls // args.rounds)
                if name not in best or cpu < best[name][1]:
                    best[name] = (wall, cpu)
        for name, (wall, cpu) in best.items():
            results[name] = {"wall_us": round(wall, 1), "cpu_us": round(cpu, 1)}
        bare = results["bare"]["cpu_us"]
        for name, _ in variants[1:]:
            results[name]["extra_cpu_us"] = round(results[name]["cpu_us"] - bare, 1)
        await recorder.stop()
        for name, url in (("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}"), ("postgresql", args.postgres)):
            if url:
                results[f"{name}_write_cpu_us_per_record"] = await write_cost(url)
        for _, limiter, ledger in backends:
            await limiter.close()
            await ledger.close()
        if redis is not None:
            keys = [key async for key in redis.scan_iter(match=prefix + "*")]
            if keys:
                await redis.command("DEL", *keys)
            await redis.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())

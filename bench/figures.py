"""The protocol's figures (BENCHMARKS.md), one async function each, for any running system.

Every figure returns a plain dict that goes into the raw JSON as is. Gateways are compared with the
direct path measured in the same run, never with numbers from another run.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

import loadgen
import measure
from systems import Running


@dataclass(frozen=True)
class Plan:
    pairs: int  # interleaved request pairs at concurrency 1
    tput_s: float  # each closed-loop throughput run
    cpu_s: float  # the fixed-rate CPU run
    cpu_rate_max: float  # fixed rate, capped at half the system's c=8 throughput
    stream_rate: float
    stream_s: float
    big_pairs: int
    slow_s: float
    frontier_s: float  # each step of the sweep
    soak_s: float
    wrk_s: int
    fault_repeats: int


# Sized so the default run (8 systems) fits in 10 minutes on the 2-core machine; the aim's
# 10-minute soak is its own command (`--systems modelgate --soak-s 600`).
FULL = Plan(pairs=1000, tput_s=2.5, cpu_s=6, cpu_rate_max=300, stream_rate=20, stream_s=5, big_pairs=300,
            slow_s=4, frontier_s=1.5, soak_s=20, wrk_s=3, fault_repeats=10)
SMOKE = Plan(pairs=30, tput_s=0.5, cpu_s=0.5, cpu_rate_max=100, stream_rate=10, stream_s=0.3, big_pairs=10,
             slow_s=0.5, frontier_s=0.3, soak_s=1, wrk_s=1, fault_repeats=2)

PLAIN = loadgen.Shape()
STREAM = loadgen.Shape(stream=True)
BIG = loadgen.Shape(prompt_bytes=10_000)


def _cpu_pid(sut: Running, kind: str = "instant") -> int | None:
    """The process whose CPU a figure charges: the gateway, or for ``direct`` the stand-in itself."""
    if sut.proc is not None:
        return sut.proc.pid
    if sut.upstreams is not None:
        kinds = list(sut.upstreams.ports)
        return sut.upstreams.procs[kinds.index(kind)].pid
    return None


async def _metered(pid: int | None, coro: Any) -> tuple[dict[str, Any], float | None]:
    if pid is None:
        return await coro, None
    with measure.CpuMeter(pid) as cpu:
        res = await coro
    return res, cpu.seconds


def _t(sut: Running, kind: str) -> loadgen.Target:
    t = sut.target(kind)
    assert t is not None, f"{sut.name} has no {kind}"
    return t


async def gates(sut: Running) -> dict[str, Any]:
    """One request of each shape must pass every correctness gate, or the system's run is void."""
    out: dict[str, Any] = {}
    for name, kind, shape in (("plain", "instant", PLAIN), ("stream", "instant", STREAM), ("big", "big", BIG)):
        t = sut.target(kind)
        if t is None:
            continue
        pool = loadgen.Pool(t, 1)
        o = await loadgen.one(pool, shape)
        pool.close()
        out[name] = o.error or "ok"
    return out


async def added_latency(sut: Running, direct: Running, floor: Running | None, plan: Plan) -> dict[str, Any]:
    """Figure 1: concurrency 1, interleaved with direct (and the floor) request by request."""
    targets = [_t(direct, "instant")]
    if floor is not None and floor is not sut:
        targets.append(_t(floor, "instant"))
    if sut is not direct:
        targets.append(_t(sut, "instant"))
    res = await loadgen.paired(targets, PLAIN, plan.pairs)
    names = ["direct"] + (["floor"] if floor is not None and floor is not sut else []) + (
        [sut.name] if sut is not direct else [])
    for name, entry in zip(names, res["targets"], strict=True):
        entry["name"] = name
    return res


async def throughput(sut: Running, plan: Plan) -> dict[str, Any]:
    out = {}
    for c in (1, 8, 16):
        out[f"c{c}"] = await loadgen.closed_loop(_t(sut, "instant"), PLAIN, c, duration=plan.tput_s)
    return out


async def cpu_per_request(sut: Running, rate: float, plan: Plan, kind: str = "instant",
                          shape: loadgen.Shape = PLAIN) -> dict[str, Any]:
    """Figure 2: CPU seconds of the system's process tree / completed requests at a fixed rate."""
    res, cpu = await _metered(_cpu_pid(sut, kind), loadgen.open_loop(_t(sut, kind), shape, rate, plan.cpu_s))
    res["cpu_s"] = cpu
    res["cpu_ms_per_req"] = None if cpu is None else cpu / max(1, res["ok"]) * 1e3
    return res


async def stream_rate(sut: Running, plan: Plan) -> tuple[float, float | None]:
    """A stream rate that keeps the system under half a core, from a short probe of its CPU per stream.

    A saturated system queues streams and inflates time to first token with its own backlog, which
    is a throughput figure, not a streaming one.
    """
    pid = _cpu_pid(sut)
    if pid is None or sut.proc is None:
        return plan.stream_rate, None
    probe, cpu = await _metered(pid, loadgen.open_loop(_t(sut, "instant"), STREAM, 2.0, min(2.0, plan.stream_s)))
    per_stream = (cpu or 0.0) / max(1, probe["ok"])
    if per_stream <= 0:
        return plan.stream_rate, per_stream
    return max(1.0, min(plan.stream_rate, round(0.5 / per_stream, 1))), per_stream


async def streaming(sut: Running, direct: Running, plan: Plan) -> dict[str, Any]:
    """Figures 2 and 4: the same open-loop stream load on direct and on the system, side by side."""
    rate, probe = await stream_rate(sut, plan)
    d_run = loadgen.open_loop(_t(direct, "instant"), STREAM, rate, plan.stream_s)
    if sut is direct:
        res, cpu = await _metered(_cpu_pid(sut), d_run)
        d = res
    else:
        pid = _cpu_pid(sut)
        assert pid is not None
        with measure.CpuMeter(pid) as meter:
            d, res = await asyncio.gather(d_run, loadgen.open_loop(_t(sut, "instant"), STREAM, rate,
                                                                    plan.stream_s))
        cpu = meter.seconds
    out = {"direct": d, "system": res, "cpu_s": cpu, "rate": rate, "probe_cpu_ms_per_stream": probe and probe * 1e3,
           "cpu_ms_per_stream": None if cpu is None else cpu / max(1, res["ok"]) * 1e3}
    if res.get("ttft_ms") and d.get("ttft_ms"):
        out["added_ttft_p50_ms"] = res["ttft_ms"]["p50"] - d["ttft_ms"]["p50"]
        out["added_ttft_p99_ms"] = res["ttft_ms"]["p99"] - d["ttft_ms"]["p99"]
        out["added_gap_p99_ms"] = res["gap_ms"]["p99"] - d["gap_ms"]["p99"]
    return out


async def big(sut: Running, direct: Running, rate: float, plan: Plan) -> dict[str, Any]:
    """~10 KB prompt, ~10 KB response: added latency (paired) and CPU per request."""
    targets = [_t(direct, "big")] + ([_t(sut, "big")] if sut is not direct else [])
    out: dict[str, Any] = {"paired": await loadgen.paired(targets, BIG, plan.big_pairs, warmup=10)}
    out["cpu"] = await cpu_per_request(sut, rate, plan, "big", BIG)
    return out


async def slow_upstreams(sut: Running, plan: Plan, rate20: float, rate1000: float) -> dict[str, Any]:
    """In-flight capacity: upstreams that take 20 ms and 1 s, at rates that keep many requests open."""
    out = {}
    for kind, rate, base_ms in (("slow20", rate20, 20.0), ("slow1000", rate1000, 1000.0)):
        r = await loadgen.open_loop(_t(sut, kind), PLAIN, rate, plan.slow_s)
        lat = r["latency_ms"]
        r["added_p50_ms"] = lat.get("p50", float("nan")) - base_ms
        r["added_p99_ms"] = lat.get("p99", float("nan")) - base_ms
        r["in_flight"] = rate * base_ms / 1e3
        out[kind] = r
    return out


async def frontier(sut: Running, direct: Running, plan: Plan, guide_rps: float) -> dict[str, Any]:
    """Figure 3: the highest fixed rate with added p99 <= 5 ms and <= 50 ms and < 0.1% errors.

    Steps up from a twentieth of the closed-loop throughput. One stall can push a short step's p99
    over a bound, so the sweep goes on past a single miss and stops after two misses in a row.
    """
    steps: list[dict[str, Any]] = []
    best5 = best50 = 0.0
    misses = 0
    rates = sorted({max(10.0, round(guide_rps * f, -1)) for f in (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2)})
    for rate in rates:
        d = await loadgen.open_loop(_t(direct, "instant"), PLAIN, rate, plan.frontier_s)
        if d["achieved_rps"] < 0.9 * rate or d["error_rate"] > 0:
            # The load generator cannot send this fast even to the stand-in: the rig is the limit.
            steps.append({"rate": rate, "rig_limited": True, "direct_achieved_rps": d["achieved_rps"]})
            break
        s = await loadgen.open_loop(_t(sut, "instant"), PLAIN, rate, plan.frontier_s)
        added = s["latency_ms"].get("p99", float("inf")) - d["latency_ms"].get("p99", 0.0)
        good = s["error_rate"] < 0.001 and s["achieved_rps"] >= 0.9 * rate
        steps.append({"rate": rate, "added_p99_ms": added, "error_rate": s["error_rate"],
                      "achieved_rps": s["achieved_rps"], "p99_ms": s["latency_ms"].get("p99"),
                      "direct_p99_ms": d["latency_ms"].get("p99")})
        if good and added <= 5:
            best5 = rate
        if good and added <= 50:
            best50 = rate
            misses = 0
        else:
            misses += 1
            if misses == 2:
                break
    return {"rps_at_added_p99_5ms": best5, "rps_at_added_p99_50ms": best50, "steps": steps}


WRK_LUA = """
counter = 0
request = function()
  counter = counter + 1
  local body = '%s' .. counter .. '%s'
  return wrk.format("POST", "%s", {%s}, body)
end
"""
# The body of a wrk request in each wire format, around its counter (loadgen.Target.api).
WRK_BODIES = {
    "chat": ('{"model":"%s","messages":[{"role":"user","content":"Say hello. bench-nonce-', '"}],"max_tokens":256}'),
    "responses": ('{"model":"%s","input":"Say hello. bench-nonce-', '","max_output_tokens":256}'),
    "responses-stateless": ('{"model":"%s","input":"Say hello. bench-nonce-',
                            '","max_output_tokens":256,"store":false}'),
}


def _lua_string(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def wrk_max(sut: Running, seconds: int, connections: int = 64) -> dict[str, Any]:
    """Maximum throughput with wrk (no correctness checks beyond its non-2xx count), pinned to the rig core."""
    if shutil.which("wrk") is None:
        return {"skipped": "wrk not installed (apt-get install wrk)"}
    t = _t(sut, "instant")
    # Every header the target's requests carry (a key, Portkey's routing headers).
    headers = ", ".join(f"[{_lua_string(k)}]={_lua_string(v)}" for k, v in
                        (("Content-Type", "application/json"), *t.headers))
    head, tail = WRK_BODIES[t.api]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(WRK_LUA % (head % t.model, tail, t.path, headers))
    cmd = ["taskset", "-c", str(measure.RIG_CORE), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s",
           fh.name, f"http://{t.host}:{t.port}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    failed = int(non2xx.group(1)) if non2xx else 0
    # Refusals are answered fast: a run with any is no throughput figure.
    return {"connections": connections, "rps": float(rps.group(1)) if rps and not failed else None,
            "non_2xx": failed, "socket_errors": errors.group(0) if errors else None, "raw": out[-1500:]}


async def soak(sut: Running, rate: float, plan: Plan) -> dict[str, Any]:
    """Figure 5: RSS sampled through a steady run; growth per minute is the leak check."""
    assert sut.proc is not None
    pid = sut.proc.pid
    samples = [(0.0, measure.rss_bytes(pid) / 2**20)]
    t0 = time.perf_counter()
    chunk = min(10.0, plan.soak_s)
    results = []
    while time.perf_counter() - t0 < plan.soak_s:
        results.append(await loadgen.open_loop(_t(sut, "instant"), PLAIN, rate, chunk))
        samples.append((time.perf_counter() - t0, measure.rss_bytes(pid) / 2**20))
    # Growth from the first sample after load (warm caches) to the last, per minute.
    first = samples[1] if len(samples) > 2 else samples[0]
    last = samples[-1]
    minutes = max(1e-9, (last[0] - first[0]) / 60)
    errors = sum(r["requests"] - r["ok"] for r in results)
    return {"rate": rate, "seconds": plan.soak_s, "samples_mb": samples, "growth_mb_per_min": (last[1] - first[1])
            / minutes, "errors": errors, "requests": sum(r["requests"] for r in results)}


async def faults(sut: Running, ups_stats: Any, plan: Plan) -> dict[str, Any]:
    """Figure 8's gates through the gateway: error mapping, cut streams, refused connections, fallback."""
    out: dict[str, Any] = {}

    async def one(kind: str, shape: loadgen.Shape) -> loadgen.Outcome:
        pool = loadgen.Pool(_t(sut, kind), 1)
        try:
            return await loadgen.one(pool, shape)
        finally:
            pool.close()

    # First, while the failing primary's breaker is still closed (the 500 probe below counts
    # towards opening it). Each fallback request is checked against the primary's counter, so the
    # hop (primary tried, then fallback) is timed apart from requests a cooled-down primary skips.
    hops, direct_to_fallback, oks = [], [], []
    for _ in range(plan.fault_repeats):
        before = (await ups_stats("f500")).get("requests", 0)
        o = await one("fallback", PLAIN)
        hit = (await ups_stats("f500")).get("requests", 0) - before
        oks.append(o.ok)
        (hops if hit else direct_to_fallback).append(o.latency)
    ok = all(oks)
    out["fallback"] = {
        "ok": ok, "primary_hits": len(hops), "requests": len(oks),
        # Taken = every request answered, and the failing primary was really tried at least once.
        "pass": ok and len(hops) >= 1,
        "latency_p50_ms": loadgen.pct(sorted(hops), 50) * 1e3 if hops else None,
        "after_cooldown_p50_ms": loadgen.pct(sorted(direct_to_fallback), 50) * 1e3 if direct_to_fallback else None,
    }
    o = await one("f429", PLAIN)
    out["429"] = {"status": o.status, "error": o.error, "pass": o.status == 429}
    o = await one("f500", PLAIN)
    # Any 5xx maps an upstream failure honestly (502/503 is the better form; the status is recorded).
    out["500"] = {"status": o.status, "error": o.error, "pass": 500 <= o.status < 600}
    o = await one("refused", PLAIN)
    out["refused"] = {"status": o.status, "error": o.error, "pass": 500 <= o.status < 600}
    cut = loadgen.Shape(stream=True)
    o = await one("cut", cut)
    # Silent truncation = a clean end of stream ([DONE]) with fewer chunks than upstream promised.
    silent = o.error is not None and o.error.startswith("chunk-count")
    out["cut_stream"] = {"status": o.status, "error": o.error, "chunks": o.chunks,
                         "pass": not o.ok and not silent}
    out["pass"] = all(v["pass"] for v in out.values() if isinstance(v, dict))
    return out


def plan_dict(plan: Plan) -> dict[str, Any]:
    return asdict(plan)

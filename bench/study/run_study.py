"""Server x client x JSON study for the gateway core: runs every study proxy through the same rig.

    python bench/study/run_study.py [--quick] [--only NAME,...]

Each proxy runs alone on core 1; the stand-in and this load generator share core 0. Figures per proxy:
start-up, CPU ms per request at a fixed sub-saturation rate, added latency at concurrency 1 (paired
with the direct path and the cross-core floor in the same interleaved run), throughput at
concurrency 8, CPU per 64-chunk stream, RSS. Writes bench/results/study-<time>.json and
bench/study/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
sys.path.insert(0, str(BENCH))

import loadgen  # noqa: E402
import measure  # noqa: E402

PY = sys.executable
UVICORN = [PY, "-m", "uvicorn", "--host", "127.0.0.1", "--loop", "uvloop", "--http", "httptools",
           "--no-access-log", "--log-level", "warning", "--lifespan", "on"]
GRANIAN = [PY, "-m", "granian", "--host", "127.0.0.1", "--workers", "1", "--runtime-threads", "1",
           "--loop", "uvloop", "--no-ws", "--no-access-log", "--log-level", "warning"]


@dataclass(frozen=True)
class Variant:
    name: str
    server: str
    client: str
    what: str
    cmd: tuple[str, ...]  # "{port}" is substituted
    env: tuple[tuple[str, str], ...] = ()


VARIANTS = [
    Variant("a-uvicorn-asgi-aiohttp", "uvicorn+httptools+uvloop", "aiohttp", "raw ASGI pass-through",
            (*UVICORN, "--port", "{port}", "asgi_aiohttp:app")),
    Variant("b-granian-asgi-aiohttp", "granian (ASGI)", "aiohttp", "raw ASGI pass-through",
            (*GRANIAN, "--interface", "asgi", "--port", "{port}", "asgi_aiohttp:app")),
    Variant("c-aiohttp-web", "aiohttp.web+uvloop", "aiohttp", "pass-through",
            (PY, "aiohttp_server.py", "{port}")),
    Variant("d-uvicorn-asgi-httpx2", "uvicorn+httptools+uvloop", "httpx2", "raw ASGI pass-through",
            (*UVICORN, "--port", "{port}", "asgi_httpx:app")),
    Variant("a2-uvicorn-asgi-aiohttp-translate", "uvicorn+httptools+uvloop", "aiohttp",
            "raw ASGI, parse + rebuild + re-serialize (orjson) request, response and each SSE event",
            (*UVICORN, "--port", "{port}", "asgi_aiohttp:app"), (("STUDY_TRANSLATE", "1"),)),
    Variant("c2-aiohttp-web-translate", "aiohttp.web+uvloop", "aiohttp",
            "parse + rebuild + re-serialize (orjson) request and response",
            (PY, "aiohttp_server.py", "{port}"), (("STUDY_TRANSLATE", "1"),)),
    Variant("e-uvicorn-starlette-aiohttp", "uvicorn+httptools+uvloop", "aiohttp",
            "Starlette routing/Request/Response, StreamingResponse",
            (*UVICORN, "--port", "{port}", "starlette_app:app")),
    Variant("f-granian-rsgi-aiohttp", "granian (RSGI)", "aiohttp", "granian's native interface",
            (*GRANIAN, "--interface", "rsgi", "--port", "{port}", "rsgi_aiohttp:app")),
]


@dataclass(frozen=True)
class Plan:
    pairs: int
    cpu_rate: float
    cpu_s: float
    tput_s: float
    stream_rate: float
    stream_s: float


FULL = Plan(pairs=1500, cpu_rate=300, cpu_s=8, tput_s=5, stream_rate=20, stream_s=6)
QUICK = Plan(pairs=200, cpu_rate=200, cpu_s=2, tput_s=2, stream_rate=10, stream_s=1)


async def measure_variant(v: Variant, plan: Plan, direct: loadgen.Target, floor: loadgen.Target,
                          upstream: str, log_dir: Path) -> dict[str, Any]:
    port = measure.free_port()
    cmd = [c.replace("{port}", str(port)) for c in v.cmd]
    env = {"STUDY_UPSTREAM": upstream, **dict(v.env)}
    proc = measure.start(v.name, cmd, core=measure.SUT_CORE, log_dir=log_dir, env=env, cwd=HERE)
    res: dict[str, Any] = {"name": v.name, "server": v.server, "client": v.client, "what": v.what,
                           "command": " ".join(cmd), "env": env}
    try:
        res["startup_s"] = await measure.wait_ready(proc, port)
        await asyncio.sleep(1.0)
        res["rss_idle_mb"] = measure.rss_bytes(proc.pid) / 2**20
        target = loadgen.Target("127.0.0.1", port)
        res.update(await measure_target(target, proc.pid, plan, direct, floor))
        res["rss_after_mb"] = measure.rss_bytes(proc.pid) / 2**20
        res["alive"] = proc.alive()
    except (RuntimeError, TimeoutError, OSError) as e:
        res["failed"] = f"{type(e).__name__}: {e}"
    finally:
        measure.stop(proc)
    return res


async def measure_target(target: loadgen.Target, pid: int, plan: Plan, direct: loadgen.Target,
                         floor: loadgen.Target) -> dict[str, Any]:
    plain, stream = loadgen.Shape(), loadgen.Shape(stream=True)
    await loadgen.closed_loop(target, plain, 4, count=500)  # warm-up: pools, code paths
    out: dict[str, Any] = {}
    out["paired"] = await loadgen.paired([direct, floor, target], plain, plan.pairs)
    with measure.CpuMeter(pid) as cpu:
        out["cpu_run"] = await loadgen.open_loop(target, plain, plan.cpu_rate, plan.cpu_s)
    out["cpu_ms_per_req"] = cpu.seconds / max(1, out["cpu_run"]["ok"]) * 1e3
    out["tput_c8"] = await loadgen.closed_loop(target, plain, 8, duration=plan.tput_s)
    with measure.CpuMeter(pid) as cpu:
        out["stream_run"] = await loadgen.open_loop(target, stream, plan.stream_rate, plan.stream_s)
    out["cpu_ms_per_stream"] = cpu.seconds / max(1, out["stream_run"]["ok"]) * 1e3
    return out


def void_reasons(r: dict[str, Any]) -> list[str]:
    """Correctness gates: any error voids the variant's figures."""
    if "failed" in r:
        return [r["failed"]]
    reasons = []
    for key in ("cpu_run", "tput_c8", "stream_run"):
        if r[key]["errors"]:
            reasons.append(f"{key}: {r[key]['errors']}")
    for t in r["paired"]["targets"]:
        if t["errors"]:
            reasons.append(f"paired: {t['errors']}")
    return reasons


def fmt(x: float | None, nd: int = 2) -> str:
    return "—" if x is None or x != x else f"{x:.{nd}f}"


def flat(r: dict[str, Any]) -> dict[str, float]:
    """The table's figures from one measurement of one variant."""
    p = r["paired"]["targets"]
    me = p[-1]
    return {
        "cpu_ms_per_req": r["cpu_ms_per_req"], "cpu_ms_per_stream": r["cpu_ms_per_stream"],
        "added_p50": me["added_ms"]["p50"] if "added_ms" in me else 0.0,
        "beyond_floor_p50": (me["added_ms"]["p50"] - p[1]["added_ms"]["p50"]) if "added_ms" in me else 0.0,
        "added_p99": me["added_ms"]["p99"] if "added_ms" in me else 0.0,
        "rps_c8": r["tput_c8"]["achieved_rps"], "p99_at_rate": r["cpu_run"]["latency_ms"]["p99"],
        "ttft_p50": r["stream_run"].get("ttft_ms", {}).get("p50", float("nan")),
        "gap_p99": r["stream_run"].get("gap_ms", {}).get("p99", float("nan")),
        "startup_s": r.get("startup_s") or float("nan"), "rss_idle": r.get("rss_idle_mb", 0.0),
        "rss_after": r.get("rss_after_mb", 0.0),
    }


def median_row(runs: list[dict[str, Any]]) -> dict[str, float]:
    import statistics

    rows = [flat(r) for r in runs if "failed" not in r]
    return {k: statistics.median(x[k] for x in rows) for k in rows[0]} if rows else {}


def spread(runs: list[dict[str, Any]], key: str) -> str:
    vals = [flat(r)[key] for r in runs if "failed" not in r]
    return f"{min(vals):.2f}-{max(vals):.2f}" if len(vals) > 1 else ""


def table(groups: list[tuple[dict[str, Any], list[dict[str, Any]]]], rate: float) -> str:
    """One row per variant: the median over rounds (CPU and c=8 ranges in brackets)."""
    head = (f"| variant | server | client | CPU ms/req @{rate:.0f}/s | CPU ms / 64-chunk stream | added p50 ms (c=1) "
            "| beyond floor p50 | added p99 ms | req/s c=8 | p99 ms @rate | TTFT p50 ms | gap p99 ms "
            "| start-up s | RSS idle→after MB |")
    lines = [head, "|" + "---|" * 14]
    for info, runs in groups:
        bad = [reason for r in runs for reason in void_reasons(r)]
        m = median_row(runs)
        if not m:
            lines.append(f"| {info['name']} | {info['server']} | {info['client']} | VOID: {bad[0][:80]} |" + " |" * 10)
            continue
        mark = " (VOID: gates)" if bad else ""
        cpu_range = spread(runs, "cpu_ms_per_req")
        rps_range = spread(runs, "rps_c8")
        lines.append(
            f"| {info['name']}{mark} | {info['server']} | {info['client']} | {fmt(m['cpu_ms_per_req'])}"
            f"{f' ({cpu_range})' if cpu_range else ''} | {fmt(m['cpu_ms_per_stream'])} | {fmt(m['added_p50'])} "
            f"| {fmt(m['beyond_floor_p50'])} | {fmt(m['added_p99'])} | {m['rps_c8']:.0f}"
            f"{' (' + rps_range.replace('.00', '') + ')' if rps_range else ''} | {fmt(m['p99_at_rate'])} "
            f"| {fmt(m['ttft_p50'], 1)} | {fmt(m['gap_p99'], 1)} | {fmt(m['startup_s'])} "
            f"| {m['rss_idle']:.0f}→{m['rss_after']:.0f} |")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = QUICK if args.quick else FULL
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_dir = BENCH / "results" / "logs" / f"study-{stamp}"
    measure.pin_self(measure.RIG_CORE)
    sp, fp = measure.free_port(), measure.free_port()
    standin = measure.start("standin", [PY, str(BENCH / "standin.py"), "--port", str(sp)],
                            core=measure.RIG_CORE, log_dir=log_dir)
    floor_p = measure.start("floor", [PY, str(BENCH / "standin.py"), "--port", str(fp)],
                            core=measure.SUT_CORE, log_dir=log_dir)
    out: dict[str, Any] = {"plan": plan.__dict__, "started": stamp, "variants": []}
    try:
        await measure.wait_ready(standin, sp)
        await measure.wait_ready(floor_p, fp)
        direct, floor = loadgen.Target("127.0.0.1", sp), loadgen.Target("127.0.0.1", fp)
        await loadgen.closed_loop(direct, loadgen.Shape(), 4, count=500)
        # The rig's own reach: load generator straight at the stand-in, and the floor server's CPU.
        out["direct_tput_c8"] = await loadgen.closed_loop(direct, loadgen.Shape(), 8, duration=plan.tput_s)
        out["floor"] = await measure_target(floor, floor_p.pid, plan, direct, floor)
        chosen = [v for v in VARIANTS if not args.only or v.name.split("-")[0] in args.only.split(",")
                  or v.name in args.only.split(",")]
        out["floor_rounds"] = [out.pop("floor")]
        # Rounds, each in a rotated order, so slow drift on a shared machine hits every variant alike.
        for rnd in range(args.rounds):
            order = chosen[rnd % len(chosen):] + chosen[: rnd % len(chosen)]
            for v in order:
                print(f"... round {rnd + 1}: {v.name}", file=sys.stderr, flush=True)
                r = await measure_variant(v, plan, direct, floor, f"http://127.0.0.1:{sp}", log_dir)
                r["void"] = void_reasons(r)
                r["round"] = rnd
                out["variants"].append(r)
            if rnd:
                out["floor_rounds"].append(await measure_target(floor, floor_p.pid, plan, direct, floor))
    finally:
        measure.stop(standin)
        measure.stop(floor_p)
    return out


async def duel(args: argparse.Namespace) -> dict[str, Any]:
    """CPU only, all proxies up at once, many short alternating runs: a tighter ranking than rounds."""
    import statistics

    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_dir = BENCH / "results" / "logs" / f"duel-{stamp}"
    measure.pin_self(measure.RIG_CORE)
    sp = measure.free_port()
    standin = measure.start("standin", [PY, str(BENCH / "standin.py"), "--port", str(sp)],
                            core=measure.RIG_CORE, log_dir=log_dir)
    chosen = [v for v in VARIANTS if not args.only or v.name.split("-")[0] in args.only.split(",")]
    procs: list[tuple[Variant, measure.Process, loadgen.Target]] = []
    out: dict[str, Any] = {"started": stamp, "rate": 300, "seconds": args.duel_s, "cpu": {}, "stream": {}}
    try:
        await measure.wait_ready(standin, sp)
        for v in chosen:
            port = measure.free_port()
            cmd = [c.replace("{port}", str(port)) for c in v.cmd]
            env = {"STUDY_UPSTREAM": f"http://127.0.0.1:{sp}", **dict(v.env)}
            p = measure.start(v.name, cmd, core=measure.SUT_CORE, log_dir=log_dir, env=env, cwd=HERE)
            await measure.wait_ready(p, port)
            t = loadgen.Target("127.0.0.1", port)
            await loadgen.closed_loop(t, loadgen.Shape(), 4, count=500)
            procs.append((v, p, t))
        for rnd in range(args.rounds):
            for v, p, t in procs[rnd % len(procs):] + procs[: rnd % len(procs)]:
                with measure.CpuMeter(p.pid) as cpu:
                    r = await loadgen.open_loop(t, loadgen.Shape(), 300, args.duel_s)
                assert not r["errors"], r["errors"]
                out["cpu"].setdefault(v.name, []).append(cpu.seconds / r["ok"] * 1e3)
                with measure.CpuMeter(p.pid) as cpu:
                    r = await loadgen.open_loop(t, loadgen.Shape(stream=True), 20, args.duel_s)
                assert not r["errors"], r["errors"]
                out["stream"].setdefault(v.name, []).append(cpu.seconds / r["ok"] * 1e3)
                print(f"... round {rnd + 1}: {v.name} {out['cpu'][v.name][-1]:.3f} ms/req "
                      f"{out['stream'][v.name][-1]:.2f} ms/stream", file=sys.stderr, flush=True)
    finally:
        for _, p, _ in procs:
            measure.stop(p)
        measure.stop(standin)
    lines = ["| variant | CPU ms/req @300/s: median (min-max) | CPU ms / 64-chunk stream: median (min-max) |",
             "|---|---|---|"]
    for v, _, _ in procs:
        c, st = out["cpu"][v.name], out["stream"][v.name]
        lines.append(f"| {v.name} | {statistics.median(c):.3f} ({min(c):.3f}-{max(c):.3f}) "
                     f"| {statistics.median(st):.2f} ({min(st):.2f}-{max(st):.2f}) |")
    out["table"] = "\n".join(lines)
    return out


def json_bench() -> dict[str, Any]:
    import subprocess

    cmd = ["taskset", "-c", str(measure.SUT_CORE), PY, str(HERE / "jsonbench.py")]
    return dict(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))


def json_table(jb: dict[str, Any]) -> str:
    lines = ["| body | bytes | orjson loads+dumps µs | json loads+dumps µs | orjson loads µs | json loads µs |",
             "|---|---|---|---|---|---|"]
    for name, r in jb.items():
        lines.append(f"| {name} | {r['bytes']} | {r['orjson loads+dumps us']:.1f} | {r['json loads+dumps us']:.1f} "
                     f"| {r['orjson loads us']:.1f} | {r['json loads us']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="seconds, not minutes: proves it runs")
    ap.add_argument("--only", default="", help="comma-separated variant names or prefixes (a,b,c2,...)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the table shows medians")
    ap.add_argument("--duel", action="store_true", help="CPU-only ranking: all proxies up, alternating runs")
    ap.add_argument("--duel-s", type=float, default=4.0, help="seconds per duel run")
    ap.add_argument("--from-json", default=None, help="re-render tables from a saved raw study JSON")
    args = ap.parse_args()
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    if args.duel:
        import uvloop

        res = uvloop.run(duel(args))
        (results / f"duel-{res['started']}.json").write_text(json.dumps(res, indent=1))
        print(res["table"])
        return
    if args.from_json:
        out = json.loads(Path(args.from_json).read_text())
        path = Path(args.from_json)
    else:
        import uvloop

        out = uvloop.run(run(args))
        out["json_bench"] = json_bench()
        path = results / f"study-{out['started']}{'-quick' if args.quick else ''}.json"
        path.write_text(json.dumps(out, indent=1))
    floor_info = {"name": "floor (bare stand-in on core 1)", "server": "hand-written asyncio.Protocol",
                  "client": "—"}
    floor_runs = out.get("floor_rounds") or [out["floor"]]
    groups: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [(floor_info, floor_runs)]
    for v in VARIANTS:
        runs = [r for r in out["variants"] if r["name"] == v.name]
        if runs:
            groups.append(({"name": v.name, "server": v.server, "client": v.client}, runs))
    text = table(groups, out["plan"]["cpu_rate"])
    print(text)
    if "json_bench" in out:
        print(json_table(out["json_bench"]))
    print(f"direct c=8: {out['direct_tput_c8']['achieved_rps']:.0f} req/s; raw: {path}")


if __name__ == "__main__":
    main()

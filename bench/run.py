"""Run the benchmark protocol (/work/shared/BENCHMARKS.md) for each system, side by side, in one run.

    python bench/run.py                      # every system (DEFAULT_SYSTEMS), about 10 minutes
    python bench/run.py --smoke              # under a minute: proves every figure is produced (CI)
    python bench/run.py --systems direct,floor,modelgate,litellm

Writes the raw figures to bench/results/run-<time>.json (and bench/results/latest.json) and the
tables to docs/benchmarks.md. Timings are reported, never asserted; a system that breaks a
correctness gate is marked VOID with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import charts
import figures
import measure
import report
import systems

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
DOCS = BENCH.parent / "docs" / "benchmarks.md"
CHARTS = DOCS.parent / "benchmarks"  # the PNGs docs/benchmarks.md embeds
# Peers that are not installed (bench/setup.sh) are skipped with the command that installs them.
DEFAULT_SYSTEMS = ("direct", "floor", "modelgate", "modelgate-full", "modelgate-responses",
                   "modelgate-responses-stateless", "modelgate-1p", "modelgate-2p", "litellm", "tensorzero", "portkey")
SMOKE_SYSTEMS = ("direct", "floor", "modelgate", "modelgate-full", "modelgate-responses", "modelgate-2p")


async def run_one(name: str, ups: systems.Upstreams, direct: systems.Running, floor: systems.Running,
                  plan: figures.Plan, log_dir: Path, smoke: bool) -> dict[str, Any]:
    r: dict[str, Any] = {"name": name}
    started: systems.Running | None = None
    try:
        if name == "direct":
            sut = direct
        elif name == "floor":
            sut = floor
            r["startup_s"] = floor.startup_s
        else:
            spec = systems.SYSTEMS[name]
            r["version"] = spec.version()
            if spec.import_check:
                r["import_s"] = measure.import_time_s(*spec.import_check, runs=1 if smoke else 3)
            # In the run's own folder: whatever the system writes next to its config (a usage database,
            # a journal) starts empty in every run instead of growing across runs.
            config = log_dir / f"{name}.yaml"
            sut = started = await systems.start_system(spec, ups, log_dir, config)
            r["startup_s"] = sut.startup_s
            r["command"] = " ".join(spec.command(sut.port, config))
        r["figures"] = sut.figures
        if sut.proc is not None:
            await asyncio.sleep(0.2 if smoke else 2.0)
            r["rss_idle_mb"] = measure.rss_bytes(sut.proc.pid) / 2**20
        r["gates"] = await figures.gates(sut)
        if r["gates"].get("plain") != "ok":
            r["void"] = [f"plain request fails: {r['gates'].get('plain')}"]
            return r
        every = sut.figures == "all"
        if sut.figures != "scale":
            r["added_latency"] = await figures.added_latency(sut, direct, floor, plan)
        r["throughput"] = await figures.throughput(sut, plan)
        guide = r["throughput"]["c8"]["achieved_rps"]
        rate = min(plan.cpu_rate_max, 0.5 * guide)
        r["cpu"] = await figures.cpu_per_request(sut, rate, plan)
        if sut.figures != "scale":
            r["streaming"] = await figures.streaming(sut, direct, plan)
        if every and "big" in sut.kinds:
            r["big"] = await figures.big(sut, direct, min(plan.cpu_rate_max, 0.3 * guide), plan)
        if sut is not direct:
            r["wrk"] = figures.wrk_max(sut, plan.wrk_s)
            if sut.figures != "cost" and sut is not floor:
                r["frontier"] = await figures.frontier(sut, direct, plan, guide)
        if every and sut.proc is not None and sut.name not in ("floor",):
            r["slow"] = await figures.slow_upstreams(sut, plan, min(500, 0.5 * guide), min(200, 0.5 * guide))
            r["faults"] = await figures.faults(sut, ups.stats, plan)
            r["soak"] = await figures.soak(sut, min(200, 0.3 * guide), plan)
        if sut.proc is not None:
            r["rss_after_mb"] = measure.rss_bytes(sut.proc.pid) / 2**20
            r["alive"] = sut.proc.alive()
        r["void"] = report.void_reasons(r)
    except (RuntimeError, TimeoutError, OSError) as e:
        r["failed"] = f"{type(e).__name__}: {e}"[:2000]
        r["void"] = [r["failed"].splitlines()[0]]
    finally:
        if started is not None and started.proc is not None:
            measure.stop(started.proc)
    return r


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    plan = figures.SMOKE if args.smoke else figures.FULL
    if args.soak_s is not None:
        plan = dataclasses.replace(plan, soak_s=args.soak_s)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_dir = RESULTS / "logs" / f"run-{stamp}"
    measure.pin_self(measure.RIG_CORE)
    measure.compile_bytecode()
    ups = systems.Upstreams()
    out: dict[str, Any] = {"started": stamp, "smoke": args.smoke, "plan": figures.plan_dict(plan),
                           "machine": {"cpus": measure.os.cpu_count(), "cpu": _cpu_model(),
                                       "memory_gb": round(measure.os.sysconf("SC_PAGE_SIZE")
                                                          * measure.os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                                       "python": platform.python_version(),
                                       "platform": platform.platform()},
                           "systems": []}
    floor = None
    try:
        await ups.start(log_dir)
        floor = await systems.start_floor(log_dir)
        direct = systems.direct(ups)
        for name in args.systems.split(","):
            name = name.strip()
            if name not in ("direct", "floor") and name not in systems.SYSTEMS:
                raise SystemExit(f"unknown system {name!r}; known: direct, floor, {', '.join(systems.SYSTEMS)}")
            if name in systems.SYSTEMS and (why := systems.SYSTEMS[name].available()) is not None:
                print(f"--- {name}: skipped ({why})", file=sys.stderr, flush=True)
                out["systems"].append({"name": name, "skipped": why})
                continue
            print(f"--- {name}", file=sys.stderr, flush=True)
            t = time.perf_counter()
            res = await run_one(name, ups, direct, floor, plan, log_dir, args.smoke)
            res["wall_s"] = time.perf_counter() - t
            out["systems"].append(res)
            print(f"    {name}: {res['wall_s']:.1f}s, void={res.get('void')}", file=sys.stderr, flush=True)
    finally:
        if floor is not None and floor.proc is not None:
            measure.stop(floor.proc)
        ups.stop()
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def draw_charts(summary: dict[str, Any], to_docs: bool) -> tuple[Path, list[tuple[str, str]]]:
    """The run's charts: next to docs/benchmarks.md when it is rewritten, else in the run's log folder."""
    folder = CHARTS if to_docs else RESULTS / "logs" / f"run-{summary['started']}" / "charts"
    return folder, charts.write_charts(summary, folder, relative_to=DOCS.parent)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--smoke", action="store_true", help="tiny runs (< 1 minute): every figure, no precision")
    ap.add_argument("--systems", default=None,
                    help="comma-separated, from: direct, floor and bench/systems.py SYSTEMS")
    ap.add_argument("--soak-s", type=float, default=None,
                    help="soak length (default 20 s; the aim's 10 minutes: --systems modelgate --soak-s 600)")
    ap.add_argument("--from-json", default=None, help="re-render docs/benchmarks.md from a raw run JSON")
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    ap.add_argument("--charts-from-summary", default=None, metavar="JSON",
                    help="only redraw the charts of a summary (bench/results/latest.json) and the Charts section "
                         "of docs/benchmarks.md, when that is the same run's")
    args = ap.parse_args()
    charts.require()  # before measuring anything
    if args.charts_from_summary:
        summary = json.loads(Path(args.charts_from_summary).read_text())
        to_docs = not args.no_docs and not summary["smoke"]
        if to_docs and f"Run {summary['started']} " not in DOCS.read_text():
            raise SystemExit(f"{DOCS} is not of run {summary['started']}; use --no-docs or --from-json")
        folder, made = draw_charts(summary, to_docs)
        if to_docs:
            DOCS.write_text(report.with_charts(DOCS.read_text(), made))
        print("\n".join(report.charts_section(made)))
        if lacking := charts.missing(folder):
            raise SystemExit(f"charts not produced in {folder}: {', '.join(lacking)}")
        return
    if args.systems is None:
        args.systems = ",".join(SMOKE_SYSTEMS if args.smoke else DEFAULT_SYSTEMS)
    RESULTS.mkdir(exist_ok=True)
    if args.from_json:
        raw = Path(args.from_json)
        out = json.loads(raw.read_text())
        args.smoke = out["smoke"]
    else:
        import uvloop

        out = uvloop.run(main_async(args))
        raw = RESULTS / f"run-{out['started']}{'-smoke' if args.smoke else ''}.json"
        raw.write_text(json.dumps(out, indent=1))
    summary = report.summary(out)
    if not args.smoke:
        (RESULTS / "latest.json").write_text(json.dumps(summary, indent=1))
    chart_dir, made = draw_charts(summary, to_docs=not args.no_docs and not args.smoke)
    md = report.markdown(out, summary, made)
    if not args.no_docs and not args.smoke:
        DOCS.parent.mkdir(exist_ok=True)
        DOCS.write_text(report.keep_sections(md, DOCS.read_text()) if DOCS.exists() else md)
    print(md)
    print(f"raw: {raw}", file=sys.stderr)
    missing = report.missing_figures(out, chart_dir)
    if missing:
        print("figures not produced: " + "; ".join(missing), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()

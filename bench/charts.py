"""PNG charts of a run's summary (report.summary) for docs/benchmarks.md.

matplotlib is a benchmark-only dependency (`pip install -e '.[bench]'`); it is imported only when the charts
are drawn, so importing this module costs nothing. Skipped and VOID systems are left out of every chart and
named in its footnote; a figure a system did not produce is drawn as "n/a".
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import report

FIX = "pip install -e '.[bench]'"
# The files write_charts produces, in the order docs/benchmarks.md shows them.
FILES = ("cpu.png", "latency.png", "throughput.png", "footprint.png")

WIDTH_IN, HEIGHT_IN, DPI = 7.0, 3.5, 100
AIM_COLOR = "#c0392b"
COLORS = ("#4c72b0", "#dd8452", "#55a868", "#8172b3", "#937860")


def require() -> None:
    """Fail with the fix when matplotlib is missing, before any measuring starts."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"bench/run.py draws its charts with matplotlib, which is not installed ({e}); "
                         f"install the benchmark extra: {FIX}") from None


@dataclass
class Series:
    label: str
    figure: str | tuple[str, ...]  # summary key, or keys tried in turn (the first present wins)
    color: str


@dataclass
class Panel:
    title: str
    series: list[Series]
    log: bool = False
    aim: tuple[float, str] | None = None  # (x, legend label)
    systems: tuple[str, ...] | None = None  # None: every shown system
    exclude: tuple[str, ...] = ()


def _value(row: dict[str, Any], figure: str | tuple[str, ...]) -> float | None:
    for key in (figure,) if isinstance(figure, str) else figure:
        v = row.get(key)
        if isinstance(v, bool):
            continue
        if isinstance(v, int | float):
            return float(v)
    return None


def _fmt(v: float) -> str:
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if v == 0:
        return "0"
    if abs(v) >= 0.01:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _shown(summ: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The systems a chart can show, and a note on the ones it cannot."""
    shown, left_out = [], []
    for name, row in summ["systems"].items():
        if "skipped" in row:
            left_out.append(f"{name} (skipped)")
        elif row.get("void"):
            left_out.append(f"{name} (VOID)")
        else:
            shown.append(name)
    return shown, left_out


def _draw_panel(ax: Any, panel: Panel, summ: dict[str, Any], shown: list[str]) -> None:
    from matplotlib.ticker import FuncFormatter

    names = [n for n in (panel.systems or shown) if n in shown and n not in panel.exclude]
    table = {n: [_value(summ["systems"][n], s.figure) for s in panel.series] for n in names}
    names = [n for n in names if any(v is not None for v in table[n])]
    ax.set_title(panel.title, fontsize=9)
    ax.tick_params(labelsize=8)
    if not names:
        ax.text(0.5, 0.5, "no data in this run", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    values = [v for row in table.values() for v in row if v is not None]
    positive = [v for v in values if v > 0]
    if panel.aim is not None:
        positive.append(panel.aim[0])
    top = max(positive, default=1.0)
    if panel.log:
        left = min(positive, default=1.0) / 3
        ax.set_xscale("log")
        ax.set_xlim(left, top * 6)  # room for the value labels
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
    else:
        left = 0.0
        ax.set_xlim(0, top * 1.3)
    k = len(panel.series)
    height = 0.8 / k
    for j, s in enumerate(panel.series):
        ys = [i - 0.4 + height * (j + 0.5) for i in range(len(names))]
        vals = [table[n][j] for n in names]
        drawn = [(y, v) for y, v in zip(ys, vals, strict=True) if v is not None and v > left]
        ax.barh([y for y, _ in drawn], [v - left for _, v in drawn], left=left, height=height, color=s.color,
                label=s.label)  # from the axis start (a log axis has no 0) to the value
        for y, v in zip(ys, vals, strict=True):
            if v is None:
                text, x = "n/a", left
            else:
                text, x = _fmt(v), max(v, left)
            ax.text(x * 1.1 if panel.log else x + top * 0.01, y, " " + text, va="center", fontsize=7)
    if panel.aim is not None:
        ax.axvline(panel.aim[0], color=AIM_COLOR, linestyle="--", linewidth=1.2, label=panel.aim[1])
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_ylim(len(names) - 0.5, -0.5)  # first system on top
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(labels),
              frameon=False, handlelength=1.5, columnspacing=1.0)


def _aim(key: str, shift: float = 0.0, what: str = "") -> tuple[float, str]:
    op, x = report.AIMS[key]
    return x + shift, f"aim {op} {x:,g}{what}"


def _charts(summ: dict[str, Any]) -> list[tuple[str, str, list[Panel], str]]:
    """(file, title, panels, footnote) of every chart."""
    mg = summ["systems"].get("modelgate") or {}
    fl = summ["systems"].get("floor") or {}
    # The p50 aim is on the time beyond the rig's cross-core floor; drawn on the added-p50 axis it sits at
    # the floor's own added p50 (as measured in modelgate's rounds, else floor's) plus the aim.
    floor_p50 = _value(mg, "floor_added_p50_ms")
    if floor_p50 is None:
        floor_p50 = _value(fl, "added_p50_ms")
    p50_aim = _aim("beyond_floor_p50_ms", floor_p50 or 0.0, " beyond floor" if floor_p50 is None else " + floor")
    direct = ("direct",)  # no added latency or frontier of its own
    return [
        ("cpu.png", "CPU per request (log scale; lower is better)", [
            Panel("CPU ms per non-streaming request", [Series("CPU ms/req", "cpu_ms_per_req", COLORS[0])],
                  log=True, aim=_aim("cpu_ms_per_req")),
            Panel("CPU ms per 64-chunk stream",
                  [Series("CPU ms/stream", ("cpu_ms_per_stream", "standin_cpu_ms_per_stream"), COLORS[1])],
                  log=True, aim=_aim("cpu_ms_per_stream")),
        ], "direct: the stand-in's own cost (core 0); floor: a bare server on core 1."),
        ("latency.png", "Added latency at concurrency 1 vs the direct path (log scale; lower is better)", [
            Panel("added p50 ms", [Series("added p50", "added_p50_ms", COLORS[0])], log=True, aim=p50_aim,
                  exclude=direct),
            Panel("added p99 ms", [Series("added p99", "added_p99_ms", COLORS[1])], log=True,
                  aim=_aim("added_p99_ms"), exclude=direct),
        ], "Interleaved request by request with the direct path; floor = the cross-core hop alone."),
        ("throughput.png", "Throughput, one process on one core (log scale; higher is better)", [
            Panel("closed loop: req/s at concurrency", [Series("c=1", "rps_c1", COLORS[0]),
                                                        Series("c=8", "rps_c8", COLORS[1]),
                                                        Series("c=16", "rps_c16", COLORS[2])], log=True),
            Panel("open loop: req/s with added p99 within",
                  [Series("≤ 5 ms", "frontier_5ms_rps", COLORS[3]), Series("≤ 50 ms", "frontier_50ms_rps", COLORS[4])],
                  log=True, aim=_aim("frontier_5ms_rps", what=" (≤ 5 ms)"), exclude=direct),
        ], "direct: the load generator straight at the stand-in (the rig's ceiling). A rate of 0 is drawn at the "
           "axis start."),
        ("footprint.png", "Start-up and memory (lower is better)", [
            Panel("start-up to first 200, s", [Series("start-up s", "startup_s", COLORS[0])],
                  aim=_aim("startup_s")),
            Panel("RSS MB", [Series("idle", "rss_idle_mb", COLORS[1]),
                             Series("after soak", "rss_after_mb", COLORS[2])],
                  aim=_aim("rss_idle_mb", what=" (idle)")),
        ], "Growth per minute over the soak is in the tables."),
    ]


def write_charts(summ: dict[str, Any], out_dir: Path, relative_to: Path | None = None) -> list[tuple[str, str]]:
    """Draw the charts of one run's summary into out_dir; return (title, path relative to relative_to)
    for each, relative_to defaulting to out_dir's parent (the folder of the Markdown that embeds them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in FILES:  # a chart that fails to draw must not leave an older run's file behind
        (out_dir / name).unlink(missing_ok=True)
    base = relative_to if relative_to is not None else out_dir.parent
    shown, left_out = _shown(summ)
    run = f"run {summ.get('started', '?')}" + (" (smoke: figures not meaningful)" if summ.get("smoke") else "")
    made = []
    for file, title, panels, note in _charts(summ):
        rows = max(len(shown), 1)
        fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH_IN, max(HEIGHT_IN, 1.6 + 0.45 * rows)), dpi=DPI)
        axes_list: Sequence[Any] = axes if len(panels) > 1 else [axes]
        for ax, panel in zip(axes_list, panels, strict=True):
            _draw_panel(ax, panel, summ, shown)
        fig.suptitle(f"{title}\n{run}", fontsize=9.5)
        foot = note + (f" Not shown: {', '.join(left_out)}." if left_out else "")
        fig.text(0.01, 0.01, foot, fontsize=6.5, color="#555555", wrap=True)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        path = out_dir / file
        fig.savefig(path, dpi=DPI, metadata={"Software": None})
        plt.close(fig)
        made.append((title, Path(os.path.relpath(path, base)).as_posix()))
    return made


def missing(out_dir: Path) -> list[str]:
    """The chart files write_charts should have left in out_dir but did not."""
    return [name for name in FILES if not (out_dir / name).is_file() or (out_dir / name).stat().st_size == 0]

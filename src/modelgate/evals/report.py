"""A run's report as Markdown, HTML (its charts inside, as SVG) or JSON (``modelgate eval report``).

Per deployment: the mean score of each scorer with its 95 % interval, the pass rate, latency p50
and p95, time to first token, cost per item and per 1,000 items; the same per tag where the
dataset file is still there, unchanged, to read the tags from; and two charts, quality against
cost and quality against latency, one point per deployment.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import orjson

from modelgate.evals.dataset import DatasetError, Item, load_dataset
from modelgate.evals.stats import Summary, by_tag, summarise
from modelgate.storage.evals import EvalResult, EvalRun


def report_json(run: EvalRun, results: Sequence[EvalResult]) -> dict[str, Any]:
    items = _items(run)
    return {"run": {"id": run.id, "name": run.name, "dataset": run.dataset, "dataset_sha256": run.dataset_sha256,
                    "items": run.items, "deployments": run.deployments, "scorers": run.scorers,
                    "repeats": run.repeats, "project": run.project, "status": run.status,
                    "created_at": run.created_at.isoformat(), "answers": len(results)},
            "deployments": [s.json() for s in summarise(results, run.scorers)],
            "tags": {tag: [s.json() for s in rows] for tag, rows in by_tag(results, items, run.scorers).items()}}


def render(run: EvalRun, results: Sequence[EvalResult], kind: str) -> str:
    if kind == "json":
        return orjson.dumps(report_json(run, results), option=orjson.OPT_INDENT_2).decode() + "\n"
    summaries = summarise(results, run.scorers)
    tags = by_tag(results, _items(run), run.scorers)
    if kind == "html":
        return _html(run, results, summaries, tags)
    return _markdown(run, results, summaries, tags)


def _items(run: EvalRun) -> list[Item]:
    """The dataset's items where its file is there and unchanged (for the tags); else none."""
    try:
        dataset = load_dataset(run.dataset)
    except DatasetError:
        return []
    return dataset.items if dataset.sha256 == run.dataset_sha256 else []


def _names(run: EvalRun) -> list[str]:
    return [spec.partition(":")[0] for spec in run.scorers]


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _rows(run: EvalRun, summaries: Sequence[Summary]) -> tuple[list[str], list[list[str]]]:
    names = _names(run)
    header = ["deployment", "quality", *names, "pass rate", "errors", "p50 ms", "p95 ms", "ttft p50 ms",
              "$/item", "$/1k items"]
    rows = []
    for s in sorted(summaries, key=lambda s: -(s.quality or 0)):
        cells = [s.deployment, _num(s.quality)]
        for name in names:
            m = s.scores.get(name)
            cells.append("-" if m is None or m.mean is None else f"{m.mean:.3f} [{m.low:.3f}, {m.high:.3f}]")
        rate = s.pass_rate
        cells += ["-" if rate.mean is None else f"{rate.mean * 100:.1f}%", str(s.errors), _ms(s.latency_p50),
                  _ms(s.latency_p95), _ms(s.ttft_p50), f"{s.cost_per_item:.6f}", f"{s.cost_per_1k:.4f}"]
        rows.append(cells)
    return header, rows


def _about(run: EvalRun, results: Sequence[EvalResult]) -> str:
    """The line under a report's title: the dataset's, or an online experiment's (server/experiments.py)."""
    if run.dataset.startswith("online:") and run.deployments:
        *controls, treatment = run.deployments
        return (f"Online experiment on deployment `{run.dataset.removeprefix('online:')}`: control "
                f"{', '.join(f'`{c}`' for c in controls)}, treatment `{treatment}`; answers sampled from its "
                f"traffic, scorers {', '.join(run.scorers) or 'none'}; {len(results)} answers. Scores are means "
                "with their 95 % interval; quality is the mean of the scorers' means.")
    return (f"Dataset `{run.dataset}` ({run.items} items, sha256 {run.dataset_sha256[:12]}), "
            f"{run.repeats} repeat(s), scorers {', '.join(run.scorers)}; {len(results)} answers; "
            f"status {run.status}. Scores are means with their 95 % interval; quality is the mean of "
            "the scorers' means.")


def _markdown(run: EvalRun, results: Sequence[EvalResult], summaries: Sequence[Summary],
              tags: dict[str, list[Summary]]) -> str:
    lines = [f"# Evaluation {run.name}", "", _about(run, results), ""]
    lines += _table(*_rows(run, summaries))
    for tag, rows in tags.items():
        lines += ["", f"## Tag `{tag}`", ""]
        lines += _table(*_rows(run, rows))
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows)]


def _html(run: EvalRun, results: Sequence[EvalResult], summaries: Sequence[Summary],
          tags: dict[str, list[Summary]]) -> str:
    def table(header: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    points = [(s.deployment, s.quality, s.cost_per_1k, s.latency_p50) for s in summaries if s.quality is not None]
    charts = (scatter("Quality against cost", "USD per 1,000 items", [(n, c, q) for n, q, c, _ in points])
              + scatter("Quality against latency", "latency p50 (ms)", [(n, lat or 0.0, q) for n, q, _, lat in points]))
    parts = [f"<h1>Evaluation {html.escape(run.name)}</h1>",
             f"<p>Dataset <code>{html.escape(run.dataset)}</code>: {run.items} items, {run.repeats} repeat(s), scorers "
             f"{html.escape(', '.join(run.scorers))}; {len(results)} answers; status {html.escape(run.status)}.</p>",
             table(*_rows(run, summaries)), f"<div class=charts>{charts}</div>"]
    for tag, rows in tags.items():
        parts += [f"<h2>Tag {html.escape(tag)}</h2>", table(*_rows(run, rows))]
    style = ("body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1c1f24}table{border-collapse:collapse}"
             "td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left}.charts{display:flex;gap:24px;"
             "flex-wrap:wrap}svg text{font-size:11px;fill:#444}")
    return (f"<!doctype html><html lang=en><meta charset=utf-8><title>Evaluation {html.escape(run.name)}</title>"
            f"<style>{style}</style><body>{''.join(parts)}</body></html>\n")


def scatter(title: str, x_label: str, points: Sequence[tuple[str, float, float]]) -> str:
    """An SVG scatter plot: one labelled point per (name, x, quality 0..1)."""
    width, height, left, bottom = 420, 300, 48, 40
    top, right = 28, 16
    xs = [x for _, x, _ in points] or [1.0]
    x_max = max(xs) * 1.1 or 1.0
    plot_w, plot_h = width - left - right, height - top - bottom

    def at(x: float, y: float) -> tuple[float, float]:
        return left + plot_w * (x / x_max), top + plot_h * (1 - y)

    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="{html.escape(title)}"><text x="{left}" y="16" font-weight="bold">{html.escape(title)}</text>',
           f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#999"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#999"/>']
    for tick in (0.0, 0.5, 1.0):
        _, y = at(0, tick)
        svg.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:.1f}</text>')
    svg.append(f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle">{html.escape(x_label)}</text>')
    svg.append(f'<text x="{left + plot_w}" y="{top + plot_h + 14}" text-anchor="end">{x_max:.3g}</text>')
    for name, x, y in points:
        px, py = at(x, y)
        svg.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="5" fill="#3b5bdb"/>'
                   f'<text x="{px + 7:.1f}" y="{py - 6:.1f}">{html.escape(name)}</text>')
    svg.append("</svg>")
    return "".join(svg)

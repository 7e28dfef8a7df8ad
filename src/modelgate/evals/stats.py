"""What a run's results say: per deployment (and per tag) the mean score of each scorer with a 95 %
confidence interval, the pass rate, latency percentiles, and cost per item and per 1,000 items;
and between two runs, which items changed.

The interval of a mean is the normal approximation, mean ± 1.96 · s / √n (n the answers scored);
with one answer it is the score itself, and None where nothing was scored. A repeat is an answer
like any other: repeats narrow the interval of the mean of a deployment's answers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelgate.evals.dataset import Item
from modelgate.storage.evals import EvalResult

Z95 = 1.96


@dataclass(slots=True, kw_only=True)
class Mean:
    mean: float | None
    low: float | None
    high: float | None
    n: int

    def json(self) -> dict[str, Any]:
        return {"mean": _round(self.mean), "low": _round(self.low), "high": _round(self.high), "n": self.n}


def mean_interval(values: Sequence[float]) -> Mean:
    n = len(values)
    if n == 0:
        return Mean(mean=None, low=None, high=None, n=0)
    mean = sum(values) / n
    if n == 1:
        return Mean(mean=mean, low=mean, high=mean, n=1)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    margin = Z95 * spread / math.sqrt(n)
    return Mean(mean=mean, low=max(0.0, mean - margin), high=min(1.0, mean + margin), n=n)


def quantile(values: Sequence[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass(slots=True, kw_only=True)
class Summary:
    deployment: str
    answers: int = 0
    errors: int = 0
    scores: dict[str, Mean] = field(default_factory=dict)
    pass_rate: Mean = field(default_factory=lambda: Mean(mean=None, low=None, high=None, n=0))
    latency_p50: float | None = None
    latency_p95: float | None = None
    ttft_p50: float | None = None
    cost_per_item: float = 0.0  # what the run's project was charged per answer (the judge's calls included)
    cost_per_1k: float = 0.0

    @property
    def quality(self) -> float | None:
        """The mean over the scorers' means: one number to rank by."""
        means = [m.mean for m in self.scores.values() if m.mean is not None]
        return sum(means) / len(means) if means else None

    def json(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "answers": self.answers, "errors": self.errors,
                "quality": _round(self.quality), "scores": {k: v.json() for k, v in self.scores.items()},
                "pass_rate": self.pass_rate.json(), "latency_ms": {"p50": _round(self.latency_p50),
                                                                  "p95": _round(self.latency_p95)},
                "ttft_ms_p50": _round(self.ttft_p50), "cost_per_item": _round(self.cost_per_item, 8),
                "cost_per_1k_items": _round(self.cost_per_1k, 6)}


def summarise(results: Iterable[EvalResult], scorers: Sequence[str]) -> list[Summary]:
    """One summary per deployment, in the order the results name them."""
    by_deployment: dict[str, list[EvalResult]] = defaultdict(list)
    for result in results:
        by_deployment[result.deployment].append(result)
    return [_summary(name, rows, scorers) for name, rows in by_deployment.items()]


def _summary(deployment: str, rows: list[EvalResult], scorers: Sequence[str]) -> Summary:
    summary = Summary(deployment=deployment, answers=len(rows), errors=sum(r.error is not None for r in rows))
    names = [spec.partition(":")[0] for spec in scorers]
    for name in names:
        # An answer that failed (no answer at all) scores 0: a deployment is not excused by failing.
        values = [0.0 if r.error is not None else r.scores.get(name, {}).get("score") for r in rows]
        summary.scores[name] = mean_interval([v for v in values if v is not None])
    passes = [_passed(r, names) for r in rows]
    summary.pass_rate = mean_interval([p for p in passes if p is not None])
    answered = [r for r in rows if r.error is None]
    summary.latency_p50 = quantile([r.latency_ms for r in answered], 0.5)
    summary.latency_p95 = quantile([r.latency_ms for r in answered], 0.95)
    summary.ttft_p50 = quantile([r.ttft_ms for r in answered if r.ttft_ms is not None], 0.5)
    spent = sum(r.price + r.scoring_price for r in rows)
    summary.cost_per_item = spent / len(rows) if rows else 0.0
    summary.cost_per_1k = summary.cost_per_item * 1000
    return summary


def _passed(result: EvalResult, names: Sequence[str]) -> float | None:
    """1 where every scorer that scored the answer passed it, 0 where one failed it (or the call
    failed), None where none scored it."""
    if result.error is not None:
        return 0.0
    verdicts = [result.scores.get(name, {}).get("passed") for name in names]
    verdicts = [v for v in verdicts if v is not None]
    if not verdicts:
        return None
    return 1.0 if all(verdicts) else 0.0


def by_tag(results: Sequence[EvalResult], items: Sequence[Item], scorers: Sequence[str]) -> dict[str, list[Summary]]:
    """``summarise`` of each tag's items."""
    tags_of = {item.index: item.tags for item in items}
    grouped: dict[str, list[EvalResult]] = defaultdict(list)
    for result in results:
        for tag in tags_of.get(result.item, []):
            grouped[tag].append(result)
    return {tag: summarise(rows, scorers) for tag, rows in sorted(grouped.items())}


@dataclass(slots=True, kw_only=True)
class Change:
    item: int
    deployment: str
    before: float | None
    after: float | None
    output_before: str
    output_after: str


def compare(first: Sequence[EvalResult], second: Sequence[EvalResult], scorers: Sequence[str]) -> list[Change]:
    """The (item, deployment) pairs whose mean score differs between two runs (repeats averaged);
    those answered in one run only are not pairs."""
    names = [spec.partition(":")[0] for spec in scorers]

    def scored(rows: Sequence[EvalResult]) -> dict[tuple[int, str], tuple[float | None, str]]:
        grouped: dict[tuple[int, str], list[EvalResult]] = defaultdict(list)
        for r in rows:
            grouped[(r.item, r.deployment)].append(r)
        out = {}
        for key, group in grouped.items():
            values = [v for r in group for v in ([0.0] if r.error else
                      [r.scores.get(n, {}).get("score") for n in names]) if v is not None]
            out[key] = (sum(values) / len(values) if values else None, group[0].output)
        return out

    a, b = scored(first), scored(second)
    changes = []
    for key in sorted(set(a) & set(b)):
        (before, out_a), (after, out_b) = a[key], b[key]
        if before != after:
            changes.append(Change(item=key[0], deployment=key[1], before=before, after=after,
                                  output_before=out_a, output_after=out_b))
    return changes


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)

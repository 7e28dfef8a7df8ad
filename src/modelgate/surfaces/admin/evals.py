"""Evaluation runs as the admin API shows them: the runs with how far each has got, one run's
report (modelgate.evals.stats, as ``modelgate eval report --format json`` computes it), its
results a page at a time, and per dataset a leaderboard of the deployments its finished runs scored.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import PurePath
from typing import Any

from modelgate.evals.report import report_json
from modelgate.evals.stats import Summary, summarise
from modelgate.schema.errors import InvalidRequest, NotFound
from modelgate.storage.bounds import text_length, text_problem
from modelgate.storage.evals import EvalRepository, EvalResult, EvalRun
from modelgate.storage.tables import eval_runs

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_OFFSET = 10**9
RUN_LENGTH = text_length(eval_runs, "name")  # an id is shorter than a name
SHA256 = re.compile(r"[0-9a-fA-F]{64}")
RESULT_FIELDS = ("item", "repeat", "deployment", "output", "tool_calls", "scores", "latency_ms", "ttft_ms",
                 "input_tokens", "output_tokens", "cost", "price", "scoring_price", "error", "request_id")


def _time(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def run_param(value: str) -> str:
    """A run's name or id from the path: a 400 where no run could have it."""
    problem = text_problem(value, RUN_LENGTH)
    if problem is not None:
        raise InvalidRequest(f"'run' {problem}", param="run")
    return value


def sha256_param(value: str, name: str) -> str:
    if SHA256.fullmatch(value) is None:
        raise InvalidRequest(f"'{name}' must be a dataset's sha256 (64 hexadecimal digits), got {value[:80]!r}",
                             param=name)
    return value.lower()


def whole_param(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise InvalidRequest(f"'{name}' must be a whole number from {low} to {high}, got {value[:80]!r}", param=name)
    return number


def run_json(run: EvalRun, answers: int) -> dict[str, Any]:
    expected = run.items * run.repeats * len(run.deployments)
    return {"object": "eval_run", "id": run.id, "name": run.name, "dataset": run.dataset,
            "dataset_sha256": run.dataset_sha256, "items": run.items, "deployments": run.deployments,
            "scorers": run.scorers, "repeats": run.repeats, "project": run.project, "status": run.status,
            "created_at": _time(run.created_at), "updated_at": _time(run.updated_at), "answers": answers,
            "expected": expected, "progress": round(min(1.0, answers / expected), 4) if expected else 1.0}


def result_json(result: EvalResult) -> dict[str, Any]:
    shown = {name: getattr(result, name) for name in RESULT_FIELDS}
    for money in ("cost", "price", "scoring_price"):
        shown[money] = round(shown[money], 8)
    return {"object": "eval_result", **shown}


def _ranked(summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best quality first; deployments that nothing scored last."""
    return sorted(summaries, key=lambda s: (s["quality"] is None, -(s["quality"] or 0.0)))


async def _found(repository: EvalRepository, name_or_id: str) -> EvalRun:
    run = await repository.get(run_param(name_or_id))
    if run is None:
        raise NotFound(f"There is no evaluation run {name_or_id!r} (`modelgate eval run ... --name NAME` makes one).",
                       code="eval_run_not_found", param="run")
    return run


async def run_list(repository: EvalRepository, dataset_sha256: str | None) -> dict[str, Any]:
    runs = await repository.runs(dataset_sha256)
    answered = [len(await repository.done(run.id)) for run in runs]
    return {"object": "list", "data": [run_json(run, n) for run, n in zip(runs, answered, strict=True)]}


async def run_report(repository: EvalRepository, name_or_id: str) -> dict[str, Any]:
    run = await _found(repository, name_or_id)
    results = await repository.results(run.id)
    # In a thread: the tags come from the dataset file, read (and hashed) where it still is.
    report = await asyncio.to_thread(report_json, run, results)
    return {**run_json(run, len(results)), "deployments_summary": _ranked(report["deployments"]),
            "tags": {tag: _ranked(rows) for tag, rows in report["tags"].items()}}


async def result_page(repository: EvalRepository, name_or_id: str, limit: int, offset: int) -> dict[str, Any]:
    run = await _found(repository, name_or_id)
    results = await repository.results(run.id)
    return {"object": "list", "data": [result_json(r) for r in results[offset:offset + limit]],
            "total": len(results), "limit": limit, "offset": offset}


def _dataset_name(run: EvalRun) -> str:
    return PurePath(run.dataset).name or run.dataset


async def datasets(repository: EvalRepository) -> dict[str, Any]:
    """Each dataset that has a run, as its newest run names it, most recently run first."""
    found: dict[str, dict[str, Any]] = {}
    for run in await repository.runs():  # newest first
        entry = found.get(run.dataset_sha256)
        if entry is None:
            found[run.dataset_sha256] = {"object": "eval_dataset", "name": _dataset_name(run),
                                         "dataset_sha256": run.dataset_sha256, "items": run.items, "runs": 1,
                                         "last_run_at": _time(run.created_at)}
        else:
            entry["runs"] += 1
    return {"object": "list", "data": list(found.values())}


async def leaderboard(repository: EvalRepository, dataset_sha256: str) -> dict[str, Any]:
    """Each deployment as the most recent finished run of the dataset that asked it scored it,
    best quality first. Runs still going, or stopped halfway, are left out."""
    runs = await repository.runs(dataset_sha256)
    if not runs:
        raise NotFound(f"No evaluation run of the dataset {dataset_sha256} (`modelgate eval run` makes one).",
                       code="eval_dataset_not_found", param="dataset_sha256")
    entries: dict[str, dict[str, Any]] = {}
    for run in runs:  # newest first: the first run to score a deployment is its entry
        wanted = [d for d in run.deployments if d not in entries]
        if run.status != "done" or not wanted:
            continue
        summaries = {s.deployment: s for s in summarise(await repository.results(run.id), run.scorers)}
        for deployment in wanted:
            if deployment in summaries:
                entries[deployment] = _entry(summaries[deployment], run)
    ranked = sorted(entries.values(), key=lambda e: (e["quality"] is None, -(e["quality"] or 0.0), e["deployment"]))
    return {"object": "leaderboard", "dataset": _dataset_name(runs[0]), "dataset_sha256": dataset_sha256,
            "runs": len(runs), "finished_runs": sum(run.status == "done" for run in runs),
            "data": [{"rank": rank, **entry} for rank, entry in enumerate(ranked, 1)]}


def _entry(summary: Summary, run: EvalRun) -> dict[str, Any]:
    shown = summary.json()
    return {"deployment": summary.deployment, "quality": shown["quality"], "pass_rate": shown["pass_rate"]["mean"],
            "cost_per_1k_items": shown["cost_per_1k_items"], "latency_p50_ms": shown["latency_ms"]["p50"],
            "answers": summary.answers, "errors": summary.errors,
            "run": {"id": run.id, "name": run.name, "created_at": _time(run.created_at), "scorers": run.scorers}}

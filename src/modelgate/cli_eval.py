"""``modelgate eval``: run a dataset over deployments, report on a run, compare two runs.

    modelgate eval run DATASET.jsonl --config FILE --deployments a,b,c --scorers exact,judge:d
                       [--concurrency 8] [--repeats N] [--name NAME] [--project evals]
    modelgate eval report RUN --config FILE [--format md|html|json] [--out FILE]
    modelgate eval compare RUN_A RUN_B --config FILE [--json]
    modelgate eval router DATASET.jsonl --config FILE --deployment ROUTER [--holdout 0.3] [--json]

Imports of the gateway wait until a command runs, so `modelgate --help` stays quick.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from modelgate.schema.errors import GatewayError

if TYPE_CHECKING:
    from modelgate.config.settings import Settings

Loader = Callable[[str], "Settings"]
DEFAULT_CONFIG = "modelgate.yaml"


def add_eval_commands(commands: Any, load: Loader) -> None:
    evals = commands.add_parser("eval", help="evaluations: run a dataset over deployments, report, compare")
    sub = evals.add_subparsers(dest="eval_command", metavar="COMMAND", required=True)

    def command(name: str, help: str, run: Callable[[argparse.Namespace, Settings], Any]) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
        parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"config file (default: {DEFAULT_CONFIG})")
        parser.set_defaults(handler=lambda args: _run(run, args, load))
        return parser

    run = command("run", "run every item of a dataset on every deployment, scored; resumes a run of the same name",
                  _eval_run)
    run.add_argument("dataset", help="a JSONL file, one item per line")
    run.add_argument("--deployments", required=True, help="comma-separated deployment names")
    run.add_argument("--scorers", required=True,
                     help="comma-separated: exact, contains, regex, numeric, json_schema, tool_call, "
                          "similarity:DEPLOYMENT, judge:DEPLOYMENT")
    run.add_argument("--concurrency", type=int, default=8, help="answers asked at once (default 8)")
    run.add_argument("--repeats", type=int, default=1, help="times each item is asked of each deployment")
    run.add_argument("--name", help="the run's name (default: the dataset's file name and the time); "
                                    "the same name resumes a run")
    run.add_argument("--project", default="evals", help="the project the calls are made and charged as")
    report = command("report", "a run's scores, pass rates, latency and cost per deployment and per tag", _eval_report)
    report.add_argument("run", help="a run's name or id")
    report.add_argument("--format", choices=["md", "html", "json"], default="md")
    report.add_argument("--out", help="write to this file (an html report's charts are inside it)")
    study = command("router", "what a quality-cost deployment saves and gives up, measured on held-out items",
                    _eval_router)
    study.add_argument("dataset", help="a JSONL file, one item per line")
    study.add_argument("--deployment", required=True, help="a deployment of strategy quality-cost")
    study.add_argument("--holdout", type=float, default=0.3, help="the share of the items held out (default 0.3)")
    study.add_argument("--scorers", default="exact,numeric,json_schema,tool_call",
                       help="comma-separated, as for eval run (default: exact,numeric,json_schema,tool_call)")
    study.add_argument("--name", help="its runs are NAME-evidence and NAME-holdout (default: the dataset's "
                                      "file name and the deployment)")
    study.add_argument("--concurrency", type=int, default=8)
    study.add_argument("--project", default="evals")
    study.add_argument("--json", action="store_true")
    compare = command("compare", "the items whose scores changed between two runs", _eval_compare)
    compare.add_argument("first", help="a run's name or id")
    compare.add_argument("second", help="a run's name or id")
    compare.add_argument("--json", action="store_true")


def _run(run: Callable[[argparse.Namespace, Settings], Any], args: argparse.Namespace, load: Loader) -> int:
    from modelgate.evals.dataset import DatasetError
    from modelgate.evals.scorers import ScorerError
    from modelgate.storage import StorageError
    from modelgate.storage.evals import RunMismatch

    settings = load(args.config)
    try:
        return int(asyncio.run(run(args, settings)))
    except KeyboardInterrupt:
        print("modelgate: stopped; run the same command again to resume", file=sys.stderr)
        return 130
    except (DatasetError, ScorerError, RunMismatch) as error:
        print(f"modelgate: {error}", file=sys.stderr)
        return 2
    except (GatewayError, StorageError) as error:
        print(f"modelgate: {getattr(error, 'message', None) or error}", file=sys.stderr)
        return 2 if isinstance(error, GatewayError) and error.status == 400 else 1


async def _eval_run(args: argparse.Namespace, settings: Settings) -> int:
    from modelgate.evals.dataset import load_dataset
    from modelgate.server.evals import EvalRunner

    dataset = load_dataset(args.dataset)
    deployments = [d.strip() for d in args.deployments.split(",") if d.strip()]
    scorers = [s.strip() for s in args.scorers.split(",") if s.strip()]
    if args.repeats < 1 or args.concurrency < 1:
        print("modelgate: --repeats and --concurrency must be 1 or more", file=sys.stderr)
        return 2
    name = args.name or f"{Path(args.dataset).stem}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    runner = await EvalRunner.started(settings, args.project)
    try:
        run = await runner.run(dataset, deployments, scorers, name=name, repeats=args.repeats,
                               concurrency=args.concurrency)
        results = await runner.services.storage.evals.results(run.id)
    finally:
        await runner.stop()
    from modelgate.evals.stats import summarise

    print(f"run {run.name} ({run.id}): {run.status}")
    for summary in summarise(results, scorers):
        quality = summary.quality
        print(f"  {summary.deployment:<28} quality {'-' if quality is None else f'{quality:.3f}'}"
              f"  pass {_percent(summary.pass_rate.mean)}  errors {summary.errors}"
              f"  ${summary.cost_per_1k:.4f} per 1k items")
    return 0 if run.status == "done" else 1


async def _eval_router(args: argparse.Namespace, settings: Settings) -> int:
    from modelgate.evals.dataset import load_dataset
    from modelgate.server.evals import EvalRunner, router_study, study_markdown

    dataset = load_dataset(args.dataset)
    scorers = [s.strip() for s in args.scorers.split(",") if s.strip()]
    name = args.name or f"{Path(args.dataset).stem}-{args.deployment}"
    runner = await EvalRunner.started(settings, args.project)
    try:
        study = await router_study(runner, dataset, args.deployment, scorers, holdout=args.holdout, name=name,
                                   concurrency=args.concurrency)
    finally:
        await runner.stop()
    sys.stdout.write(orjson.dumps(study, option=orjson.OPT_INDENT_2).decode() + "\n" if args.json
                     else study_markdown(study))
    return 0


async def _eval_report(args: argparse.Namespace, settings: Settings) -> int:
    from modelgate.evals.report import render
    from modelgate.storage import Storage

    storage = await Storage.open_prepared(settings.database_url)
    try:
        run = await storage.evals.get(args.run)
        if run is None:
            print(f"modelgate: no run named {args.run!r} (modelgate eval run ... --name NAME makes one)",
                  file=sys.stderr)
            return 2
        results = await storage.evals.results(run.id)
    finally:
        await storage.close()
    text = render(run, results, args.format)
    if args.out:
        await asyncio.to_thread(Path(args.out).write_text, text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


async def _eval_compare(args: argparse.Namespace, settings: Settings) -> int:
    from modelgate.evals.stats import compare
    from modelgate.storage import Storage

    storage = await Storage.open_prepared(settings.database_url)
    try:
        runs = [await storage.evals.get(args.first), await storage.evals.get(args.second)]
        missing = [name for name, run in zip((args.first, args.second), runs, strict=True) if run is None]
        if missing:
            print(f"modelgate: no run named {', '.join(map(repr, missing))}", file=sys.stderr)
            return 2
        first, second = runs[0], runs[1]
        assert first is not None and second is not None
        changes = compare(await storage.evals.results(first.id), await storage.evals.results(second.id),
                          first.scorers)
    finally:
        await storage.close()
    if args.json:
        print(orjson.dumps({"first": first.name, "second": second.name, "changed": [
            {"item": c.item, "deployment": c.deployment, "before": c.before, "after": c.after,
             "output_before": c.output_before, "output_after": c.output_after} for c in changes]}).decode())
        return 0
    better = sum(1 for c in changes if (c.after or 0) > (c.before or 0))
    print(f"{first.name} → {second.name}: {len(changes)} item(s) changed, {better} better, "
          f"{len(changes) - better} worse")
    for c in changes:
        print(f"  item {c.item} on {c.deployment}: {_score(c.before)} → {_score(c.after)}")
        print(f"    before: {c.output_before[:100]!r}")
        print(f"    after:  {c.output_after[:100]!r}")
    return 0


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"

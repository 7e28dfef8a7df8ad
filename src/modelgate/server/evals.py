"""Evaluation runs in this process, through the gateway's own pipeline (``modelgate eval run``).

The gateway's services are started as `modelgate serve` starts them, on the config's database,
and every item is asked of every deployment as a call of the run's project (``evals`` unless
``--project`` says): its limits and budget apply, each answer gets its usage record (the run's cost
is on the usage report under that project), and a judge's or an embedder's calls are metered the
same way. Each answer is scored and written as it comes, so a run that stops (Ctrl-C, a kill)
resumes where it was when run again with the same name.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from modelgate.auth.keystore import limits
from modelgate.config.settings import Settings
from modelgate.evals.dataset import Dataset, Item
from modelgate.evals.scorers import Answer, Scorer, make_scorers
from modelgate.pipeline.contract import Call, Principal
from modelgate.schema.errors import GatewayError, InvalidRequest, UpstreamError
from modelgate.schema.events import Embeddings, ResultBuilder
from modelgate.server.services import Services, start_services
from modelgate.storage.evals import EvalResult, EvalRun
from modelgate.surfaces.openai_format.parse import parse_chat_request, parse_embedding_request

EVAL_KEY = "eval"  # the key id the run's usage records carry


@dataclass(slots=True)
class Progress:
    """What a run has done, drawn on ``out`` as it goes: a bar redrawn in place on a terminal, a
    line every tenth otherwise (a log, a pipe)."""

    total: int
    out: TextIO = field(default_factory=lambda: sys.stderr)
    done: int = 0
    errors: int = 0
    spent: float = 0.0
    started: float = field(default_factory=time.monotonic)
    _shown: int = -1

    def add(self, failed: bool, price: float) -> None:
        self.done += 1
        self.errors += failed
        self.spent += price
        self.draw()

    def draw(self, final: bool = False) -> None:
        tty = self.out.isatty()
        tenth = self.done * 10 // max(self.total, 1)
        if not tty and not final and tenth == self._shown:
            return
        self._shown = tenth
        elapsed = time.monotonic() - self.started
        left = (self.total - self.done) * elapsed / self.done if self.done else 0.0
        width = 24
        filled = width * self.done // max(self.total, 1)
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} answers · {self.errors} errors"
                f" · ${self.spent:.4f} · ETA {_clock(left)}")
        self.out.write(("\r" + line + ("\n" if final else "")) if tty else line + "\n")
        self.out.flush()


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class EvalRunner:
    """Runs datasets over deployments with the services of one gateway process."""

    def __init__(self, services: Services, project: str = "evals") -> None:
        self.services = services
        self.project = project
        self.principal = Principal(key_id=EVAL_KEY, project=project)

    @classmethod
    async def started(cls, settings: Settings, project: str = "evals") -> EvalRunner:
        services = await start_services(settings)
        runner = cls(services, project)
        record = await services.storage.keys.get_project(project)
        if record is not None:
            runner.principal = Principal(key_id=EVAL_KEY, project=project, project_limits=limits(record),
                                         deployments=frozenset(record.deployments) if record.deployments else None)
        return runner

    async def stop(self) -> None:
        await self.services.stop()

    async def run(self, dataset: Dataset, deployments: Sequence[str], scorers: Sequence[str], *, name: str,
                  repeats: int = 1, concurrency: int = 8, out: TextIO | None = None,
                  on_result: Callable[[EvalResult], None] | None = None) -> EvalRun:
        """Run (or resume) ``name``; the run as stored when every answer is in, or as far as it got."""
        missing = [d for d in deployments if d not in self.services.deployments]
        if missing:
            raise InvalidRequest(f"no deployment {', '.join(map(repr, missing))} in the config; "
                                 f"it has {', '.join(self.services.deployments)}", param="deployments")
        made = make_scorers(scorers, self.ask, self.embed, list(self.services.deployments))
        evals = self.services.storage.evals
        run, _ = await evals.start(EvalRun(name=name, dataset=dataset.path, dataset_sha256=dataset.sha256,
                                           items=len(dataset.items), deployments=list(deployments),
                                           scorers=list(scorers), repeats=repeats, project=self.project))
        done = await evals.done(run.id)
        jobs = [(item, repeat, deployment) for item in dataset.items for repeat in range(repeats)
                for deployment in deployments if (item.index, repeat, deployment) not in done]
        progress = Progress(len(dataset.items) * repeats * len(deployments), out or sys.stderr, done=len(done))
        progress.draw()
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(item: Item, repeat: int, deployment: str) -> None:
            async with gate:
                result = await self.answer(run.id, item, repeat, deployment, made)
                await evals.add(result)
                progress.add(result.error is not None, result.price + result.scoring_price)
                if on_result is not None:
                    on_result(result)

        status = "stopped"
        try:
            await asyncio.gather(*(one(*job) for job in jobs))
            status = "done"
        finally:
            progress.draw(final=True)
            with contextlib.suppress(Exception):
                await asyncio.shield(evals.finish(run.id, status))
        run.status = status
        return run

    async def answer(self, run_id: str, item: Item, repeat: int, deployment: str,
                     scorers: Sequence[Scorer]) -> EvalResult:
        """Ask ``deployment`` the item and score what it answers."""
        result = EvalResult(run_id=run_id, item=item.index, repeat=repeat, deployment=deployment,
                            question=item.question)
        call, built, error = await self._call(item.request(deployment))
        record = call.record if call is not None else None
        if record is not None:
            result.request_id = record.request_id
            result.latency_ms, result.ttft_ms = record.latency_ms, record.ttft_ms
            result.input_tokens, result.output_tokens = record.input_tokens, record.output_tokens
            result.cost, result.price = record.cost, record.price
        if error is not None:
            result.error = error
            return result
        assert built is not None
        choice = built.choices[0] if built.choices else None
        answer = Answer(text=choice.text if choice else "",
                        tool_calls=[{"name": c.name, "arguments": c.arguments}
                                    for c in (choice.tool_calls if choice else [])])
        result.output, result.tool_calls = answer.text, answer.tool_calls
        for scorer in scorers:
            try:
                score = await scorer.score(item, answer)
            except GatewayError as failed:
                result.scores[scorer.name] = {"score": None, "passed": None,
                                              "detail": f"scorer failed: {failed.message}"}
                continue
            result.scores[scorer.name] = score.json()
            result.scoring_price += score.price
        return result

    async def ask(self, deployment: str, body: dict[str, Any]) -> tuple[str, float]:
        """A judge's question: its answer's text and what it was charged."""
        call, built, error = await self._call(body)
        price = call.record.price if call is not None and call.record is not None else 0.0
        if error is not None or built is None:
            raise UpstreamError(f"the judge {deployment!r} failed: {error}", provider=deployment)
        return (built.choices[0].text if built.choices else ""), price

    async def embed(self, deployment: str, texts: list[str]) -> tuple[list[list[float]], float]:
        request = parse_embedding_request({"model": deployment, "input": texts})
        call = Call(request_id="req_" + secrets.token_hex(12), request=request,
                    deployment=self.services.deployment(deployment, self.principal), principal=self.principal,
                    route="embeddings")
        vectors: list[list[float]] = []
        async for event in self.services.handler(call):
            if isinstance(event, Embeddings):
                vectors = [v for v in event.vectors if isinstance(v, list)]
        price = call.record.price if call.record is not None else 0.0
        if len(vectors) != len(texts):
            raise UpstreamError(f"the embedder {deployment!r} gave {len(vectors)} vectors for {len(texts)} texts",
                                provider=deployment)
        return vectors, price

    async def _call(self, body: dict[str, Any]) -> tuple[Call | None, Any, str | None]:
        """The call made of a Chat Completions ``body``, its folded answer, and its error (the
        error's code and message) where it failed."""
        try:
            request = parse_chat_request(body)
            deployment = self.services.deployment(str(body["model"]), self.principal)
        except GatewayError as error:
            return None, None, f"{error.code or type(error).__name__}: {error.message}"
        call = Call(request_id="req_" + secrets.token_hex(12), request=request, deployment=deployment,
                    principal=self.principal, route="chat")
        builder = ResultBuilder()
        try:
            async for event in self.services.handler(call):
                builder.add(event)
        except GatewayError as error:
            return call, None, f"{error.code or type(error).__name__}: {error.message}"
        return call, builder.finish(), None


DEFAULT_STUDY_SCORERS = ("exact", "numeric", "json_schema", "tool_call")
BOOTSTRAP_ROUNDS = 2000


@dataclass(slots=True, kw_only=True)
class Policy:
    """One way of choosing a target for each held-out item, and what it came to."""

    name: str
    quality: float
    quality_low: float
    quality_high: float
    cost: float  # USD over the held-out items
    picks: dict[str, int]

    def json(self) -> dict[str, Any]:
        return {"policy": self.name, "quality": round(self.quality, 4), "quality_interval": [
            round(self.quality_low, 4), round(self.quality_high, 4)], "cost": round(self.cost, 8), "picks": self.picks}


async def router_study(runner: EvalRunner, dataset: Dataset, router: str, scorers: Sequence[str], *,
                       holdout: float, name: str, concurrency: int = 8, out: TextIO | None = None) -> dict[str, Any]:
    """How much a quality-cost deployment saves and what quality it gives up, measured on data it
    has not seen (``modelgate eval router``).

    The dataset is split at random (seeded by its content, so the same file splits the same way):
    ``holdout`` of it is held out. The router's targets are evaluated on the rest (the run
    ``NAME-evidence``, the router's evidence), and on the held-out items (``NAME-holdout``, every
    target on every item, so the three policies are read off the same answers): always the best
    target (by quality on the evidence), always the cheapest (by price there), and the router's pick
    per item. Quality intervals are 95 % normal intervals over items; the savings and the quality
    change against always-best come with 95 % bootstrap intervals (items resampled)."""
    import random

    from modelgate.catalog.minilm import model_folder
    from modelgate.engines.sentence import StaticEmbedder
    from modelgate.evals.stats import mean_interval, summarise
    from modelgate.routing.quality import Evidence, QualityCost

    deployment = runner.services.deployments.get(router)
    if deployment is None or deployment.strategy != "quality-cost":
        raise InvalidRequest(f"{router!r} is not a deployment of strategy quality-cost in the config",
                             param="deployment")
    if not 0 < holdout < 1:
        raise InvalidRequest("--holdout is the share of the items held out: more than 0, less than 1",
                             param="holdout")
    targets = [t.deployment for t in deployment.targets if t.deployment is not None]
    items = list(dataset.items)
    random.Random(int(dataset.sha256[:16], 16)).shuffle(items)
    cut = max(1, min(len(items) - 1, round(len(items) * holdout)))
    held, seen = sorted(items[:cut], key=lambda i: i.index), sorted(items[cut:], key=lambda i: i.index)

    def part(chosen: list[Item], tag: str) -> Dataset:  # the two parts are runs of datasets of their own
        return Dataset(path=dataset.path, sha256=f"{dataset.sha256[:54]}-{tag}", items=chosen)

    evidence_run = await runner.run(part(seen, "fit"), targets, scorers, name=f"{name}-evidence",
                                    concurrency=concurrency, out=out)
    holdout_run = await runner.run(part(held, "held"), targets, scorers, name=f"{name}-holdout",
                                   concurrency=concurrency, out=out)
    evals = runner.services.storage.evals
    fitted = await evals.results(evidence_run.id)
    tested = await evals.results(holdout_run.id)
    embedder = StaticEmbedder.from_folder(model_folder())
    evidence = Evidence.of(fitted, embedder)
    summaries = {s.deployment: s for s in summarise(fitted, scorers)}
    best = max(targets, key=lambda d: (summaries[d].quality or 0.0) if d in summaries else -1.0)
    cheapest = min(targets, key=lambda d: evidence.price.get(d, float("inf")))
    picker = QualityCost(embedder, evidence, deployment.max_quality_drop)
    group = runner.services.router.groups[router]

    quality: dict[tuple[int, str], float] = {}
    price: dict[tuple[int, str], float] = {}
    for result in tested:
        values = [0.0] if result.error else [s["score"] for s in result.scores.values() if s.get("score") is not None]
        quality[(result.item, result.deployment)] = sum(values) / len(values) if values else 0.0
        price[(result.item, result.deployment)] = result.price
    questions = {item.index: item.question for item in held}
    picks = {index: picker.order(question, list(group.targets))[0][0].deployment or best
             for index, question in questions.items()}
    choices = {"always best": {i: best for i in questions}, "always cheapest": {i: cheapest for i in questions},
               "router": picks}
    policies = []
    for label, chosen in choices.items():
        scores = [quality.get((i, d), 0.0) for i, d in chosen.items()]
        interval = mean_interval(scores)
        counts: dict[str, int] = {}
        for d in chosen.values():
            counts[d] = counts.get(d, 0) + 1
        cost = sum(price.get((i, d), 0.0) for i, d in chosen.items())
        policies.append(Policy(name=label, quality=interval.mean or 0.0, quality_low=interval.low or 0.0,
                               quality_high=interval.high or 0.0, cost=cost, picks=counts))
    indexes = list(questions)
    rng = random.Random(7)
    savings, changes = [], []
    for _ in range(BOOTSTRAP_ROUNDS):
        sample = [rng.choice(indexes) for _ in indexes]
        best_cost = sum(price.get((i, best), 0.0) for i in sample)
        router_cost = sum(price.get((i, picks[i]), 0.0) for i in sample)
        savings.append(1 - router_cost / best_cost if best_cost else 0.0)
        changes.append(sum(quality.get((i, picks[i]), 0.0) - quality.get((i, best), 0.0) for i in sample) / len(sample))
    savings.sort()
    changes.sort()
    low, high = int(BOOTSTRAP_ROUNDS * 0.025), int(BOOTSTRAP_ROUNDS * 0.975) - 1
    router_policy, best_policy = policies[2], policies[0]
    return {
        "router": router, "dataset": dataset.path, "items": len(items), "evidence_items": len(seen),
        "held_out_items": len(held), "targets": targets, "best": best, "cheapest": cheapest,
        "max_quality_drop": deployment.max_quality_drop, "scorers": list(scorers),
        "runs": {"evidence": evidence_run.name, "held_out": holdout_run.name},
        "policies": [p.json() for p in policies],
        "savings": {"share": round(1 - router_policy.cost / best_policy.cost, 4) if best_policy.cost else None,
                    "interval": [round(savings[low], 4), round(savings[high], 4)]},
        "quality_change": {"mean": round(router_policy.quality - best_policy.quality, 4),
                           "interval": [round(changes[low], 4), round(changes[high], 4)]},
    }


def study_markdown(study: dict[str, Any]) -> str:
    """``router_study``'s figures as a Markdown table and two sentences."""
    lines = [f"Router `{study['router']}` on `{study['dataset']}`: {study['evidence_items']} items to fit it, "
             f"{study['held_out_items']} held out; targets {', '.join(study['targets'])} (best on the evidence: "
             f"{study['best']}; cheapest: {study['cheapest']}); max_quality_drop {study['max_quality_drop']:g}; "
             f"scorers {', '.join(study['scorers'])}.", "",
             "| policy | quality (95 % interval) | cost of the held-out items (USD) | picks |", "|---|---|---|---|"]
    for p in study["policies"]:
        low, high = p["quality_interval"]
        picks = ", ".join(f"{k} {v}" for k, v in sorted(p["picks"].items()))
        lines.append(f"| {p['policy']} | {p['quality']:.3f} ({low:.3f}-{high:.3f}) | {p['cost']:.6f} | {picks} |")
    savings, change = study["savings"], study["quality_change"]
    share = "-" if savings["share"] is None else f"{savings['share'] * 100:.1f} %"
    lines += ["", f"Savings against always using {study['best']}: {share} (95 % interval "
              f"{savings['interval'][0] * 100:.1f} % to {savings['interval'][1] * 100:.1f} %); quality change "
              f"{change['mean']:+.3f} (95 % interval {change['interval'][0]:+.3f} to {change['interval'][1]:+.3f})."]
    return "\n".join(lines) + "\n"

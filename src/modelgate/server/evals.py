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

"""Online experiments: a deployment's ``experiment:`` compared with it on live traffic.

The stage is the outermost of the chain (server/chain.py), so that it sees each call's usage
record once metering has made it. For a chat call to a deployment with an experiment it draws the
call's arm (routing/experiment.py ``draw``):

- **split** (``shadow: false``): ``share`` of the calls are ``treatment``, answered by the
  experiment's target (the router falls back to the deployment's own targets if it fails, and says
  so); the rest are ``control``. The response says which in ``x-modelgate-experiment``. A treatment
  call neither reads nor fills the response cache, so its answers are never given to control calls.
- **shadow** (``shadow: true``): every call is answered as usual; ``share`` of them are copied, once
  answered, to the experiment's target in the background. The copy's answer is scored, never
  returned; its failure never reaches the client. At most ``max_in_flight`` copies per deployment
  run at once in a process; one more is dropped and counted, never queued.

Sampled calls (the treatment calls, as many control calls, and in shadow mode each copied call
and its copy) become results of the evaluation run ``experiment:DEPLOYMENT`` (made on first use),
one row per answer named by the arm that answered: the target's deployment name, else
``provider/model``. Each row has the answer's latency, time to first token, tokens, cost and price
from its usage record and, where the experiment has a ``scorer``, its score: ``judge:NAME`` grades
the answer by ``rubric`` with no reference; ``similarity:NAME`` (shadow only) compares the copy's
answer with the main one. Scoring and writing happen behind the requests, in a bounded queue
(full: the row is dropped and counted). ``modelgate eval report experiment:DEPLOYMENT``, the admin
API and the portal show the arms side by side.

Every upstream call is metered as usual: a copy's usage record is the caller's (its project and key
id) with route ``shadow``, and the scorer's calls the caller's with route ``scoring``. Copies and
scoring calls skip the rate limits (they must not use up the caller's), the content policy (the
main call passed it) and the response cache; the project's budget applies.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
import random
import secrets
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, replace
from typing import Any

from modelgate.config.settings import DeploymentSettings, TargetSettings
from modelgate.evals.dataset import Item
from modelgate.evals.scorers import Answer, Judge, Similarity
from modelgate.pipeline.contract import Call, Handler, Limits, Principal
from modelgate.routing.experiment import HEADER, SHADOW, TREATMENT, Assignment, draw
from modelgate.schema.errors import GatewayError, NotFound, UpstreamError
from modelgate.schema.events import Embeddings, Event, ResultBuilder
from modelgate.schema.request import ChatRequest, EmbeddingRequest, TextPart
from modelgate.storage.evals import EvalRepository, EvalResult, EvalRun, RunMismatch
from modelgate.surfaces.openai_format.parse import parse_chat_request, parse_embedding_request

log = logging.getLogger("modelgate.experiments")

RUN_PREFIX = "experiment:"
SHADOW_ROUTE = "shadow"  # the route of a copy's usage record
SCORING_ROUTE = "scoring"  # the route of the scorer's calls' usage records
EVAL_KEY = "eval"  # the key id of `modelgate eval` calls (server/evals.py EVAL_KEY): no experiment there
ONLINE_PROJECT = "(callers)"  # an online run's calls are made as each caller's project
QUEUE_SIZE = 1000  # results waiting to be scored and written
WORKERS = 4  # results scored and written at once
STOP_WAIT_S = 10.0  # how long stopping waits for copies in flight and results queued


def run_name(deployment: str) -> str:
    return RUN_PREFIX + deployment


def label(target: TargetSettings) -> str:
    """A target as results name it: its deployment's name where it was given as one."""
    return target.deployment or f"{target.provider}/{target.model}"


def arms(deployment: DeploymentSettings) -> tuple[list[str], str]:
    """The names of the control arm's targets and of the treatment, which is told apart from them
    where it is one of them."""
    assert deployment.experiment is not None
    controls = list(dict.fromkeys(label(t) for t in deployment.targets))
    treatment = label(deployment.experiment.target)
    return controls, treatment + " (experiment)" if treatment in controls else treatment


def unlimited(principal: Principal) -> Principal:
    """The caller as its experiment's own calls are made: its project, key and budget, no rate
    limits, no content policy, any deployment (the judge)."""
    def open_rate(limits: Limits) -> Limits:
        return replace(limits, rpm=None, tpm=None)

    return replace(principal, key_limits=open_rate(principal.key_limits),
                   project_limits=open_rate(principal.project_limits), deployments=None, safety=None)


@dataclass(slots=True, kw_only=True)
class _Pending:
    """A result waiting to be scored and written."""

    deployment: DeploymentSettings
    result: EvalResult  # run_id set once the run is had
    principal: Principal  # what the scorer's calls are made as
    reference: str | None = None  # similarity: the main answer the copy's is compared with


class Experiments:
    """Stage: see the module docstring. ``handler`` gives the whole chain (once it is built), through
    which copies and the scorers' calls go; ``deployments`` looks up a scorer's deployment."""

    def __init__(self, evals: EvalRepository, handler: Callable[[], Handler],
                 deployments: Callable[[str], DeploymentSettings | None], *, rng: random.Random | None = None,
                 queue_size: int = QUEUE_SIZE, workers: int = WORKERS) -> None:
        self.evals = evals
        self.handler = handler
        self.deployments = deployments
        self.rng = rng or random.Random()
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=queue_size)
        self.workers = workers
        self._workers: list[asyncio.Task[None]] = []
        self.shadows: dict[str, int] = {}  # copies in flight, by deployment
        self.tasks: set[asyncio.Task[None]] = set()
        self.runs: dict[str, tuple[str, list[str], list[str]]] = {}  # deployment → (run id, arms, scorers)
        self.dropped_shadows = 0  # copies not sent: max_in_flight were in flight
        self.dropped_results = 0  # results not written: the queue was full
        self.written = 0
        self.stopping = False

    def __call__(self, call: Call, next: Handler) -> AsyncGenerator[Event, None]:
        experiment = call.deployment.experiment
        if (experiment is None or call.experiment is not None or not isinstance(call.request, ChatRequest)
                or call.route in (SHADOW_ROUTE, SCORING_ROUTE) or call.principal.key_id == EVAL_KEY):
            return next(call)
        return self._experiment(call, next)

    async def _experiment(self, call: Call, next: Handler) -> AsyncGenerator[Event, None]:
        experiment = call.deployment.experiment
        assert experiment is not None
        assignment = call.experiment = draw(experiment.share, experiment.shadow, self.rng)
        if not experiment.shadow:
            call.response_headers[HEADER] = assignment.arm
            if assignment.arm == TREATMENT:  # its answers are not the deployment's to give again
                call.cache_control = f"{call.cache_control}, no-store" if call.cache_control else "no-store"
        if not assignment.sampled or self.stopping:
            async for event in next(call):
                yield event
            return
        assignment.item = self.rng.getrandbits(31)
        builder = ResultBuilder()
        try:
            async for event in next(call):
                builder.add(event)
                yield event
        except GatewayError as error:
            self._failed(call, assignment, error)
            raise
        self._answered(call, assignment, builder)

    def _failed(self, call: Call, assignment: Assignment, error: GatewayError) -> None:
        """A sampled call that failed: a row with its error where an upstream was tried (a call
        refused before, by a limit or the content policy, says nothing of either arm)."""
        deployment = call.deployment
        if deployment.experiment is None or deployment.experiment.shadow or call.attempts == 0:
            return
        controls, treatment = arms(deployment)
        if assignment.fallback is not None or assignment.arm == TREATMENT:
            name, why = treatment, assignment.fallback or f"{error.code or type(error).__name__}: {error.message}"
        else:
            name, why = assignment.answered_by or controls[0], f"{error.code or type(error).__name__}: {error.message}"
        result = self._result(call, assignment.item, name, None)
        result.error = why
        self._enqueue(_Pending(deployment=deployment, result=result, principal=unlimited(call.principal)))

    def _answered(self, call: Call, assignment: Assignment, builder: ResultBuilder) -> None:
        deployment = call.deployment
        experiment = deployment.experiment
        if experiment is None or call.cache_hit or call.record is None:
            return
        controls, treatment = arms(deployment)
        principal = unlimited(call.principal)
        if assignment.fallback is not None:
            # The treatment failed; the control answer that took its place is no control sample.
            failed = self._result(call, assignment.item, treatment, None)
            failed.error = assignment.fallback
            failed.latency_ms = failed.input_tokens = failed.output_tokens = 0
            failed.ttft_ms, failed.cost, failed.price = None, 0.0, 0.0
            self._enqueue(_Pending(deployment=deployment, result=failed, principal=principal))
            return
        name = treatment if assignment.arm == TREATMENT else assignment.answered_by or controls[0]
        result = self._result(call, assignment.item, name, builder)
        if not experiment.shadow:
            self._enqueue(_Pending(deployment=deployment, result=result, principal=principal))
            return
        in_flight = self.shadows.get(deployment.name, 0)
        if in_flight >= experiment.max_in_flight:
            self.dropped_shadows += 1
            if self.dropped_shadows == 1 or self.dropped_shadows % 100 == 0:
                log.warning("deployment %s: %d shadow copies dropped so far: %d were in flight (experiment."
                            "max_in_flight)", deployment.name, self.dropped_shadows, in_flight)
            return
        self.shadows[deployment.name] = in_flight + 1
        task = asyncio.get_running_loop().create_task(self._shadow(call, treatment, result.output, principal))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        self._enqueue(_Pending(deployment=deployment, result=result, principal=principal))

    async def _shadow(self, main: Call, treatment: str, reference: str, principal: Principal) -> None:
        """The copy of ``main`` sent to its deployment's experiment target; its answer queued for
        scoring beside the main one. Nothing of it reaches the client."""
        deployment = main.deployment
        try:
            request = copy.deepcopy(main.request)
            shadowed = replace(deployment, cache=None, safety=None, rpm=None, tpm=None)
            call = Call(request_id="req_" + secrets.token_hex(12), request=request, deployment=shadowed,
                        principal=principal, route=SHADOW_ROUTE)
            call.experiment = Assignment(SHADOW, sampled=True, item=main.experiment.item)
            builder: ResultBuilder | None = ResultBuilder()
            error: str | None = None
            try:
                async for event in self.handler()(call):
                    assert builder is not None
                    builder.add(event)
            except GatewayError as failed:
                builder, error = None, f"{failed.code or type(failed).__name__}: {failed.message}"
            result = self._result(call, call.experiment.item, treatment, builder)
            result.error = error
            if call.record is None or (call.attempts == 0 and error is not None):
                return  # refused before any upstream (the budget): nothing to compare
            self._enqueue(_Pending(deployment=deployment, result=result, principal=principal, reference=reference))
        except Exception:
            log.exception("deployment %s: a shadow copy of request %s failed", deployment.name, main.request_id)
        finally:
            self.shadows[deployment.name] = self.shadows.get(deployment.name, 1) - 1

    @staticmethod
    def _result(call: Call, item: int, name: str, builder: ResultBuilder | None) -> EvalResult:
        request = call.request
        result = EvalResult(run_id="", item=item, repeat=0, deployment=name,
                            question=_question(request) if isinstance(request, ChatRequest) else "")
        record = call.record
        if record is not None:
            result.request_id = record.request_id
            result.latency_ms, result.ttft_ms = record.latency_ms, record.ttft_ms
            result.input_tokens, result.output_tokens = record.input_tokens, record.output_tokens
            result.cost, result.price = record.cost, record.price
        if builder is not None:
            built = builder.finish()
            choice = built.choices[0] if built.choices else None
            if choice is not None:
                result.output = choice.text
                result.tool_calls = [{"name": c.name, "arguments": c.arguments} for c in choice.tool_calls]
        return result

    def _enqueue(self, pending: _Pending) -> None:
        if not self._workers and not self.stopping:
            loop = asyncio.get_running_loop()
            self._workers = [loop.create_task(self._work()) for _ in range(self.workers)]
        try:
            self.queue.put_nowait(pending)
        except asyncio.QueueFull:
            self.dropped_results += 1
            if self.dropped_results == 1 or self.dropped_results % 100 == 0:
                log.warning("%d experiment results dropped so far: %d were waiting to be scored and written",
                            self.dropped_results, self.queue.qsize())

    async def _work(self) -> None:
        while True:
            pending = await self.queue.get()
            try:
                await self._write(pending)
                self.written += 1
            except Exception:
                log.exception("deployment %s: an experiment result could not be written", pending.deployment.name)
            finally:
                self.queue.task_done()

    async def _write(self, pending: _Pending) -> None:
        result = pending.result
        result.run_id = await self._run(pending.deployment)
        experiment = pending.deployment.experiment
        scorer = experiment.scorer if experiment is not None else None
        if scorer is not None and result.error is None:
            await self._score(scorer, experiment.rubric if experiment is not None else None, pending)
        await self.evals.add(result)

    async def _score(self, spec: str, rubric: str | None, pending: _Pending) -> None:
        kind, _, name = spec.partition(":")
        result = pending.result
        answer = Answer(text=result.output, tool_calls=result.tool_calls)
        item = Item(index=result.item, id=str(result.item), messages=[{"role": "user", "content": result.question}],
                    rubric=rubric)
        if kind == "similarity":
            if pending.reference is None:
                result.scores[kind] = {"score": None, "passed": None,
                                       "detail": "the main answer: what the copy's is compared with"}
                return
            item.expected = pending.reference
            scorer: Judge | Similarity = Similarity(self._embed(pending.principal), name)
        else:
            scorer = Judge(self._ask(pending.principal), name)
        try:
            score = await scorer.score(item, answer)
        except GatewayError as failed:
            result.scores[kind] = {"score": None, "passed": None, "detail": f"scorer failed: {failed.message}"}
            return
        result.scores[kind] = score.json()
        result.scoring_price += score.price

    def _ask(self, principal: Principal) -> Callable[[str, dict[str, Any]], Any]:
        async def ask(name: str, body: dict[str, Any]) -> tuple[str, float]:
            call = self._call(name, parse_chat_request(body), principal)
            builder = ResultBuilder()
            try:
                async for event in self.handler()(call):
                    builder.add(event)
            except GatewayError as error:
                raise UpstreamError(f"the judge {name!r} failed: {error.message}", provider=name) from error
            built = builder.finish()
            price = call.record.price if call.record is not None else 0.0
            return (built.choices[0].text if built.choices else ""), price

        return ask

    def _embed(self, principal: Principal) -> Callable[[str, list[str]], Any]:
        async def embed(name: str, texts: list[str]) -> tuple[list[list[float]], float]:
            call = self._call(name, parse_embedding_request({"model": name, "input": texts}), principal)
            vectors: list[list[float]] = []
            async for event in self.handler()(call):
                if isinstance(event, Embeddings):
                    vectors = [v for v in event.vectors if isinstance(v, list)]
            if len(vectors) != len(texts):
                raise UpstreamError(f"the embedder {name!r} gave {len(vectors)} vectors for {len(texts)} texts",
                                    provider=name)
            return vectors, call.record.price if call.record is not None else 0.0

        return embed

    def _call(self, name: str, request: ChatRequest | EmbeddingRequest, principal: Principal) -> Call:
        deployment = self.deployments(name)
        if deployment is None:
            raise NotFound(f"the scorer's deployment {name!r} is gone", param="model")
        return Call(request_id="req_" + secrets.token_hex(12), request=request, deployment=deployment,
                    principal=principal, route=SCORING_ROUTE)

    async def _run(self, deployment: DeploymentSettings) -> str:
        """The id of the deployment's online run: made on first use, its arms and scorers kept
        as the deployment's config says."""
        experiment = deployment.experiment
        assert experiment is not None
        controls, treatment = arms(deployment)
        names, scorers = [*controls, treatment], [experiment.scorer] if experiment.scorer else []
        known = self.runs.get(deployment.name)
        if known is not None and known[1:] == (names, scorers):
            return known[0]
        name = run_name(deployment.name)
        run = await self.evals.get(name)
        if run is None:
            source = f"online:{deployment.name}"
            try:
                run, _ = await self.evals.start(EvalRun(
                    name=name, dataset=source, dataset_sha256=hashlib.sha256(source.encode()).hexdigest(),
                    items=0, deployments=names, scorers=scorers, project=ONLINE_PROJECT))
            except RunMismatch:  # another process made it a moment ago, from another config
                run = await self.evals.get(name)
            if run is None:
                raise RuntimeError(f"the evaluation run {name!r} could not be made")
        if run.deployments != names or run.scorers != scorers:
            await self.evals.describe(run.id, deployments=names, scorers=scorers)
        self.runs[deployment.name] = (run.id, names, scorers)
        return run.id

    async def stop(self) -> None:
        """Wait (a while) for the copies in flight and the results queued; cancel what is left."""
        self.stopping = True
        if self.tasks:
            _, late = await asyncio.wait(set(self.tasks), timeout=STOP_WAIT_S)
            for task in late:
                task.cancel()
        if self._workers:
            try:
                await asyncio.wait_for(self.queue.join(), STOP_WAIT_S)
            except TimeoutError:
                log.warning("%d experiment results were not written before the gateway stopped", self.queue.qsize())
            for worker in self._workers:
                worker.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
            self._workers = []


def _question(request: ChatRequest) -> str:
    """The last user turn's text (what a judge is shown as the question)."""
    for message in reversed(request.messages):
        if message.role == "user":
            return " ".join(part.text for part in message.content if isinstance(part, TextPart))
    return ""

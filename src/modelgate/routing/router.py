"""The end of the pipeline: pick a target, try it, fail over, retry, and pass the answer on.

For a call to deployment D with fallbacks F1, F2, ... the router works through the groups D, F1,
F2 in order (only D's own fallbacks, not theirs, so there are no cycles). In each group:

1. **Failover.** The targets whose breaker allows them and whose context window fits the prompt,
   ordered by the group's strategy (and ``max_share``), are tried once each, with no wait.
2. **Retries.** Then up to ``retries`` more attempts go to targets this request already tried,
   after jittered backoff or, where the upstream sent one, after its Retry-After, but only when
   the wait ends within the request's deadline: its arrival plus the deployment's ``timeout``. A
   longer wait is not taken; the router moves on to the fallbacks.

Only what can succeed when sent again moves the request on: 429, 5xx, 529, refused connections,
timeouts, a stream cut or a malformed body before the first content. A client error (400, 401,
403, 404, 422) is raised at once. A prompt that is larger than a target's context window skips
that target; an upstream ``context_length_exceeded`` skips every target no larger than that one.
A request with built-in tools (web_search, file_search, ...: they run on OpenAI's servers) goes
only to targets that speak the Responses API (``api: responses``); when the deployment and its
fallbacks have none, it is refused with 400 naming the tool before anything is sent.

**Experiments.** A call the experiment stage put in the ``treatment`` arm of its deployment's
experiment (``call.experiment``, routing/experiment.py) is tried once at the experiment's target
first; if that fails, the deployment's chain answers it as above and the response says so. A
``shadow`` call (a copy no client sees) goes to the experiment's target alone.

**Streams.** Nothing reaches the surface until an attempt has produced its first content event
(a delta, ``Finish`` or ``Embeddings``; the provider's ``Start`` and any early ``Usage`` are held
back until then), so a failover before that is invisible to the client. That event commits the
attempt; a failure after it is raised as an ``UpstreamError`` saying the answer broke off, which
the surface sends as the stream's error event. The breaker counts an attempt as a success only
when its answer has arrived whole, so a target whose streams keep breaking off is cooled down too.

The call records each attempt as it starts (``call.attempts``, retries included), and
``call.provider`` / ``call.upstream_model`` name the target that answered, for the response
headers; the ``Start`` event carries the model the upstream says answered. ``call.upstream_s``
adds up the time spent waiting on upstreams (what is left of the latency is the gateway's own), and
where the request log keeps one, ``call.history`` gets an entry per attempt: which target, when,
for how long, and how it ended.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from modelgate.config.settings import DeploymentSettings
from modelgate.pipeline.contract import Call
from modelgate.providers.base import Provider
from modelgate.providers.openai_responses_wire import builtin_tools
from modelgate.providers.untrusted import seconds
from modelgate.routing.backoff import backoff_delay
from modelgate.routing.experiment import CONTROL, HEADER, SHADOW, TREATMENT, experiment_groups
from modelgate.routing.group import Group, Target
from modelgate.routing.health import Health
from modelgate.routing.strategies import order_targets
from modelgate.schema.errors import GatewayError, InvalidRequest, NotFound, UpstreamError, UpstreamMalformed
from modelgate.schema.events import Event, Start, Usage
from modelgate.schema.request import ChatRequest, EmbeddingRequest, ModerationRequest, ResponsesPassthrough, TextPart
from modelgate.schema.tokens import estimate_input_tokens, estimate_text_tokens
from modelgate.telemetry.tracing import Attempt as AttemptSpan
from modelgate.telemetry.tracing import Tracing

log = logging.getLogger("modelgate.routing")

CONTEXT_EXCEEDED = "context_length_exceeded"
TIMER_SLACK_S = 0.005


class Router:
    """The terminal handler of the pipeline; see the module docstring."""

    def __init__(self, deployments: Mapping[str, DeploymentSettings], providers: Mapping[str, Provider],
                 health: Health, rng: random.Random | None = None) -> None:
        self.health = health
        self.rng = rng or random.Random()
        self.providers = providers
        self.groups = {name: Group(d, providers, health) for name, d in deployments.items()}
        self.chains = self._chains(self.groups)
        # Each deployment's experiment target, by the deployment's name (routing/experiment.py).
        self.experiments = experiment_groups(deployments, providers, health)
        self.tracing: Tracing | None = None  # a span per attempt where the gateway traces

    def update(self, changes: Mapping[str, DeploymentSettings | None]) -> None:
        """Deployments added, changed (by name) or removed (None) while the gateway runs. Requests
        already routed keep the groups they started with."""
        groups = dict(self.groups)
        experiments = dict(self.experiments)
        for name, deployment in changes.items():
            experiments.pop(name, None)
            if deployment is None:
                groups.pop(name, None)
            else:
                groups[name] = Group(deployment, self.providers, self.health)
                experiments.update(experiment_groups({name: deployment}, self.providers, self.health))
        self.groups = groups
        self.experiments = experiments
        self.chains = self._chains(groups)

    @staticmethod
    def _chains(groups: Mapping[str, Group]) -> dict[str, list[Group]]:
        # A fallback that is gone (a deployment removed at run time) is left out.
        return {name: [group] + [groups[f] for f in group.fallbacks if f != name and f in groups]
                for name, group in groups.items()}

    def __call__(self, call: Call) -> AsyncGenerator[Event, None]:
        return self._route(call)

    def serves_moderations(self, deployment: str) -> bool:
        """Whether every target of ``deployment`` and of its fallbacks answers moderation requests."""
        chain = self.chains.get(deployment)
        return bool(chain) and all(t.provider.serves_moderations for group in chain or () for t in group.targets)

    async def count_tokens(self, deployment: str, request: ChatRequest) -> int | None:
        """The input tokens of ``request`` as counted by the first target of ``deployment`` whose
        upstream has an endpoint for it (Anthropic's count_tokens), the next such target taking
        over on a retryable failure; None when none has one (the caller estimates)."""
        failure: UpstreamError | None = None
        group = self.groups.get(deployment)
        for target in group.targets if group is not None else ():
            try:
                counted = await target.provider.count_tokens(request, target.upstream)
            except UpstreamError as error:
                if not error.retryable:
                    raise
                failure = error
                continue
            if counted is not None:
                return counted
        if failure is not None:
            raise failure
        return None

    async def _route(self, call: Call) -> AsyncGenerator[Event, None]:
        chain = self.chains.get(call.deployment.name)
        if chain is None:
            raise NotFound(f"The model '{call.deployment.name}' was removed while this request waited for it.",
                           param="model", code="model_not_found")
        trial = call.experiment
        attempt = None
        if trial is not None and trial.arm != CONTROL:
            attempt = await self._trial(call)
        if attempt is None:
            job = _Job(call, chain, call.started + chain[0].timeout)
            attempt = await self._answer(job)
        target = attempt.target
        if trial is not None:
            trial.answered_by = target.deployment or target.label
        ended: BaseException | None = None
        try:
            for event in attempt.head:
                yield event
            async for event in attempt.stream:
                yield event
        except UpstreamError as error:
            ended = error
            if _upstream_healthy(error):
                target.health.answered(attempt.probe)
                raise
            target.health.failed(error, time.monotonic(), attempt.probe)
            raise error.restated(
                f"The answer from provider '{target.provider.name}' (model '{target.model}', deployment "
                f"'{call.deployment.name}') broke off after it had started, so it could not be "
                f"retried elsewhere: {error.message}",
                code=error.code or "upstream_broke_off") from error
        except BaseException as error:
            ended = error
            raise
        else:
            target.health.succeeded(time.monotonic(), attempt.probe)
        finally:
            target.health.release(attempt.probe)
            await _close(attempt.stream)
            if attempt.span is not None:
                attempt.span.end(ended)
            call.upstream_s += time.monotonic() - attempt.started
            if call.history and ended is not None:
                _broke_off(call.history[-1], ended)

    async def _trial(self, call: Call) -> _Attempt | None:
        """A treatment or shadow call's attempt at its deployment's experiment target; for a
        treatment, None where that failed (the deployment's own targets answer it instead)."""
        trial = call.experiment
        group = self.experiments.get(call.deployment.name)
        if group is None:  # the experiment was removed while the call waited
            if trial.arm == SHADOW:
                raise NotFound(f"Deployment '{call.deployment.name}' has no experiment any more.", param="model")
            trial.arm = CONTROL
            call.response_headers[HEADER] = CONTROL
            return None
        try:
            attempt = await self._answer(_Job(call, [group], call.started + group.timeout))
        except GatewayError as error:
            if trial.arm == SHADOW:
                raise
            trial.failed(error, call.response_headers, group.targets[0].deployment or group.targets[0].label)
            log.info("request %s: %s; the deployment's targets answer it", call.request_id, trial.fallback)
            return None
        if trial.arm == TREATMENT:
            call.response_headers[HEADER] = TREATMENT
        return attempt

    async def _answer(self, job: _Job) -> _Attempt:
        """Work through the chain until an attempt commits; raise what to tell the client if none does."""
        chain = job.chain
        if job.builtin_tools and not any(t.upstream.api == "responses" for g in chain for t in g.targets):
            raise _builtin_tools_refused(job, chain)
        for group in chain:
            now = time.monotonic()
            allowed = [t for t in group.targets if t.health.allows(now) and job.fits(t)]
            ordered = order_targets(group, allowed, self.rng, now, job.input_tokens,
                                    _max_tokens(job.call.request))
            if group.quality is not None and len(ordered) > 1:
                ordered, reason = group.quality.order(_last_user_text(job.call.request), ordered)
                job.call.response_headers["x-modelgate-route-reason"] = header_text(reason)
            for target in ordered:
                if not target.health.allows(time.monotonic()) or not job.fits(target):
                    continue  # its state changed while an earlier target was tried
                attempt = await self._open(job, group, target)
                if attempt is not None:
                    return attempt
            retries = group.retries
            while retries > 0:
                again, wait = self._next_retry(job, group)
                if again is None:
                    break
                retries -= 1
                job.retries += 1
                if wait > 0:
                    # Event-loop timers may fire a millisecond early; the breaker would still be shut.
                    await asyncio.sleep(wait + TIMER_SLACK_S)
                if not again.health.allows(time.monotonic()):
                    continue  # another request holds its half-open probe
                attempt = await self._open(job, group, again)
                if attempt is not None:
                    return attempt
        raise self._unanswered(job, chain)

    async def _open(self, job: _Job, group: Group, target: Target) -> _Attempt | None:
        """Start an attempt and read it up to its first content; None if it failed retryably."""
        call = job.call
        started = time.monotonic()
        health = target.health
        probe = health.begin(started)
        call.attempts += 1
        call.provider = target.provider.name
        call.upstream_model = target.model
        job.tried.append(target)
        if group.traffic is not None:
            group.traffic.add(target.provider.name, started)
        head: list[Event] = []
        request = call.request
        span = None if self.tracing is None or call.trace is None else self.tracing.attempt(
            call.trace, call.kind, target.provider.name, target.model, call.attempts)
        if span is not None:
            span.enter()  # current while the request is sent: its traceparent goes upstream
        try:
            if isinstance(request, EmbeddingRequest):
                stream = target.provider.embed(request, target.upstream)
            elif isinstance(request, ModerationRequest):
                stream = target.provider.moderate(request, target.upstream)
            else:
                stream = target.provider.chat(request, target.upstream)
            async for event in stream:
                head.append(event)
                if isinstance(event, Start):
                    if not event.model:
                        event.model = target.model
                    continue
                if isinstance(event, Usage):
                    continue  # says nothing to the client yet: not a commitment
                break
        except GatewayError as error:
            health.release(probe)
            if span is not None:
                span.end(error)
            _attempted(call, target, started, error)
            self._failed(job, target, error, probe)
            return None
        except BaseException as error:
            health.release(probe)
            if span is not None:
                span.end(error)
            _attempted(call, target, started, error)
            raise
        for event in head:
            if isinstance(event, Start):
                call.upstream_model = event.model
        health.committed(time.monotonic() - started)
        if span is not None:
            span.leave()
            span.committed(call.upstream_model)
        _attempted(call, target, started, None)
        return _Attempt(target, stream, head, probe, span, started)

    def _failed(self, job: _Job, target: Target, error: GatewayError, probe: bool) -> None:
        """Account for a failed attempt; raise what must not be retried or failed over."""
        health = target.health
        if isinstance(error, UpstreamError) and error.retryable:
            now = time.monotonic()
            if _upstream_healthy(error):
                health.answered(probe)
            else:
                health.failed(error, now, probe)
            job.last_error = error
            wait = seconds(error.retry_after)  # a finite number of seconds, or None
            if wait is not None:
                job.retry_at[id(target)] = now + wait
            log.info("request %s: %s failed (%s), trying on: %s", job.call.request_id, target.label,
                     error.status, error.message)
            return
        if isinstance(error, UpstreamError):
            health.answered(probe)
            if error.code == CONTEXT_EXCEEDED:
                # Our estimate said it fits; the upstream disagrees. Larger windows may still take it.
                job.too_small_for(target)
                job.last_error = error
                return
        raise error

    def _next_retry(self, job: _Job, group: Group) -> tuple[Target | None, float]:
        """The target this request tried that can be tried again soonest within the deadline."""
        now = time.monotonic()
        best: Target | None = None
        best_wait = 0.0
        for target in job.tried:
            if target not in group.targets or not job.fits(target):
                continue
            retry_at = job.retry_at.get(id(target))
            if retry_at is not None and retry_at > now:
                wait = retry_at - now  # the upstream said when; no backoff on top of it
            elif target.health.allows(now) or retry_at is not None:
                wait = backoff_delay(job.retries, self.rng)
            else:
                continue  # its breaker opened on failures: skipped until it recovers
            if now + wait <= job.deadline and (best is None or wait < best_wait):
                best, best_wait = target, wait
        return best, best_wait

    def _unanswered(self, job: _Job, chain: list[Group]) -> GatewayError:
        """What to tell the client when no group answered."""
        if job.last_error is not None:
            return job.last_error
        name = job.call.deployment.name
        if job.too_small and not any(job.fits(t) for g in chain for t in g.targets):
            sizes = ", ".join(f"{t.label} {t.facts.context_window}" for t in job.too_small)
            return InvalidRequest(
                f"The prompt is about {job.input_tokens()} tokens, more than the context window of every "
                f"target of deployment '{name}' and its fallbacks ({sizes}). Shorten the prompt, or add a "
                "fallback with a larger context window.", param="messages", code=CONTEXT_EXCEEDED)
        now = time.monotonic()
        cooling = [t for g in chain for t in g.targets if job.fits(t)]
        wait = min((t.health.ready_at(now) - now for t in cooling), default=1.0)
        wait = max(wait, 0.0) if math.isfinite(wait) else 1.0
        # Each target's own last error says what the wait is for (a local model that cannot start).
        names = ", ".join(f"{t.label} ({t.health.reason or t.health.state}"
                          + (f"; last error: {t.health.last_error})" if t.health.last_error else ")")
                          for t in cooling)
        return UpstreamError(
            f"No target of deployment '{name}' or its fallbacks can take requests now: {names}. "
            f"Retry in {wait:.1f}s.", provider=cooling[0].provider.name if cooling else "",
            status=_cooling_status(cooling), code="no_healthy_target", retry_after=wait)


def _upstream_healthy(error: UpstreamError) -> bool:
    """Whether the target answered whole and only the answer failed the request (its breaker keeps
    no count of it)."""
    return isinstance(error, UpstreamMalformed) and error.upstream_healthy


class _Attempt:
    __slots__ = ("head", "probe", "span", "started", "stream", "target")

    def __init__(self, target: Target, stream: AsyncIterator[Event], head: list[Event], probe: bool,
                 span: AttemptSpan | None, started: float) -> None:
        self.target = target
        self.stream = stream
        self.head = head
        self.probe = probe
        self.span = span
        self.started = started


def _attempted(call: Call, target: Target, started: float, error: BaseException | None) -> None:
    """Account for an attempt up to its answer (``error`` None) or its failure: its time waiting
    on the upstream if it failed (an answer's is counted when it ends), and its entry in the
    call's history where the request log keeps one."""
    now = time.monotonic()
    if error is not None:
        call.upstream_s += now - started
    if call.history is None:
        return
    entry: dict[str, Any] = {"attempt": call.attempts, "provider": target.provider.name, "model": target.model,
                             "started_ms": round((started - call.started) * 1000, 3),
                             "duration_ms": round((now - started) * 1000, 3)}
    if error is None:
        entry["outcome"] = "answered"
    elif isinstance(error, GatewayError):
        entry.update(outcome="failed", status=error.status, error=f"{error.code or type(error).__name__}: "
                                                                   f"{error.message}")
    else:
        entry.update(outcome="cancelled" if isinstance(error, asyncio.CancelledError) else "failed",
                     error=type(error).__name__)
    call.history.append(entry)


def _broke_off(entry: dict[str, Any], error: BaseException) -> None:
    """The answering attempt's entry, once its answer ended in ``error`` after it started."""
    entry["outcome"] = "broke_off" if not isinstance(error, (asyncio.CancelledError, GeneratorExit)) else "cancelled"
    if isinstance(error, GatewayError):
        entry.update(status=error.status, error=f"{error.code or type(error).__name__}: {error.message}")


class _Job:
    """One request's way through the chain: what was tried and what it learned."""

    __slots__ = ("_tokens", "builtin_tools", "call", "ceiling", "chain", "deadline", "excluded", "last_error",
                 "retries", "retry_at", "too_small", "tried")

    def __init__(self, call: Call, chain: list[Group], deadline: float) -> None:
        self.call = call
        self.chain = chain
        self.deadline = deadline
        self.last_error: GatewayError | None = None
        self.retries = 0
        self.tried: list[Target] = []
        self.retry_at: dict[int, float] = {}  # id(target) -> when its Retry-After ends
        self.too_small: list[Target] = []
        self.ceiling: int | None = None  # an upstream said a window this large is too small
        self.excluded: set[int] = set()  # id() of targets an upstream said the prompt is too large for
        self._tokens: int | None = None
        request = call.request
        # Built-in tools need a target that speaks the Responses API (see the module docstring).
        self.builtin_tools = builtin_tools(request) if isinstance(request, ChatRequest) else []

    def input_tokens(self) -> int:
        if self._tokens is None:
            self._tokens = _estimate_tokens(self.call.request)
        return self._tokens

    def fits(self, target: Target) -> bool:
        window = target.facts.context_window
        if self.excluded and id(target) in self.excluded:
            return False
        if self.builtin_tools and target.upstream.api != "responses":
            return False
        if window is None or not isinstance(self.call.request, ChatRequest):
            return True
        if self.ceiling is not None and window <= self.ceiling:
            return False
        if self.input_tokens() > window:
            if target not in self.too_small:
                self.too_small.append(target)
            return False
        return True

    def too_small_for(self, target: Target) -> None:
        window = target.facts.context_window
        if window is not None:
            self.ceiling = window if self.ceiling is None else max(self.ceiling, window)
        self.excluded.add(id(target))
        self.too_small.append(target)


def _builtin_tools_refused(job: _Job, chain: list[Group]) -> InvalidRequest:
    """The refusal of built-in tools that no target of the chain can take, naming the first by its
    place in the client's ``tools`` (where the surface says it) and every one by its type."""
    request = job.call.request
    passthrough = request.passthrough if isinstance(request, ChatRequest) else None
    indexes = passthrough.tool_indexes if isinstance(passthrough, ResponsesPassthrough) else []
    param = f"tools[{indexes[0]}]" if indexes else "tools"
    kinds = list(dict.fromkeys(str(tool.get("type") or "?")[:60] for tool in job.builtin_tools))
    what = (f"{kinds[0]} ({param}) is a built-in tool that runs on OpenAI's servers and needs" if len(kinds) == 1
            else f"{', '.join(kinds)} ({param}, ...) are built-in tools that run on OpenAI's servers and need")
    targets = ", ".join(f"{t.label} (api: {t.upstream.api})" for g in chain for t in g.targets)
    return InvalidRequest(
        f"{what} an upstream that speaks the Responses API; deployment "
        f"'{job.call.deployment.name}' and its fallbacks have no target with api: responses ({targets}). Remove "
        "the tool, or use a deployment whose target says api: responses.",
        param=param, code="unsupported_tool")


def _cooling_status(cooling: list[Target]) -> int:
    """The status of a refusal while targets cool down: what they all last answered where that
    was a rate limit (429) or an overload (529, Anthropic's), so that a client keeps seeing the
    condition it is waiting out; else 503."""
    statuses = {t.health.last_status for t in cooling}
    if len(statuses) == 1:
        (status,) = statuses
        if status in (429, 529):
            return status
    return 503


def _last_user_text(request: ChatRequest | EmbeddingRequest | ModerationRequest) -> str:
    """What a quality-cost group places a request by: its last user turn's text."""
    if not isinstance(request, ChatRequest):
        return ""
    for message in reversed(request.messages):
        if message.role == "user":
            return " ".join(part.text for part in message.content if isinstance(part, TextPart))
    return ""


def header_text(text: str, limit: int = 512) -> str:
    """``text`` as a header value: printable ASCII, cut to ``limit``."""
    return "".join(c if " " <= c <= "~" else "?" for c in text[:limit])


def _max_tokens(request: ChatRequest | EmbeddingRequest | ModerationRequest) -> int | None:
    return request.max_tokens if isinstance(request, ChatRequest) else None


def _estimate_tokens(request: ChatRequest | EmbeddingRequest | ModerationRequest) -> int:
    if isinstance(request, ChatRequest):
        return estimate_input_tokens(request)
    return sum(estimate_text_tokens(item) if isinstance(item, str) else len(item) for item in request.input)


async def _close(stream: AsyncIterator[Event]) -> None:
    # Providers' streams are async generators; closing one releases its upstream connection now.
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()

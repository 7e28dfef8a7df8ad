"""The rate-limit stage: requests and tokens per minute, per key, per project and per deployment."""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Sequence
from typing import Protocol

from modelgate.config.limits import OnRedisOutage
from modelgate.limits.gcra import Counter, Decision
from modelgate.limits.headers import UNLIMITED_HEADERS, go_duration, ratelimit_headers
from modelgate.metering.usage import UsageWatch, estimate_request_tokens
from modelgate.pipeline.caller_cache import CallerCache
from modelgate.pipeline.contract import Call, Handler
from modelgate.redis_client.deferred import OutageLog
from modelgate.redis_client.outage import mark_degraded
from modelgate.schema.errors import RateLimited, ServiceUnavailable
from modelgate.schema.events import Event
from modelgate.schema.request import ChatRequest


class Limiter(Protocol):
    """Where the counters live: this process (``LocalLimiter``) or Redis (``RedisLimiter``).

    ``acquire`` charges every counter or none, atomically; ``adjust`` corrects counters after the
    fact and must not wait on I/O (it runs at the end of a request: queue the work).
    """

    async def acquire(self, counters: tuple[Counter, ...], costs: tuple[int, ...]) -> Decision: ...

    def adjust(self, counters: Sequence[Counter], deltas: Sequence[int]) -> None: ...

    async def close(self) -> None: ...


def counters_for(call: Call) -> tuple[Counter, ...]:
    """Every rpm/tpm limit that applies to the call: its key's, its project's, its deployment's."""
    counters: list[Counter] = []
    principal = call.principal
    for scope, owner, rpm, tpm in (
        ("key", principal.key_id, principal.key_limits.rpm, principal.key_limits.tpm),
        ("project", principal.project, principal.project_limits.rpm, principal.project_limits.tpm),
        ("deployment", call.deployment.name, call.deployment.rpm, call.deployment.tpm),
    ):
        if owner is None:
            continue
        tag = scope[0]
        if rpm:
            counters.append(Counter(f"{tag}:{owner}:r", rpm, "requests", scope, owner))
        if tpm:
            counters.append(Counter(f"{tag}:{owner}:t", tpm, "tokens", scope, owner))
    return tuple(counters)


def output_allowance(call: Call) -> int:
    """The output tokens charged up front: the request's ``max_tokens``; 0 without one (the real
    count settles it at the end)."""
    request = call.request
    if isinstance(request, ChatRequest) and request.max_tokens:
        return request.max_tokens
    return 0


class RateLimit:
    """Stage: refuses a request over any of its rpm/tpm limits with 429 and ``Retry-After``;
    puts OpenAI's six ``x-ratelimit-*`` headers on every response it lets through and every
    refusal (``limits/headers.py``), but one it could not count.

    Tokens are charged from an estimate when the request starts and corrected from the upstream's
    usage when it ends (or from what was streamed, when the usage never came).

    When the counters cannot be consulted (Redis unreachable), ``redis_outage`` decides: ``allow``
    lets the request pass with ``x-modelgate-degraded: limits``, ``refuse`` answers 503.
    """

    def __init__(self, limiter: Limiter, redis_outage: OnRedisOutage = "allow") -> None:
        self.limiter = limiter
        self.redis_outage = redis_outage
        self._counters = CallerCache(counters_for)
        self._outage = OutageLog("rate limits", "requests pass unchecked (limits.redis_outage: allow)"
                                 if redis_outage == "allow" else
                                 "requests under a limit are refused (limits.redis_outage: refuse)")

    def __call__(self, call: Call, next: Handler) -> AsyncGenerator[Event, None]:
        counters = self._counters(call)
        if not counters:
            call.response_headers.update(UNLIMITED_HEADERS)
            return next(call)  # nothing to count: no wrapper around the events either
        return self._limited(call, next, counters)

    async def _limited(self, call: Call, next: Handler, counters: tuple[Counter, ...]) -> AsyncGenerator[Event, None]:
        estimated_input = estimate_request_tokens(call.request)
        tokens = estimated_input + output_allowance(call)
        costs = tuple(1 if c.kind == "requests" else tokens for c in counters)
        decision = await self.limiter.acquire(counters, costs)
        if decision.unchecked is not None:
            self._outage.failed(decision.unchecked)
            if self.redis_outage == "refuse":
                raise unavailable(decision)
            mark_degraded(call.response_headers, "limits")
            async for event in next(call):
                yield event
            return
        if decision.states:
            call.response_headers.update(ratelimit_headers(counters, decision.states))
        if not decision.allowed:
            raise refusal(counters[decision.blocked], decision, costs[decision.blocked])
        token_counters = [c for c in counters if c.kind == "tokens"]
        if not token_counters:
            async for event in next(call):
                yield event
            return
        watch = UsageWatch()
        try:
            async for event in next(call):
                watch.observe(event)
                yield event
        finally:
            # Runs on success, error, client disconnect and cancellation alike; adjust() only queues.
            usage = watch.final(estimated_input)
            actual = usage.input_tokens + usage.output_tokens
            charged = [min(tokens, c.limit) for c in token_counters]
            self.limiter.adjust(token_counters, [actual - c for c in charged])


def unavailable(decision: Decision) -> ServiceUnavailable:
    wait = max(1, math.ceil(decision.retry_after_ms / 1000))
    return ServiceUnavailable(
        "Rate limits cannot be checked right now: the store they are counted in is unreachable, and "
        f"this gateway refuses requests it cannot count (limits.redis_outage: refuse). Try again in {wait}s.",
        code="limits_unavailable", retry_after=float(wait))


def refusal(counter: Counter, decision: Decision, cost: int) -> RateLimited:
    unit = "RPM" if counter.kind == "requests" else "TPM"
    state = decision.states[decision.blocked] if decision.states else None
    used = f", Remaining {state.remaining}" if state else ""
    # Whole seconds, rounded up: a client that waits Retry-After seconds must find room.
    retry_after = max(1, math.ceil(decision.retry_after_ms / 1000))
    return RateLimited(
        f"Rate limit reached for {counter.scope} '{counter.owner}' on {counter.kind} per min ({unit}): "
        f"Limit {counter.limit}{used}, Requested {cost}. "
        f"Please try again in {go_duration(decision.retry_after_ms)}.",
        retry_after=float(retry_after))

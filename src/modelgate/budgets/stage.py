"""The budget stage: a request that could take a key or project past its budget never starts.

A request reserves the most it can cost before it starts, so that requests in flight together
cannot overspend: its prompt counted at its upper bound (``schema.tokens``: UTF-8 bytes and
framing, never fewer tokens than a provider counts) and its output at ``max_tokens`` (times ``n``)
at the dearest rates of the targets that may answer. A request without ``max_tokens`` is given
one: the largest output its models may give (or ``DEFAULT_OUTPUT_RESERVE`` where that is not
known), lowered to what the budget's room can pay, and refused when that is less than
``MIN_OUTPUT``. It settles at its real price when it ends, however it ends.

So a budget is not overspent by requests that keep to their ``max_tokens``. For one that does not
(an upstream that ignores it), a stream is stopped with an error event once the output it streamed,
counted at ``OVERRUN_BYTES_PER_TOKEN`` bytes a token, passes the output reserved by
``OVERRUN_SLACK_TOKENS``: fewer bytes a token than real text averages over an answer (English
about 4.5, code 3 to 6), so an answer within its ``max_tokens`` is not cut, while a runaway one
stops within about twice what was reserved.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import UTC, datetime, timedelta

from modelgate.budgets.ledger import Budget, Ledger, Verdict, budgets_for
from modelgate.config.limits import OnRedisOutage
from modelgate.metering.pricing import DEFAULT_OUTPUT_RESERVE, NANO, PriceBook, Rates, cache_hit_nanos
from modelgate.metering.usage import UsageWatch, bound_request_tokens, estimate_request_tokens
from modelgate.pipeline.caller_cache import CallerCache
from modelgate.pipeline.contract import Call, Handler
from modelgate.redis_client.deferred import OutageLog
from modelgate.redis_client.outage import mark_degraded
from modelgate.schema.errors import BudgetExceeded, ServiceUnavailable
from modelgate.schema.events import Event, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from modelgate.schema.request import ChatRequest
from modelgate.schema.tokens import utf8_length

MIN_OUTPUT = 1024  # the least output a request without max_tokens is given; with less room it is refused
OVERRUN_BYTES_PER_TOKEN = 8
OVERRUN_SLACK_TOKENS = 64


class BudgetGuard:
    """Stage: reserves a request's most expensive outcome against every budget of its key and
    project before it starts, settles with the real price when it ends (see the module docstring).

    When the accounts cannot be consulted (Redis unreachable), ``redis_outage`` decides: ``refuse``
    answers 503, ``allow`` lets the request pass with ``x-modelgate-degraded: budgets`` and adds
    its cost to the spend once Redis is back.
    """

    def __init__(self, ledger: Ledger, prices: PriceBook, redis_outage: OnRedisOutage = "refuse") -> None:
        self.ledger = ledger
        self.prices = prices
        self.redis_outage = redis_outage
        self._budgets = CallerCache(lambda call: budgets_for(call.principal))
        self._outage = OutageLog("budgets", "requests with a budget pass unchecked (budgets.redis_outage: allow)"
                                 if redis_outage == "allow" else
                                 "requests with a budget are refused (budgets.redis_outage: refuse)")

    def __call__(self, call: Call, next: Handler) -> AsyncGenerator[Event, None]:
        budgets = self._budgets(call)
        if not budgets:
            return next(call)
        return self._guarded(call, next, budgets)

    async def _guarded(self, call: Call, next: Handler, budgets: tuple[Budget, ...]) -> AsyncGenerator[Event, None]:
        request = call.request
        rates, max_output = self.prices.ceiling(call.deployment)
        bound = bound_request_tokens(request)
        choices = 1
        output = least_output = 0
        fitted = False  # the request sets no max_tokens: it is given one that the budget can pay
        if isinstance(request, ChatRequest):
            choices = max(1, request.n or 1)
            if request.max_tokens is not None:
                output = least_output = min(request.max_tokens, max_output) if max_output else request.max_tokens
            else:
                fitted = True
                output = max_output or DEFAULT_OUTPUT_RESERVE
                least_output = min(output, MIN_OUTPUT)
        amount = cost(rates, bound, output * choices)
        least = cost(rates, bound, least_output * choices)
        verdict = await self.ledger.reserve(budgets, amount, least if fitted else None)
        if verdict.unchecked is not None:
            self._outage.failed(verdict.unchecked)
            if self.redis_outage == "refuse":
                raise unavailable(verdict)
            mark_degraded(call.response_headers, "budgets")
        hold = verdict.hold
        if hold is None:
            raise refusal(budgets[verdict.blocked], verdict, least if fitted else amount,
                          least_output if fitted else None)
        if fitted and isinstance(request, ChatRequest):
            if hold.amount < amount:
                output = affordable(rates, bound, choices, hold.amount, least_output, output)
            if hold.amount < amount or max_output is None:
                # Without it the upstream could answer past what is reserved.
                request.max_tokens = output
        stream = isinstance(request, ChatRequest) and request.stream and output > 0
        stop_at = OVERRUN_BYTES_PER_TOKEN * (output * choices + OVERRUN_SLACK_TOKENS)
        streamed = 0
        watch = UsageWatch()
        try:
            async with aclosing(next(call)) as events:
                async for event in events:
                    watch.observe(event)
                    if stream:
                        if isinstance(event, TextDelta | ReasoningDelta):
                            streamed += utf8_length(event.text)
                        elif isinstance(event, ToolCallDelta):
                            streamed += utf8_length(event.arguments) + utf8_length(event.name or "")
                        if streamed > stop_at:
                            raise overrun(budgets, output * choices)
                    yield event
        finally:
            usage = watch.final(estimate_request_tokens(request))
            if call.cache_hit:
                self.ledger.settle(hold, cache_hit_nanos(call.deployment, usage))
            else:
                prices = self.prices.lookup(call.deployment.name, call.provider, call.upstream_model)
                self.ledger.settle(hold, prices.price.nanos(usage))


def cost(rates: Rates, input_tokens: int, output_tokens: int) -> int:
    return rates.nanos(Usage(input_tokens=input_tokens, output_tokens=output_tokens))


def affordable(rates: Rates, bound: int, choices: int, held: int, least: int, most: int) -> int:
    """The largest output (per choice) between ``least`` and ``most`` whose cost fits ``held``."""
    if rates.output <= 0:
        return most
    per_token = 1000 * rates.output * choices  # nano-dollars per token of max_tokens
    output = min(most, max(least, math.floor((held - cost(rates, bound, 0)) / per_token)))
    while output > least and cost(rates, bound, output * choices) > held:
        output -= 1
    return output


def overrun(budgets: tuple[Budget, ...], reserved: int) -> BudgetExceeded:
    owner = " and ".join(f"{b.scope} '{b.owner}'" for b in budgets)
    return BudgetExceeded(
        f"The answer was stopped: it ran well past the {reserved} output tokens reserved for it against the "
        f"budget of {owner} (the upstream did not keep to max_tokens). What it streamed is charged.")


def unavailable(verdict: Verdict) -> ServiceUnavailable:
    wait = max(1, math.ceil(verdict.retry_after))
    return ServiceUnavailable(
        "Budgets cannot be checked right now: the store that keeps their spend is unreachable, and this "
        f"gateway refuses requests whose spend it cannot check (budgets.redis_outage: refuse). Try again in {wait}s.",
        code="budgets_unavailable", retry_after=float(wait))


def refusal(budget: Budget, verdict: Verdict, amount: int, least_output: int | None = None) -> BudgetExceeded:
    """``amount``: what the request would hold; ``least_output``: the output it would at least be
    given, when it set no max_tokens."""
    owner = f"{budget.scope} '{budget.owner}'"
    limit, spent, reserved = budget.limit / NANO, verdict.spent / NANO, verdict.reserved / NANO
    period = "today (UTC)" if budget.period == "day" else "this month (UTC)"
    need = (f"this request may cost up to ${amount / NANO:.4f}" if least_output is None else
            f"this request needs at least ${amount / NANO:.4f} (its prompt and {least_output} tokens of answer)")
    if verdict.spent + amount > budget.limit:
        now = datetime.now(UTC)
        resets = (now + timedelta(days=1)).strftime("%Y-%m-%d") if budget.period == "day" else \
            (now.replace(day=1) + timedelta(days=32)).strftime("%Y-%m-01")
        fix = "lower max_tokens" if least_output is None else "set a lower max_tokens"
        return BudgetExceeded(
            f"You exceeded your current quota: {owner} has spent ${spent:.4f} of its ${limit:.2f} budget "
            f"{period} and {need}. The budget resets on {resets} 00:00 UTC; raise it, or {fix}.")
    # The spend alone leaves room: requests in flight hold the rest, and may release some of it.
    return BudgetExceeded(
        f"You exceeded your current quota: {owner} has spent ${spent:.4f} of its ${limit:.2f} budget "
        f"{period} and requests in flight hold ${reserved:.4f}; {need}. Try again when they finish, "
        f"or {'lower' if least_output is None else 'set a lower'} max_tokens.", retry_after=1.0)

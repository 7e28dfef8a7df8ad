"""The budget stage: a request that could take a key or project past its budget never starts."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta

from modelgate.budgets.ledger import Budget, Ledger, Verdict, budgets_for
from modelgate.metering.pricing import NANO, PriceBook
from modelgate.metering.usage import UsageWatch, estimate_request_tokens
from modelgate.pipeline.caller_cache import CallerCache
from modelgate.pipeline.contract import Call, Handler
from modelgate.schema.errors import BudgetExceeded
from modelgate.schema.events import Event
from modelgate.schema.request import ChatRequest


class BudgetGuard:
    """Stage: reserves a request's most expensive outcome (its estimated input and the output it
    may produce, at the customer price) against every budget of its key and project before it
    starts, and settles with the real price when it ends, however it ends."""

    def __init__(self, ledger: Ledger, prices: PriceBook) -> None:
        self.ledger = ledger
        self.prices = prices
        self._budgets = CallerCache(lambda call: budgets_for(call.principal))

    def __call__(self, call: Call, next: Handler) -> AsyncGenerator[Event, None]:
        budgets = self._budgets(call)
        if not budgets:
            return next(call)
        return self._guarded(call, next, budgets)

    async def _guarded(self, call: Call, next: Handler, budgets: tuple[Budget, ...]) -> AsyncGenerator[Event, None]:
        request = call.request
        estimated_input = estimate_request_tokens(request)
        output = (self.prices.output_reserve(call.deployment, request.max_tokens)
                  if isinstance(request, ChatRequest) else 0)
        amount = self.prices.reserve_nanos(call.deployment, estimated_input, output)
        verdict = await self.ledger.reserve(budgets, amount)
        hold = verdict.hold
        if hold is None:
            raise refusal(budgets[verdict.blocked], verdict, amount)
        watch = UsageWatch()
        try:
            async for event in next(call):
                watch.observe(event)
                yield event
        finally:
            usage = watch.final(estimated_input)
            prices = self.prices.lookup(call.deployment.name, call.provider, call.upstream_model)
            self.ledger.settle(hold, prices.price.nanos(usage))


def refusal(budget: Budget, verdict: Verdict, amount: int) -> BudgetExceeded:
    owner = f"{budget.scope} '{budget.owner}'"
    limit, spent, reserved = budget.limit / NANO, verdict.spent / NANO, verdict.reserved / NANO
    period = "today (UTC)" if budget.period == "day" else "this month (UTC)"
    if verdict.spent + amount > budget.limit:
        now = datetime.now(UTC)
        resets = (now + timedelta(days=1)).strftime("%Y-%m-%d") if budget.period == "day" else \
            (now.replace(day=1) + timedelta(days=32)).strftime("%Y-%m-01")
        return BudgetExceeded(
            f"You exceeded your current quota: {owner} has spent ${spent:.4f} of its ${limit:.2f} budget "
            f"{period} and this request may cost up to ${amount / NANO:.4f}. The budget resets on {resets} "
            "00:00 UTC; raise it, or lower max_tokens.")
    # The spend alone leaves room: requests in flight hold the rest, and may release some of it.
    return BudgetExceeded(
        f"You exceeded your current quota: {owner} has spent ${spent:.4f} of its ${limit:.2f} budget "
        f"{period} and requests in flight hold ${reserved:.4f}; this request may cost up to "
        f"${amount / NANO:.4f}. Try again when they finish, or lower max_tokens.", retry_after=1.0)

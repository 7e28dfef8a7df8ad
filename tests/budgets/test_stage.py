"""The budget stage: reserve the most a request may cost, refuse what could overspend, settle."""

from __future__ import annotations

import re
import types

import pytest

from modelgate.auth import Limits
from modelgate.budgets import BudgetExceeded, BudgetGuard, LocalLedger
from modelgate.config.settings import PriceSettings, Settings
from modelgate.metering import NANO, PriceBook
from modelgate.schema.errors import UpstreamError
from modelgate.schema.events import Usage
from modelgate.storage import prices_from_settings
from modelgate.surfaces.openai_format.render import error_type
from tests.governed_calls import Script, answer, call, chat, deployment, drain, principal

# $1,000 per million tokens in and out: one token is a tenth of a cent.
PRICED = deployment(price=PriceSettings(input=1000.0, output=1000.0))


def guard(ledger: LocalLedger) -> BudgetGuard:
    settings = Settings(deployments={PRICED.name: PRICED})
    return BudgetGuard(ledger, PriceBook(prices_from_settings(settings), settings.deployments.values()))


def spent(ledger: LocalLedger, owner: str = "key_1", scope: str = "key") -> tuple[float, float]:
    account = ledger.account(scope, owner, ledger.periods.current("month"))
    return account[0] / NANO, account[1] / NANO


async def test_a_request_is_settled_at_its_real_price() -> None:
    ledger = LocalLedger()
    who = principal(Limits(budget=1.0))
    await drain(guard(ledger)(call(chat(max_tokens=100), who=who, to=PRICED),
                              Script(answer(usage=Usage(input_tokens=30, output_tokens=20)))))
    assert spent(ledger) == pytest.approx((0.05, 0))


async def test_a_request_that_could_overspend_never_starts() -> None:
    ledger = LocalLedger()
    stage = guard(ledger)
    who = principal(Limits(budget=0.1))  # a hundred tokens
    script = Script(answer(usage=Usage(input_tokens=30, output_tokens=20)))
    # The prompt at its upper bound (81 tokens) + max_tokens 100 may cost more than the whole budget.
    with pytest.raises(BudgetExceeded) as refused:
        await drain(stage(call(chat(max_tokens=100), who=who, to=PRICED), script))
    assert script.calls == 0
    assert (refused.value.status, error_type(refused.value), refused.value.code) == (
        429, "insufficient_quota", "insufficient_quota")
    assert refused.value.retry_after is None  # waiting does not help until the period ends
    assert "key 'key_1' has spent $0.0000 of its $0.10 budget this month" in refused.value.message
    await drain(stage(call(chat(max_tokens=15), who=who, to=PRICED), script))  # this one fits
    assert spent(ledger) == pytest.approx((0.05, 0))


async def test_requests_in_flight_hold_the_budget_until_they_end() -> None:
    ledger = LocalLedger()
    stage = guard(ledger)
    who = principal(Limits(budget=0.2))
    first = stage(call(chat(max_tokens=100), who=who, to=PRICED), Script(answer(usage=Usage(output_tokens=10))))
    await anext(first)  # started: its most expensive outcome (81 + 100 tokens) is reserved
    with pytest.raises(BudgetExceeded) as refused:
        await drain(stage(call(chat(max_tokens=100), who=who, to=PRICED), Script(answer())))
    assert refused.value.retry_after == 1.0  # in flight: worth trying again soon
    assert "requests in flight hold $0.1810" in refused.value.message
    await drain(first)
    assert spent(ledger) == pytest.approx((0.01, 0))
    await drain(stage(call(chat(max_tokens=100), who=who, to=PRICED), Script(answer())))


async def test_the_project_budget_counts_every_key_of_the_project() -> None:
    ledger = LocalLedger()
    stage = guard(ledger)
    for key in ("key_a", "key_b"):
        who = principal(project=Limits(budget=0.14, budget_period="day"), key_id=key)
        await drain(stage(call(chat(max_tokens=20), who=who, to=PRICED),
                          Script(answer(usage=Usage(input_tokens=10, output_tokens=10)))))
    who = principal(project=Limits(budget=0.14, budget_period="day"), key_id="key_c")
    with pytest.raises(BudgetExceeded, match=re.escape("project 'p1' has spent $0.0400 of its $0.14 budget today")):
        await drain(stage(call(chat(max_tokens=20), who=who, to=PRICED), Script(answer())))


async def test_a_failed_request_costs_nothing_and_a_cut_one_what_it_streamed() -> None:
    ledger = LocalLedger()
    stage = guard(ledger)
    who = principal(Limits(budget=1.0))
    down = Script([], fail_at=0, fail_with=UpstreamError("down", provider="openai", status=503))
    with pytest.raises(UpstreamError):
        await drain(stage(call(chat(max_tokens=100), who=who, to=PRICED), down))
    assert spent(ledger) == (0, 0)
    cut = Script(answer(text="w" * 200, usage=None), fail_at=2,
                 fail_with=UpstreamError("reset", provider="openai", status=502))
    with pytest.raises(UpstreamError):
        await drain(stage(call(chat("Hi", max_tokens=100), who=who, to=PRICED), cut))
    # 50 tokens streamed + the prompt's estimate (8), at a tenth of a cent each.
    assert spent(ledger) == pytest.approx((0.058, 0))


async def test_keys_without_a_budget_pass_untouched() -> None:
    ledger = LocalLedger()
    script = Script(answer())
    events = guard(ledger)(call(to=PRICED), script)
    assert isinstance(events, types.AsyncGeneratorType) and events.__qualname__ == "Script.__call__"
    await drain(events)

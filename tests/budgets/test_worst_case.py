"""A budget is not overspent by more than one request's worst case: prompts reserved at their upper
bound, max_tokens set where the client set none, runaway streams stopped; and what budgets do while
Redis is unreachable. On the in-process ledger and on the real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from modelgate.auth import Limits
from modelgate.budgets import BudgetExceeded, BudgetGuard, LocalLedger
from modelgate.budgets.redis import RedisLedger
from modelgate.catalog.facts import ModelFacts
from modelgate.config.settings import DeploymentSettings, PriceSettings, Settings
from modelgate.metering import NANO, PriceBook
from modelgate.pipeline.contract import Call
from modelgate.redis_client import RedisClient
from modelgate.schema.errors import ServiceUnavailable
from modelgate.schema.events import Event, Finish, Start, TextDelta, Usage
from modelgate.schema.request import ChatRequest, Message, TextPart
from modelgate.schema.tokens import bound_input_tokens, estimate_input_tokens
from modelgate.simulator.tokens import message_tokens
from modelgate.storage import prices_from_settings
from tests.governed_calls import Script, answer, call, chat, deployment, drain, principal
from tests.support import eventually, refused_port

Ledger = LocalLedger | RedisLedger

# Catalog prices of gpt-4o: $2.50 in, $10 out per million tokens; 16,384 tokens of output at most.
CATALOG = deployment()
# $1,000 per million tokens in and out: one token is a tenth of a cent.
PRICED = deployment(price=PriceSettings(input=1000.0, output=1000.0))
UNKNOWN_OUTPUT = deployment("open", price=PriceSettings(input=1000.0, output=1000.0),
                            facts=ModelFacts(input_price=1.0, output_price=1.0))


def guard(ledger: Ledger, *deployments: DeploymentSettings, redis_outage: str = "refuse") -> BudgetGuard:
    settings = Settings(deployments={d.name: d for d in deployments or (CATALOG,)})
    book = PriceBook(prices_from_settings(settings), settings.deployments.values())
    return BudgetGuard(ledger, book, "allow" if redis_outage == "allow" else "refuse")


async def spent(ledger: Ledger, owner: str = "key_1") -> tuple[float, float]:
    """(spent, reserved) in USD of the key's budget this month, once every settlement landed."""
    await ledger.flush()
    period = ledger.periods.current("month")
    if isinstance(ledger, LocalLedger):
        account = ledger.account("key", owner, period)
        return account[0] / NANO, account[1] / NANO
    fields = await ledger.redis.hgetall(ledger.account_key("key", owner, period))
    return int(fields.get(b"spent", 0)) / NANO, int(fields.get(b"reserved", 0)) / NANO


class Gate:
    """The upstream of concurrent calls: each waits at the gate until every call has been decided."""

    def __init__(self, usage: Usage) -> None:
        self.usage = usage
        self.waiting = 0
        self.open = asyncio.Event()

    async def __call__(self, call: Call) -> AsyncGenerator[Event, None]:
        call.attempts += 1
        call.provider, call.upstream_model = "openai", "gpt-4o"
        self.waiting += 1
        await self.open.wait()
        for event in answer("!" * 20, usage=self.usage):
            yield event


def test_the_input_bound_is_never_below_a_count_of_one_token_per_symbol() -> None:
    # The simulator counts every punctuation mark as a token, as BPE tokenizers may: a count the
    # four-characters estimate is far below, and the bound is not.
    for text in ("!" * 8000, "Hello, world! " * 300, "日本語のテキスト" * 200, "🙂" * 500, "é!ü?" * 400):
        request = chat(text)
        counted = message_tokens(text)
        assert bound_input_tokens(request) >= counted, text[:10]
    assert estimate_input_tokens(chat("!" * 8000)) < message_tokens("!" * 8000) / 3


async def test_prompts_far_above_the_estimate_cannot_overspend_together(ledger: Ledger) -> None:
    # The finding: 20 concurrent requests of "!" * 8000 with max_tokens 20 on a $0.03 budget spent
    # $0.10, as each reserved ~2,000 estimated tokens of prompt and used 8,003.
    stage = guard(ledger)
    who = principal(Limits(budget=0.03))
    upstream = Gate(Usage(input_tokens=message_tokens("!" * 8000), output_tokens=20))
    outcomes: list[str] = []

    async def one() -> None:
        try:
            await drain(stage(call(chat("!" * 8000, max_tokens=20), who=who), upstream))
            outcomes.append("answered")
        except BudgetExceeded:
            outcomes.append("refused")

    tasks = [asyncio.create_task(one()) for _ in range(20)]
    await eventually(lambda: upstream.waiting + len(outcomes) == 20, what="every request decided")
    upstream.open.set()
    await asyncio.gather(*tasks)
    assert outcomes.count("answered") == 1  # each reserves its whole worst case: ~$0.0203
    spend, reserved = await spent(ledger)
    assert spend == pytest.approx(0.0202075) and reserved == 0
    assert spend <= 0.03
    with pytest.raises(BudgetExceeded):  # the next would pass the budget: refused, not overspent
        await drain(stage(call(chat("!" * 8000, max_tokens=20), who=who), upstream))


async def test_n_choices_reserve_max_tokens_each(ledger: Ledger) -> None:
    stage = guard(ledger, PRICED)
    who = principal(Limits(budget=10.0))
    request = ChatRequest(model="chat", messages=[Message(role="user", content=[TextPart("Hi")])], max_tokens=100, n=3)
    events = stage(call(request, who=who, to=PRICED), Script(answer()))
    await anext(events)
    spend, reserved = await spent(ledger)
    assert spend == 0 and reserved == pytest.approx((bound_input_tokens(request) + 300) / 1000)
    await drain(events)


async def test_a_request_without_max_tokens_is_given_what_the_budget_can_pay(ledger: Ledger) -> None:
    stage = guard(ledger, PRICED, UNKNOWN_OUTPUT)
    prompt = chat()
    bound = bound_input_tokens(prompt)
    # Room for the prompt at its bound and 1,500 tokens of answer: less than the model's 16,384.
    who = principal(Limits(budget=(bound + 1500) / 1000))
    capped = call(chat(), who=who, to=PRICED)
    await drain(stage(capped, Script(answer(usage=Usage(input_tokens=10, output_tokens=10)))))
    assert isinstance(capped.request, ChatRequest) and capped.request.max_tokens == 1500
    # Now 0.02 is spent: 1,480 tokens of answer left, and then less than MIN_OUTPUT (1,024).
    second = call(chat(), who=who, to=PRICED)
    await drain(stage(second, Script(answer(usage=Usage(input_tokens=10, output_tokens=500)))))
    assert isinstance(second.request, ChatRequest) and second.request.max_tokens == 1480
    script = Script(answer())
    with pytest.raises(BudgetExceeded) as refused:
        await drain(stage(call(chat(), who=who, to=PRICED), script))
    assert script.calls == 0
    assert f"needs at least ${(bound + 1024) / 1000:.4f} (its prompt and 1024 tokens of answer)" \
        in refused.value.message
    assert "set a lower max_tokens" in refused.value.message
    # With room for the model's largest answer, the request is left as it was.
    rich = principal(Limits(budget=100.0), key_id="key_2")
    untouched = call(chat(), who=rich, to=PRICED)
    await drain(stage(untouched, Script(answer())))
    assert isinstance(untouched.request, ChatRequest) and untouched.request.max_tokens is None
    # A model whose largest answer is not known is held to what was reserved for it.
    unknown = call(chat(), who=rich, to=UNKNOWN_OUTPUT)
    await drain(stage(unknown, Script(answer())))
    assert isinstance(unknown.request, ChatRequest) and unknown.request.max_tokens == 4096


def words(count: int, word: str = "token ") -> list[Event]:
    return [Start(model="gpt-4o"), *(TextDelta(word) for _ in range(count)), Finish("length")]


async def test_a_stream_that_runs_past_its_reservation_is_stopped(ledger: Ledger) -> None:
    stage = guard(ledger, PRICED)
    who = principal(Limits(budget=10.0))
    # An answer that keeps to max_tokens 200 (6 bytes a token here) streams to its end.
    honest = Script([*words(200), Usage(input_tokens=10, output_tokens=200)])
    events = await drain(stage(call(chat("Hi", max_tokens=200, stream=True), who=who, to=PRICED), honest))
    assert len(events) == 203
    assert (await spent(ledger))[0] == pytest.approx(0.21)
    # An upstream that ignores it is cut once the output passes 8 bytes a token of the 200 + 64.
    runaway = Script([*words(5000), Usage(input_tokens=10, output_tokens=5000)])
    relayed: list[Event] = []
    with pytest.raises(BudgetExceeded, match="ran well past the 200 output tokens reserved"):
        async for event in stage(call(chat("Hi", max_tokens=200, stream=True), who=who, to=PRICED), runaway):
            relayed.append(event)
    assert len(relayed) == 1 + (8 * 264) // 6  # Start, then the deltas up to 2,112 bytes
    # Charged what it received (the delta that passed the mark too), at 4 characters a token, and
    # the prompt's estimate (8 tokens).
    assert (await spent(ledger))[0] == pytest.approx(0.21 + (8 + (353 * 6 + 3) // 4) / 1000)
    # Not streamed, the answer arrives whole and already paid for: it is delivered and settled.
    whole = Script([*words(5000), Usage(input_tokens=10, output_tokens=5000)])
    assert len(await drain(stage(call(chat("Hi", max_tokens=200), who=who, to=PRICED), whole))) == 5003


@pytest.mark.parametrize("policy", ["refuse", "allow"])
async def test_while_redis_is_unreachable_requests_with_a_budget_are_refused_or_pass_marked(policy: str) -> None:
    with refused_port() as port:
        client = RedisClient(f"redis://127.0.0.1:{port}/0")
        try:
            ledger = RedisLedger(client)
            stage = guard(ledger, PRICED, redis_outage=policy)
            who = principal(Limits(budget=0.001))  # a budget no request here fits
            for _ in range(3):
                passed = call(chat(max_tokens=100), who=who, to=PRICED)
                script = Script(answer())
                if policy == "allow":
                    await drain(stage(passed, script))
                    assert script.calls == 1
                    assert passed.response_headers == {"x-modelgate-degraded": "budgets"}
                else:
                    with pytest.raises(ServiceUnavailable) as refused:
                        await drain(stage(passed, script))
                    assert script.calls == 0
                    assert (refused.value.status, refused.value.code) == (503, "budgets_unavailable")
                    assert refused.value.retry_after is not None and refused.value.retry_after >= 1
                    assert "budgets.redis_outage: refuse" in refused.value.message
            # One connection refused opened the circuit; the requests after it did not try Redis.
            assert (client.circuit.state, client.circuit.opened) == ("open", 1)
            assert client.circuit.failed_fast >= 2
        finally:
            await client.close()

"""The metering stage: one record per call, however it ends, priced from the price table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import cast

import pytest

from modelgate.auth import Limits
from modelgate.config.settings import DeploymentSettings, PriceSettings, Settings
from modelgate.limits import LocalLimiter, RateLimit
from modelgate.metering import CLIENT_CLOSED, Metering, PriceBook
from modelgate.pipeline.contract import Call, build_chain
from modelgate.schema.errors import RateLimited, UpstreamError
from modelgate.schema.events import Event, ReasoningDelta, Start, TextDelta, Usage
from modelgate.schema.request import EmbeddingRequest
from modelgate.storage import UsageRecord, prices_from_settings
from tests.governed_calls import GPT_4O, Script, answer, call, chat, deployment, drain, principal


class Records:
    """A recorder that keeps what it is given."""

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    def record(self, record: UsageRecord) -> None:
        self.records.append(record)


def price_book(*deployments: DeploymentSettings) -> PriceBook:
    settings = Settings(deployments={d.name: d for d in deployments})
    return PriceBook(prices_from_settings(settings), settings.deployments.values())


@pytest.fixture
def records() -> Records:
    return Records()


def metering(records: Records, *deployments: DeploymentSettings) -> Metering:
    return Metering(records, price_book(*(deployments or (deployment(),))))


async def test_a_success_is_recorded_once_with_its_cost_and_price(records: Records) -> None:
    priced = deployment(price=PriceSettings(input=5.0, output=20.0))
    usage = Usage(input_tokens=1000, output_tokens=500, cached_input_tokens=400, reasoning_tokens=100)
    c = call(chat(), who=principal(), to=priced)
    await drain(metering(records, priced)(c, Script(answer(usage=usage))))
    [record] = records.records
    assert (record.request_id, record.project, record.key_id, record.deployment) == ("req_1", "p1", "key_1", "chat")
    assert (record.provider, record.model, record.route, record.status, record.attempts) == (
        "openai", "gpt-4o-2024-08-06", "chat", 200, 1)
    assert (record.input_tokens, record.cached_input_tokens, record.reasoning_tokens, record.output_tokens) == (
        1000, 400, 100, 500)
    # Cost at gpt-4o's catalog prices: 600 plain input at $2.50/M, 400 cached at $1.25/M, 500 output at $10/M.
    assert record.cost == pytest.approx((600 * 2.5 + 400 * 1.25 + 500 * 10) / 1e6)
    # Price at the deployment's: $5 and $20; cached input has no price of its own, so its cost.
    assert record.price == pytest.approx((600 * 5 + 400 * 1.25 + 500 * 20) / 1e6)
    assert record.error is None and record.ttft_ms is None  # not streamed
    assert 0 <= record.latency_ms < 1000
    assert record.created_at.tzinfo is not None


async def test_a_stream_records_its_time_to_first_token(records: Records) -> None:
    events: list[Event] = [Start(model="gpt-4o"), ReasoningDelta(text="hmm"), TextDelta("hi"),
              Usage(input_tokens=3, output_tokens=2)]

    class Slow(Script):
        async def __call__(self, call: Call) -> AsyncGenerator[Event, None]:
            call.attempts += 1
            call.provider, call.upstream_model = "openai", "gpt-4o"
            yield events[0]
            await asyncio.sleep(0.05)
            for event in events[1:]:
                yield event

    c = call(chat(stream=True))
    await drain(metering(records)(c, Slow([])))
    [record] = records.records
    assert record.ttft_ms is not None and 50 <= record.ttft_ms < record.latency_ms + 0.001


async def test_an_upstream_error_is_recorded_with_its_status(records: Records) -> None:
    failing = Script([], fail_at=0, fail_with=UpstreamError("busy", provider="openai", status=503, code="overloaded"))
    with pytest.raises(UpstreamError):
        await drain(metering(records)(call(), failing))
    [record] = records.records
    assert (record.status, record.input_tokens, record.output_tokens, record.cost) == (503, 0, 0, 0.0)
    assert record.error == "overloaded: busy"


async def test_a_cut_stream_is_recorded_with_what_it_streamed(records: Records) -> None:
    cut = Script(answer(text="z" * 400, usage=None), fail_at=2,
                 fail_with=UpstreamError("connection reset", provider="openai", status=502))
    with pytest.raises(UpstreamError):
        await drain(metering(records)(call(chat("What is the answer?")), cut))
    [record] = records.records
    assert record.status == 502
    assert record.output_tokens == 100  # 400 characters streamed
    assert record.input_tokens > 0  # estimated: the upstream had the prompt
    assert record.cost > 0


async def test_a_client_that_goes_away_is_recorded_as_499(records: Records) -> None:
    events = metering(records)(call(chat(stream=True)), Script(answer(text="a" * 40, usage=None)))
    async for event in events:
        if isinstance(event, TextDelta):
            break
    await events.aclose()  # the surface closes the stream when its client disconnected
    [record] = records.records
    assert (record.status, record.output_tokens) == (CLIENT_CLOSED, 10)
    assert record.error == "client closed the request"


async def test_a_cancelled_request_is_recorded_as_499(records: Records) -> None:
    started = asyncio.Event()

    class Hangs(Script):
        async def __call__(self, call: Call) -> AsyncGenerator[Event, None]:
            call.attempts += 1
            started.set()
            await asyncio.sleep(60)
            yield Start(model="never")

    task = asyncio.create_task(drain(metering(records)(call(), Hangs([]))))
    await started.wait()
    task.cancel()  # what DisconnectWatch does
    with pytest.raises(asyncio.CancelledError):
        await task
    [record] = records.records
    assert (record.status, record.attempts, record.provider) == (CLIENT_CLOSED, 1, None)


async def test_a_request_refused_by_a_limit_is_recorded_as_429(records: Records) -> None:
    chain = build_chain([metering(records), RateLimit(LocalLimiter())], Script(answer()))
    who = principal(Limits(rpm=1))
    await drain(chain(call(who=who, request_id="req_a")))
    with pytest.raises(RateLimited):
        await drain(chain(call(who=who, request_id="req_b")))
    assert [(r.request_id, r.status, r.attempts, r.provider) for r in records.records] == [
        ("req_a", 200, 1, "openai"), ("req_b", 429, 0, None)]
    assert records.records[1].error is not None and records.records[1].error.startswith("rate_limit_exceeded: ")


async def test_records_are_named_by_the_operation_that_made_the_call(records: Records) -> None:
    stage = metering(records)
    await drain(stage(call(EmbeddingRequest(model="chat", input=["x"])), Script(answer())))
    await drain(stage(call(chat()), Script(answer())))
    messages = call(chat())
    messages.route = "messages"  # what the Anthropic surface's operation sets
    await drain(stage(messages, Script(answer())))
    assert [r.route for r in records.records] == ["embeddings", "chat", "messages"]


async def test_an_answer_from_a_model_without_prices_costs_nothing(records: Records) -> None:
    from modelgate.catalog.facts import ModelFacts

    free = deployment("local", facts=ModelFacts())
    c = call(to=free)
    await drain(metering(records, free)(c, Script(answer())))
    assert (records.records[0].cost, records.records[0].price) == (0.0, 0.0)


def test_prices_follow_the_price_table() -> None:
    book = price_book(deployment(), deployment("resold", price=PriceSettings(output=30.0)))
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert book.lookup("chat", "openai", "gpt-4o").cost.nanos(usage) == 12_500_000_000
    resold = book.lookup("resold", "openai", "gpt-4o-2024-08-06")  # the upstream's own name for it
    assert (resold.cost.nanos(usage), resold.price.nanos(usage)) == (12_500_000_000, 32_500_000_000)
    assert GPT_4O.max_output_tokens == 16384
    assert book.output_reserve(deployment(), None) == 4096
    assert book.output_reserve(deployment(), 100_000) == 16384


def test_an_answer_from_a_fallback_is_priced_at_the_fallback() -> None:
    from modelgate.catalog.facts import ModelFacts
    from modelgate.config.settings import DeploymentSettings, TargetSettings

    mini = ModelFacts(input_price=0.15, output_price=0.6, max_output_tokens=16384)
    big = DeploymentSettings(name="big", fallbacks=["small"], targets=[
        TargetSettings(provider="openai", model="gpt-4o", facts=GPT_4O)])
    small = DeploymentSettings(name="small", price=PriceSettings(output=100.0), targets=[
        TargetSettings(provider="openai", model="gpt-4o-mini", facts=mini)])
    book = price_book(big, small)
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    # The upstream names the model it ran by a dated id; the longest configured id it extends wins.
    answered = book.lookup("big", "openai", "gpt-4o-mini-2024-07-18")
    assert (answered.cost.nanos(usage), answered.price.nanos(usage)) == (750_000_000, 100_150_000_000)
    assert book.lookup("big", "openai", "gpt-4o-2024-08-06").cost.nanos(usage) == 12_500_000_000
    # A reservation for "big" holds the dearest rates of every target that may answer for it.
    assert book.reserve_nanos(big, 1_000_000, 1_000_000) == 102_500_000_000


class Hostile(Script):
    """An upstream whose every value is wrong: a model that is an object, counts past any column
    or not numbers at all, an error that quotes a NUL."""

    async def __call__(self, call: Call) -> AsyncGenerator[Event, None]:
        call.attempts += 1
        call.provider = "openai"
        call.upstream_model = cast(str, {"id": "gpt-4o"})
        yield Start(model=call.upstream_model)
        yield TextDelta("hi")
        yield Usage(input_tokens=2**70, output_tokens=cast(int, "12"), cached_input_tokens=-3)
        raise UpstreamError("provider 'openai' answered 400: Invalid value: 'x\x00y'.", provider="openai",
                            status=400)


async def test_hostile_upstream_values_make_a_storable_record_and_the_call_fails_as_it_did(
        records: Records) -> None:
    with pytest.raises(UpstreamError, match="Invalid value"):
        await drain(metering(records)(call(chat()), Hostile([])))
    [record] = records.records
    assert record.model is None
    assert (record.input_tokens, record.output_tokens, record.cached_input_tokens) == (10**12, 0, 0)
    assert record.error == "UpstreamError: provider 'openai' answered 400: Invalid value: 'xy'."
    assert record.status == 400
    assert 0 < record.cost <= 1e9  # priced at gpt-4o's catalog prices, within what a record holds

"""The rate-limit stage: which counters apply, headers, refusals, and the tokens correction."""

from __future__ import annotations

import types

import pytest

from modelgate.auth import Limits
from modelgate.limits import LocalLimiter, RateLimit, counters_for
from modelgate.limits.headers import UNLIMITED_HEADERS
from modelgate.limits.redis import RedisLimiter
from modelgate.redis_client import RedisClient
from modelgate.schema.errors import RateLimited, ServiceUnavailable, UpstreamError
from modelgate.schema.events import TextDelta, Usage
from modelgate.schema.request import EmbeddingRequest
from tests.governed_calls import Script, answer, call, chat, deployment, drain, principal
from tests.support import refused_port


def test_the_counters_of_key_project_and_deployment_apply() -> None:
    c = call(who=principal(Limits(rpm=10, tpm=1000), Limits(rpm=100)), to=deployment(tpm=50_000))
    assert [(x.key, x.limit, x.kind) for x in counters_for(c)] == [
        ("k:key_1:r", 10, "requests"), ("k:key_1:t", 1000, "tokens"), ("p:p1:r", 100, "requests"),
        ("d:chat:t", 50_000, "tokens")]
    assert counters_for(call()) == ()


async def test_no_limits_no_wrapper_and_unlimited_headers() -> None:
    script = Script(answer())
    c = call()
    events = RateLimit(LocalLimiter())(c, script)
    # The next handler's own events, not a wrapper.
    assert isinstance(events, types.AsyncGeneratorType) and events.__qualname__ == "Script.__call__"
    await drain(events)
    # Every answer has all six headers; a caller with no limits is told it has no limits.
    assert c.response_headers == UNLIMITED_HEADERS


async def test_headers_go_on_the_response_and_the_limit_refuses_with_retry_after() -> None:
    stage = RateLimit(LocalLimiter())
    who = principal(Limits(rpm=2))
    first = call(who=who)
    await drain(stage(first, Script(answer())))
    assert first.response_headers["x-ratelimit-limit-requests"] == "2"
    assert first.response_headers["x-ratelimit-remaining-requests"] == "1"
    assert first.response_headers["x-ratelimit-reset-requests"].endswith("s")
    await drain(stage(call(who=who), Script(answer())))
    script = Script(answer())
    with pytest.raises(RateLimited) as refused:
        await drain(stage(call(who=who), script))
    assert script.calls == 0  # the upstream never saw it
    assert refused.value.status == 429
    assert refused.value.code == "rate_limit_exceeded"
    assert refused.value.retry_after == 30.0  # whole seconds, rounded up
    assert "key 'key_1'" in refused.value.message and "(RPM): Limit 2" in refused.value.message


async def test_tokens_are_charged_from_the_estimate_and_settled_from_the_usage() -> None:
    limiter = LocalLimiter()
    stage = RateLimit(limiter)
    who = principal(Limits(tpm=10_000))
    first = call(chat(max_tokens=500), who=who)
    await drain(stage(first, Script(answer(usage=Usage(input_tokens=40, output_tokens=60)))))
    # Charged: the estimated input (the prompt is ~14 tokens) + max_tokens 500 at the start.
    assert 9_480 <= int(first.response_headers["x-ratelimit-remaining-tokens"]) <= 9_490
    # Settled at 100 tokens: the next request sees them back (less its own charge).
    second = call(chat(), who=who)
    await drain(stage(second, Script(answer(usage=Usage(input_tokens=10, output_tokens=1)))))
    assert 9_880 <= int(second.response_headers["x-ratelimit-remaining-tokens"]) <= 9_890


async def test_a_call_no_upstream_answered_gives_its_tokens_back() -> None:
    limiter = LocalLimiter()
    stage = RateLimit(limiter)
    who = principal(Limits(tpm=1000))
    failing = Script([], fail_at=0, fail_with=UpstreamError("down", provider="openai", status=503))
    with pytest.raises(UpstreamError):
        await drain(stage(call(chat(max_tokens=900), who=who), failing))
    after = call(chat(), who=who)
    await drain(stage(after, Script(answer())))
    assert int(after.response_headers["x-ratelimit-remaining-tokens"]) >= 980


async def test_a_cut_stream_is_charged_for_what_it_streamed() -> None:
    limiter = LocalLimiter()
    stage = RateLimit(limiter)
    who = principal(Limits(tpm=10_000))
    events = answer(text="x" * 4000, usage=None)  # 1000 tokens of output, and no usage
    cut = Script(events, fail_at=2, fail_with=UpstreamError("reset", provider="openai", status=502))
    with pytest.raises(UpstreamError):
        await drain(stage(call(chat(), who=who), cut))
    after = call(chat(), who=who)
    await drain(stage(after, Script(answer())))
    remaining = int(after.response_headers["x-ratelimit-remaining-tokens"])
    assert 8_950 <= remaining <= 8_990  # ~1,000 output + the prompt's estimate, twice


async def test_a_client_that_leaves_is_charged_too() -> None:
    limiter = LocalLimiter()
    stage = RateLimit(limiter)
    who = principal(Limits(tpm=10_000))
    events = stage(call(chat(max_tokens=10), who=who), Script(answer(text="y" * 400, usage=None)))
    async for event in events:
        if isinstance(event, TextDelta):
            break
    await events.aclose()  # what the surface does when the client goes away
    after = call(chat(), who=who)
    await drain(stage(after, Script(answer())))
    assert 9_860 <= int(after.response_headers["x-ratelimit-remaining-tokens"]) <= 9_880


async def test_embeddings_are_counted_by_their_input() -> None:
    stage = RateLimit(LocalLimiter())
    c = call(EmbeddingRequest(model="embed", input=["a" * 400, "b" * 40]), who=principal(Limits(tpm=1000)))
    await drain(stage(c, Script(answer(usage=Usage(input_tokens=110)))))
    assert c.response_headers["x-ratelimit-remaining-tokens"] == "890"


async def test_while_redis_is_unreachable_requests_pass_marked_or_are_refused_as_configured() -> None:
    with refused_port() as port:
        client = RedisClient(f"redis://127.0.0.1:{port}/0")
        try:
            limiter = RedisLimiter(client)
            allowing, refusing = RateLimit(limiter), RateLimit(limiter, "refuse")
            who = principal(Limits(rpm=1, tpm=10))
            for _ in range(3):  # the limit is not enforced: nothing can count it
                passed = call(chat(max_tokens=100), who=who)
                script = Script(answer(usage=Usage(input_tokens=50, output_tokens=50)))
                await drain(allowing(passed, script))
                assert script.calls == 1
                assert passed.response_headers == {"x-modelgate-degraded": "limits"}
            assert client.circuit.state == "open" and client.circuit.failed_fast == 2
            script = Script(answer())
            with pytest.raises(ServiceUnavailable) as refused:
                await drain(refusing(call(who=who), script))
            assert script.calls == 0
            assert (refused.value.status, refused.value.code) == (503, "limits_unavailable")
            assert refused.value.retry_after is not None and refused.value.retry_after >= 1
            assert "limits.redis_outage: refuse" in refused.value.message
            assert not limiter._corrections  # nothing was charged, so nothing is corrected
        finally:
            await client.close()

"""The response cache end to end: a gateway on the simulator, driven by the official SDKs on every
surface (Chat Completions, Responses, Messages), streamed and not; the upstream's own count of
requests says when it was called. Tenants never share answers; ``Cache-Control`` bypasses and
refreshes; hits are metered (usage records, ``group_by=cache_hit``, statements) and cleared
through ``DELETE /admin/cache``; two gateway processes share answers through Redis."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from modelgate.simulator import SimulatorThread
from tests.server.otlp import Receiver
from tests.services import upgrade
from tests.support import RunningGateway, gateway_in_thread, gateway_process, wait_until

MASTER = "mk-cache"
ADMIN = {"authorization": f"Bearer {MASTER}"}
HIT_PRICE = 2.0  # USD per million tokens


@pytest.fixture(scope="module")
def cache_sim() -> Iterator[SimulatorThread]:
    with SimulatorThread() as simulator:
        yield simulator


def upstream_calls(sim: SimulatorThread) -> int:
    return sum(sim.simulator.state.stats.by_api.values())


def config(sim: SimulatorThread, **extra: Any) -> dict[str, Any]:
    v1 = f"{sim.base_url}/v1"
    return {
        "master_key": MASTER,
        "providers": {"openai": {"type": "openai", "base_url": v1, "api_key": "sk-sim", "flavor": "openai"}},
        "deployments": [
            {"name": "cached", "provider": "openai", "model": "gpt-4o", "cache": {"mode": "exact", "ttl": 600},
             "price": {"cache_hit": HIT_PRICE}},
            {"name": "shared", "provider": "openai", "model": "gpt-4o-mini",
             "cache": {"scope": "global"}},
            {"name": "sampled", "provider": "openai", "model": "gpt-4o",
             "cache": {"deterministic_only": False}},
            {"name": "plain", "provider": "openai", "model": "gpt-4o"},
        ],
        **extra,
    }


@pytest.fixture
def gateway(cache_sim: SimulatorThread) -> Iterator[RunningGateway]:
    with gateway_in_thread(config(cache_sim)) as running:
        yield running


@pytest.fixture(params=["memory", "redis"])
def any_store_gateway(request: pytest.FixtureRequest, cache_sim: SimulatorThread) -> Iterator[RunningGateway]:
    """A gateway keeping its answers in its own memory, or in Redis."""
    extra = {"redis_url": request.getfixturevalue("redis_url")} if request.param == "redis" else {}
    with gateway_in_thread(config(cache_sim, **extra)) as running:
        yield running


def make_key(gateway: RunningGateway, project: str) -> str:
    response = httpx.post(f"{gateway.base_url}/admin/keys", json={"project": project}, headers=ADMIN, timeout=30)
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def unique(text: str) -> str:
    """A prompt no other test asks (the cache outlives a test where Redis keeps it)."""
    return f"{text} [{secrets.token_hex(4)}]"


def chat(client: openai.OpenAI, prompt: str, model: str = "cached", **extra: Any) -> tuple[str, str | None]:
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt}], **{"temperature": 0, **extra})
    return str(raw.parse().choices[0].message.content), raw.headers.get("x-modelgate-cache")


def test_a_repeat_is_answered_from_the_cache_on_every_surface(any_store_gateway: RunningGateway,
                                                              cache_sim: SimulatorThread) -> None:
    gateway = any_store_gateway
    key = make_key(gateway, "team-a")
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    prompt = unique("Name three primary colours.")
    before = upstream_calls(cache_sim)
    first, said = chat(client, prompt)
    assert said == "miss" and upstream_calls(cache_sim) == before + 1
    # Kept after the answer went out (in Redis, one SET later): spacing at the ends of the text
    # does not change the request.
    wait_until(lambda: chat(client, "  " + prompt + "\n") == (first, "hit"), what="the answer kept")

    # Streamed: the same answer, replayed as chunks, the usage chunk included.
    with client.chat.completions.with_streaming_response.create(
            model="cached", messages=[{"role": "user", "content": prompt}], temperature=0, stream=True,
            stream_options={"include_usage": True}) as response:
        assert response.headers["x-modelgate-cache"] == "hit"
        chunks = list(response.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == first
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    # The Responses API and Anthropic's Messages ask the same: the same answer, in their formats.
    raw = client.responses.with_raw_response.create(model="cached", input=prompt, temperature=0, store=False)
    assert raw.headers["x-modelgate-cache"] == "hit" and raw.parse().output_text == first
    with anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0) as claude:
        # temperature through extra_body: this SDK's signature no longer lists it; the API takes it.
        message = claude.messages.with_raw_response.create(
            model="cached", max_tokens=1024, extra_body={"temperature": 0},
            messages=[{"role": "user", "content": prompt}])
        assert message.headers["x-modelgate-cache"] != "bypass"
        def streamed() -> tuple[str, str]:
            with claude.messages.stream(model="cached", max_tokens=1024, extra_body={"temperature": 0},
                                        messages=[{"role": "user", "content": prompt}]) as stream:
                return stream.response.headers["x-modelgate-cache"], stream.get_final_text()

        wait_until(lambda: streamed() == ("hit", message.parse().content[0].text),  # type: ignore[union-attr]
                   what="the Messages answer kept")
    # max_tokens is part of the request: the Messages call above asked once, then hit.
    assert upstream_calls(cache_sim) == before + 2


def test_projects_never_share_answers_unless_the_cache_is_global(gateway: RunningGateway,
                                                                 cache_sim: SimulatorThread) -> None:
    a = openai.OpenAI(base_url=gateway.v1, api_key=make_key(gateway, "tenant-a"), max_retries=0)
    b = openai.OpenAI(base_url=gateway.v1, api_key=make_key(gateway, "tenant-b"), max_retries=0)
    prompt = unique("What is our refund policy?")
    before = upstream_calls(cache_sim)
    assert chat(a, prompt)[1] == "miss"
    assert chat(b, prompt)[1] == "miss"
    assert chat(a, prompt)[1] == "hit" and chat(b, prompt)[1] == "hit"
    assert upstream_calls(cache_sim) == before + 2
    # A deployment whose cache says scope: global answers every caller from one entry.
    assert chat(a, prompt, model="shared")[1] == "miss"
    assert chat(b, prompt, model="shared")[1] == "hit"
    assert upstream_calls(cache_sim) == before + 3


def test_what_is_not_cached_and_what_clients_bypass(gateway: RunningGateway, cache_sim: SimulatorThread) -> None:
    client = openai.OpenAI(base_url=gateway.v1, api_key=make_key(gateway, "team-c"), max_retries=0)
    prompt = unique("Tell me a joke.")
    before = upstream_calls(cache_sim)
    # No temperature: the API's default of 1, a sampled answer: not looked up, not kept.
    raw = client.chat.completions.with_raw_response.create(model="cached",
                                                           messages=[{"role": "user", "content": prompt}])
    assert raw.headers["x-modelgate-cache"] == "bypass"
    assert chat(client, prompt, temperature=0.7)[1] == "bypass"
    assert chat(client, prompt, temperature=0.7, seed=7)[1] == "miss"  # a seed asks for the same answer
    assert chat(client, prompt, temperature=0.7, seed=7)[1] == "hit"
    # ... unless the deployment says deterministic_only: false.
    raw = client.chat.completions.with_raw_response.create(model="sampled",
                                                           messages=[{"role": "user", "content": prompt}])
    assert raw.headers["x-modelgate-cache"] == "miss"
    # A deployment without a cache says so on every response.
    assert chat(client, prompt, model="plain")[1] == "bypass"
    assert upstream_calls(cache_sim) == before + 5

    # Cache-Control: no-store neither reads nor keeps; no-cache asks again and keeps the new answer.
    fresh = unique("Spell 'cache'.")
    assert chat(client, fresh, extra_headers={"cache-control": "no-store"})[1] == "bypass"
    assert chat(client, fresh)[1] == "miss"
    assert chat(client, fresh, extra_headers={"cache-control": "no-cache"})[1] == "bypass"
    assert chat(client, fresh)[1] == "hit"
    assert upstream_calls(cache_sim) == before + 8


def usage(gateway: RunningGateway, **params: Any) -> dict[str, Any]:
    response = httpx.get(f"{gateway.base_url}/admin/usage", params=params, headers=ADMIN, timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_hits_are_metered_and_the_cache_can_be_cleared(gateway: RunningGateway, cache_sim: SimulatorThread) -> None:
    client = openai.OpenAI(base_url=gateway.v1, api_key=make_key(gateway, "billing"), max_retries=0)
    prompt = unique("Summarise the water cycle in one line.")
    chat(client, prompt)
    for _ in range(3):
        assert chat(client, prompt)[1] == "hit"

    def grouped() -> list[dict[str, Any]]:
        return list(usage(gateway, project="billing", group_by="cache_hit")["data"])

    wait_until(lambda: sum(row["requests"] for row in grouped()) == 4, what="the four usage records")
    miss, hits = sorted(grouped(), key=lambda row: row["cache_hit"])
    assert (miss["cache_hit"], miss["requests"], miss["cache_hits"], miss["saved"]) == (False, 1, 0, 0)
    assert (hits["cache_hit"], hits["requests"], hits["cache_hits"]) == (True, 3, 3)
    # The tokens the answer would have cost, no provider cost, the deployment's price for hits, and
    # what the provider would have charged as saved.
    assert hits["input_tokens"] == 3 * miss["input_tokens"] and hits["output_tokens"] == 3 * miss["output_tokens"]
    assert hits["cost"] == 0 and hits["saved"] == pytest.approx(3 * miss["cost"])
    assert hits["revenue"] == pytest.approx(3 * HIT_PRICE * (miss["input_tokens"] + miss["output_tokens"]) / 1e6)
    # The provider's statement shows what the cache saved it from being owed.
    statements = httpx.get(f"{gateway.base_url}/admin/statements", headers=ADMIN, timeout=30).json()["data"]
    [line] = [line for s in statements for line in s["lines"] if line["model"] == "gpt-4o"]
    assert line["cache_hits"] >= 3 and line["saved"] >= hits["saved"] - 1e-9

    # Cleared: by deployment and project; the next request asks the upstream again.
    before = upstream_calls(cache_sim)
    cleared = httpx.delete(f"{gateway.base_url}/admin/cache", params={"deployment": "cached", "project": "billing"},
                           headers=ADMIN, timeout=30)
    assert cleared.status_code == 200 and cleared.json()["deleted"] == 1
    assert chat(client, prompt)[1] == "miss" and upstream_calls(cache_sim) == before + 1
    refused = httpx.delete(f"{gateway.base_url}/admin/cache", params={"model": "cached"}, headers=ADMIN, timeout=30)
    assert refused.status_code == 400 and "model" in refused.text
    everything = httpx.delete(f"{gateway.base_url}/admin/cache", headers=ADMIN, timeout=30)
    assert everything.status_code == 200 and everything.json()["deleted"] >= 1
    project_key = httpx.delete(f"{gateway.base_url}/admin/cache", timeout=30,
                               headers={"authorization": f"Bearer {make_key(gateway, 'billing')}"})
    assert project_key.status_code in (401, 403)


def test_two_gateway_processes_share_answers_through_redis(cache_sim: SimulatorThread, redis_url: str,
                                                           postgres_url: str, tmp_path: Path) -> None:
    asyncio.run(upgrade(postgres_url))
    shared = config(cache_sim, database_url=postgres_url, redis_url=redis_url)
    with gateway_process({**shared, "journal_dir": str(tmp_path / "one")}) as one, \
            gateway_process({**shared, "journal_dir": str(tmp_path / "two")}) as two:
        key = make_key(one, "fleet")
        first = openai.OpenAI(base_url=one.v1, api_key=key, max_retries=0)
        second = openai.OpenAI(base_url=two.v1, api_key=key, max_retries=0)
        prompt = unique("Which planet is largest?")
        before = upstream_calls(cache_sim)
        answer, said = chat(first, prompt)
        assert said == "miss"
        wait_until(lambda: chat(second, prompt) == (answer, "hit"), what="the answer kept in Redis")
        with second.chat.completions.with_streaming_response.create(
                model="cached", messages=[{"role": "user", "content": prompt}], temperature=0,
                stream=True) as response:
            assert response.headers["x-modelgate-cache"] == "hit"
            assert "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices) == answer
        other = openai.OpenAI(base_url=two.v1, api_key=make_key(two, "fleet-b"), max_retries=0)
        assert chat(other, prompt)[1] == "miss"  # another project: its own entry
        assert upstream_calls(cache_sim) == before + 2
        # Cleared through either process: gone for both.
        cleared = httpx.delete(f"{two.base_url}/admin/cache", params={"project": "fleet"}, headers=ADMIN, timeout=30)
        assert cleared.json()["deleted"] == 1
        assert chat(first, prompt)[1] == "miss"


def test_hits_count_against_rate_limits_and_priced_hits_against_budgets(gateway: RunningGateway,
                                                                        cache_sim: SimulatorThread) -> None:
    filler = openai.OpenAI(base_url=gateway.v1, api_key=make_key(gateway, "governed"), max_retries=0)
    prompt = unique("Define latency.")
    chat(filler, prompt)
    chat(filler, prompt, model="shared")

    # A key of the same project allowed two requests a minute: hits are requests.
    response = httpx.post(f"{gateway.base_url}/admin/keys", json={"project": "governed", "rpm": 2},
                          headers=ADMIN, timeout=30)
    limited = openai.OpenAI(base_url=gateway.v1, api_key=response.json()["key"], max_retries=0)
    assert chat(limited, prompt)[1] == "hit" and chat(limited, prompt)[1] == "hit"
    with pytest.raises(openai.RateLimitError):
        chat(limited, prompt)

    # A key with a budget too small for any request: a hit its deployment charges for passes the
    # budget and is refused; a free hit (price.cache_hit 0, the default) costs it nothing.
    response = httpx.post(f"{gateway.base_url}/admin/keys", json={"project": "governed", "budget": 1e-7},
                          headers=ADMIN, timeout=30)
    assert response.status_code == 201, response.text
    poor = openai.OpenAI(base_url=gateway.v1, api_key=response.json()["key"], max_retries=0)
    before = upstream_calls(cache_sim)
    with pytest.raises(openai.RateLimitError) as refused:
        chat(poor, prompt)
    assert "budget" in str(refused.value)
    assert chat(poor, prompt, model="shared")[1] == "hit"
    assert upstream_calls(cache_sim) == before


def semantic_config(sim: SimulatorThread, embedder: str, threshold: float) -> dict[str, Any]:
    base = config(sim)
    base["deployments"] += [
        {"name": "embed", "provider": "openai", "model": "text-embedding-3-small"},
        {"name": "support", "provider": "openai", "model": "gpt-4o",
         "cache": {"mode": "semantic", "threshold": threshold, "embedder": embedder}},
    ]
    return base


def ask(client: openai.OpenAI, system: str, content: Any) -> tuple[str, str | None]:
    raw = client.chat.completions.with_raw_response.create(
        model="support", temperature=0,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": content}])
    return str(raw.parse().choices[0].message.content), raw.headers.get("x-modelgate-cache")


def test_a_semantic_cache_asks_its_embeddings_deployment_and_compares_the_last_turn_only(
        cache_sim: SimulatorThread) -> None:
    with gateway_in_thread(semantic_config(cache_sim, "embed", 0.99)) as gateway:
        client = openai.OpenAI(base_url=gateway.v1, api_key=make_key(gateway, "helpdesk"), max_retries=0)
        text = unique("Where is my parcel?")
        start = upstream_calls(cache_sim)
        answer, said = ask(client, "You are a support bot.", text)
        assert said == "miss"
        # Its last turn is embedded to be kept after the answer went out (the first of its room:
        # the lookup embedded nothing).
        wait_until(lambda: upstream_calls(cache_sim) == start + 2, what="the answer's embedding")
        # The same words in two parts: another request exactly, the same last turn by meaning (the
        # simulator's embeddings are equal for equal texts only).
        parts = [{"type": "text", "text": text[:9]}, {"type": "text", "text": text[9:]}]
        before = upstream_calls(cache_sim)
        assert ask(client, "You are a support bot.", parts) == (answer, "hit")
        # Another system prompt is another conversation: never a semantic hit.
        assert ask(client, "You are a sales bot.", parts)[1] == "miss"
        # Another project has its own entries.
        other = openai.OpenAI(base_url=gateway.v1, api_key=make_key(gateway, "helpdesk-2"), max_retries=0)
        assert ask(other, "You are a support bot.", parts)[1] == "miss"
        # Two answers; the embedding of the one lookup in a room with entries, and of the two new
        # answers' last turns, kept after they went out.
        wait_until(lambda: upstream_calls(cache_sim) - before == 2 + 3, what="the embeddings of the kept answers")
        # The embeddings calls are metered under the caller's project.
        wait_until(lambda: any(row["deployment"] == "embed" for row in usage(
            gateway, project="helpdesk", group_by="deployment")["data"]), what="the embeddings' usage records")


def test_hits_are_counted_apart_in_the_metrics(gateway: RunningGateway) -> None:
    client = openai.OpenAI(base_url=gateway.v1, api_key=make_key(gateway, "watched"), max_retries=0)
    prompt = unique("What is a cache?")
    chat(client, prompt)
    chat(client, prompt)
    chat(client, prompt)

    def metrics() -> str:
        return httpx.get(f"{gateway.base_url}/metrics", headers=ADMIN, timeout=30).text

    wait_until(lambda: 'modelgate_cache_hits_total{deployment="cached",project="watched"} 2' in metrics(),
               what="two hits counted")
    text = metrics()
    assert 'modelgate_cache_saved_usd_total{deployment="cached",project="watched"}' in text
    # Only the miss was an operation on the provider.
    [line] = [line for line in text.splitlines() if line.startswith(
        "gen_ai_client_operation_duration_seconds_count") and 'gen_ai_request_model="cached"' in line]
    assert line.endswith(" 1")


def test_a_semantic_cache_answers_a_paraphrase_and_not_a_near_miss(cache_sim: SimulatorThread,
                                                                   tmp_path: Path) -> None:
    """all-MiniLM-L6-v2 in the gateway's process (embedder: local): "how can I cancel my order"
    is the question asked before in other words (cosine ~0.99), "cancel my subscription" is not
    (~0.71)."""
    with gateway_in_thread(semantic_config(cache_sim, "local", 0.9),
                           env={"MODELGATE_CACHE_DIR": str(tmp_path)}) as gateway:
        client = openai.OpenAI(base_url=gateway.v1, api_key=make_key(gateway, "shop"), max_retries=0)
        system = unique("You are the shop's support bot.")  # a conversation of its own
        answer, said = ask(client, system, "How do I cancel my order?")
        assert said == "miss"
        before = upstream_calls(cache_sim)
        # Indexed before the miss's response ended: the paraphrase asked at once finds it.
        assert ask(client, system, "how can I cancel my order") == (answer, "hit")
        assert ask(client, system, "I want to cancel the order I placed")[1] == "hit"
        assert ask(client, system, "How do I cancel my subscription?")[1] == "miss"
        assert ask(client, system, "How do I track my order?")[1] == "miss"
        assert upstream_calls(cache_sim) == before + 2


def test_a_hits_span_says_so_and_has_no_upstream_attempt(cache_sim: SimulatorThread) -> None:
    receiver = Receiver()
    try:
        with gateway_in_thread(config(cache_sim, telemetry={"otlp_endpoint": receiver.url})) as gateway:
            client = openai.OpenAI(base_url=gateway.v1, api_key=MASTER, max_retries=0)
            prompt = unique("Trace me.")
            chat(client, prompt)
            chat(client, prompt)
        # The gateway has stopped: its last spans went out as it did.
        servers = sorted((s for s in receiver.spans if s.kind == Span.SPAN_KIND_SERVER),
                         key=lambda s: s.start_time_unix_nano)
        said = [{a.key: a.value.string_value for a in s.attributes if a.key == "modelgate.cache"} for s in servers]
        assert said == [{"modelgate.cache": "miss"}, {"modelgate.cache": "hit"}]
        attempts = [[c for c in receiver.spans if c.parent_span_id == s.span_id] for s in servers]
        assert [len(found) for found in attempts] == [1, 0]
    finally:
        receiver.close()

"""Two gateway processes sharing one Redis and one PostgreSQL, driven with the openai SDK.

Limits and budgets hold across both processes together; the database stopped under load, or a
gateway killed while it was away, loses no usage record.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from redis import Redis

from modelgate.simulator import SimulatorThread
from tests.services import _admin, upgrade
from tests.support import RunningGateway, gateway_process, openai_sim_config, wait_until
from tests.tcp_proxy import TcpProxy

MASTER = "mk-test"
# What a gateway's recorder logs when the database goes away, and once its journal is replayed.
OUTAGE = "until the database answers"
REPLAYED = "the database has every record again"
# $1,000 per million tokens: a request of a few dozen tokens costs a few cents, easy to add up.
PRICED = {"name": "priced", "provider": "openai", "model": "gpt-4o", "price": {"input": 1000, "output": 1000}}



async def _usage_rows(url: str, where: str = "") -> list[dict[str, Any]]:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(f"SELECT request_id, key_id, status, price, route FROM usage {where}")
        return [dict(row) for row in rows]
    finally:
        await connection.close()


def usage_rows(url: str, where: str = "") -> list[dict[str, Any]]:
    return asyncio.run(_usage_rows(url, where))


@pytest.fixture
def database(postgres_server: str, redis_url: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database; its Redis keys (namespaced by its installation id)
    are deleted afterwards."""
    name = "mg_test_" + secrets.token_hex(6)
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = postgres_server.rsplit("/", 1)[0] + "/" + name
    try:
        installation = asyncio.run(upgrade(url))
        yield url
    finally:
        client = Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"modelgate:{installation}:*", count=500))
        if keys:
            client.delete(*keys)
        client.close()
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def config(sim: SimulatorThread, database_url: str, redis_url: str, journal: Path) -> dict[str, Any]:
    base = openai_sim_config(sim.base_url, master_key=MASTER, database_url=database_url, redis_url=redis_url,
                             journal_dir=str(journal))
    base["deployments"].append(PRICED)
    return base


def create_key(gateway: RunningGateway, **limits: Any) -> dict[str, Any]:
    response = httpx.post(f"{gateway.base_url}/admin/keys", headers={"authorization": f"Bearer {MASTER}"},
                          json={"project": "p-" + secrets.token_hex(4), **limits}, timeout=10)
    assert response.status_code == 201, response.text
    return dict(response.json())


def wait_for_key(gateways: list[RunningGateway], key: str) -> None:
    """Until every gateway knows the key (GET /v1/models is neither limited nor metered)."""
    def known() -> bool:
        return all(httpx.get(f"{gateway.v1}/models", headers={"authorization": f"Bearer {key}"},
                             timeout=10).status_code == 200 for gateway in gateways)

    wait_until(known, 30, "every gateway learning the new key")


class Outcome:
    def __init__(self, status: int, request_id: str, headers: dict[str, str], error: dict[str, Any] | None):
        self.status, self.request_id, self.headers, self.error = status, request_id, headers, error


def ask(gateway: RunningGateway, key: str, n: int, model: str = "gpt-4o") -> Outcome:
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=30)
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": f"Say something number {n}"}], max_tokens=20)
        return Outcome(raw.status_code, raw.headers.get("x-request-id", ""), dict(raw.headers), None)
    except openai.APIStatusError as error:
        body = error.body if isinstance(error.body, dict) else None
        return Outcome(error.status_code, error.response.headers.get("x-request-id", ""),
                       dict(error.response.headers), body)
    finally:
        client.close()


def in_parallel(calls: list[Callable[[], Outcome]], workers: int = 10) -> list[Outcome]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda call: call(), calls))


@pytest.fixture
def pair(sim: SimulatorThread, database: str, redis_url: str, tmp_path: Path) -> Iterator[list[RunningGateway]]:
    with ExitStack() as stack:
        yield [stack.enter_context(gateway_process(config(sim, database, redis_url, tmp_path / name)))
               for name in ("a", "b")]


def test_a_key_limited_to_10_rpm_gets_exactly_10_successes_across_both(
        pair: list[RunningGateway], database: str) -> None:
    key = create_key(pair[0], rpm=10)
    wait_for_key(pair, key["key"])
    # All 30 at once: one request's slot comes back every 6 s, and "exactly 10" is about a burst
    # shorter than that (one round of concurrent requests is, by far).
    started = time.monotonic()
    outcomes = in_parallel([functools.partial(ask, pair[n % 2], key["key"], n) for n in range(30)], workers=30)
    elapsed = time.monotonic() - started
    assert sorted(o.status for o in outcomes) == [200] * 10 + [429] * 20, f"a burst of {elapsed:.1f}s"
    # One shared counter: the successes saw every remaining count from 9 down to 0 exactly once.
    assert sorted(int(o.headers["x-ratelimit-remaining-requests"]) for o in outcomes if o.status == 200) == \
        list(range(10))
    refused = [o for o in outcomes if o.status == 429]
    assert all(o.error and o.error["code"] == "rate_limit_exceeded" for o in refused)
    assert all(1 <= int(o.headers["retry-after"]) <= 6 for o in refused)
    # Both processes answered, and both refused.
    assert {n % 2 for n, o in enumerate(outcomes) if o.status == 200} == {0, 1}
    assert {n % 2 for n, o in enumerate(outcomes) if o.status == 429} == {0, 1}
    for gateway in pair:
        assert gateway.process is not None
        gateway.process.terminate()  # a clean stop writes what the recorders hold
        gateway.process.wait(15)
    rows = usage_rows(database, f"WHERE key_id = '{key['id']}'")
    assert sorted(r["status"] for r in rows) == [200] * 10 + [429] * 20
    assert {r["request_id"] for r in rows} == {o.request_id for o in outcomes}


def test_a_budget_is_never_overspent_under_concurrent_load(pair: list[RunningGateway], database: str) -> None:
    budget = 0.5  # USD: about 20 requests of ~27 tokens at $1,000 per million
    key = create_key(pair[0], budget=budget, budget_period="day")
    wait_for_key(pair, key["key"])
    outcomes = in_parallel([functools.partial(ask, pair[n % 2], key["key"], n, "priced") for n in range(60)],
                           workers=12)
    statuses = [o.status for o in outcomes]
    assert set(statuses) == {200, 429}
    refused = [o for o in outcomes if o.status == 429]
    assert all(o.error and o.error["type"] == "insufficient_quota" and o.error["code"] == "insufficient_quota"
               for o in refused)
    for gateway in pair:
        assert gateway.process is not None
        gateway.process.terminate()
        gateway.process.wait(15)
    rows = usage_rows(database, f"WHERE key_id = '{key['id']}'")
    assert len(rows) == 60
    spent = sum(r["price"] for r in rows)
    assert spent <= budget
    # Reservations only hold back what a request may cost: most of the budget was used.
    assert spent > budget * 0.8
    assert sum(r["status"] == 200 for r in rows) == statuses.count(200)


def test_the_database_stopped_under_load_loses_no_usage_record(
        sim: SimulatorThread, database: str, redis_url: str, tmp_path: Path) -> None:
    with TcpProxy("127.0.0.1", 5432) as proxy, ExitStack() as stack:
        proxied = database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        gateways = [stack.enter_context(gateway_process(config(sim, proxied, redis_url, tmp_path / name)))
                    for name in ("a", "b")]
        key = create_key(gateways[0])
        wait_for_key(gateways, key["key"])
        outcomes: list[Outcome] = []
        stop = threading.Event()

        def load(worker: int) -> None:
            n = worker
            while not stop.is_set():
                outcomes.append(ask(gateways[n % 2], key["key"], n))
                n += 4

        threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: len(outcomes) >= 20, 30, "requests before the outage")
            proxy.cut()  # the database is gone for every gateway connection
            before = len(outcomes)
            # Both gateways found the database gone and keep records in their journals, while
            # requests went on through the outage.
            wait_until(lambda: all(g.said(OUTAGE) for g in gateways) and len(outcomes) >= before + 20, 30,
                       "both gateways journaling through the outage")
            during = len(outcomes)
            proxy.restore()
            wait_until(lambda: all(g.said(REPLAYED) for g in gateways) and len(outcomes) >= during + 10, 30,
                       "both gateways replaying their journals, requests going on")
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert all(o.status == 200 for o in outcomes)  # the request path never waited on the database
        ids = [o.request_id for o in outcomes]
        rows: list[dict[str, Any]] = []

        def recorded() -> bool:
            rows[:] = usage_rows(database, f"WHERE key_id = '{key['id']}'")
            return len(rows) >= len(ids)

        wait_until(recorded, 30, "every usage record in the database")
        assert sorted(r["request_id"] for r in rows) == sorted(ids)  # each exactly once


def test_a_gateway_killed_while_the_database_was_away_loses_no_usage_record(
        sim: SimulatorThread, database: str, redis_url: str, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    with TcpProxy("127.0.0.1", 5432) as proxy:
        proxied = database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        with gateway_process(config(sim, proxied, redis_url, journal)) as gateway:
            key = create_key(gateway)
            wait_for_key([gateway], key["key"])
            proxy.cut()
            outcomes = in_parallel([functools.partial(ask, gateway, key["key"], n) for n in range(25)])
            assert all(o.status == 200 for o in outcomes)
            assert gateway.process is not None
            gateway.process.kill()  # SIGKILL: no shutdown, no flush
            gateway.process.wait(10)
        assert usage_rows(database, f"WHERE key_id = '{key['id']}'") == []
        proxy.restore()
        with gateway_process(config(sim, proxied, redis_url, journal)):
            pass  # start-up adopts the dead process's journal and replays it
    rows = usage_rows(database, f"WHERE key_id = '{key['id']}'")
    assert sorted(r["request_id"] for r in rows) == sorted(o.request_id for o in outcomes)
    segments = list(journal.rglob("usage-*.jsonl"))
    assert segments == [] and any(journal.iterdir()), "the journal folder was used, and is empty again"

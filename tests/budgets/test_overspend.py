"""The finding, end to end: 20 concurrent requests of ``"!" * 8000`` (8,003 tokens where the
4-characters estimate says ~2,000) with max_tokens 20 on a $0.03 budget spent $0.10. A gateway on
SQLite with its budgets in the process, and one with them in Redis, against the simulator."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from redis import Redis

from modelgate.simulator import SimConfig, SimulatorThread
from tests.services import upgrade
from tests.support import RunningGateway, gateway_in_thread, openai_sim_config, wait_until

MASTER = "mk-overspend"
BUDGET = 0.03



def ask(gateway: RunningGateway, key: str) -> int:
    return httpx.post(f"{gateway.v1}/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=30,
                      json={"model": "gpt-4o", "messages": [{"role": "user", "content": "!" * 8000}],
                            "max_tokens": 20}).status_code


@pytest.mark.parametrize("ledger", ["local", "redis"])
def test_concurrent_prompts_far_above_the_estimate_do_not_overspend(ledger: str, tmp_path: Path,
                                                                    request: pytest.FixtureRequest) -> None:
    redis_url = str(request.getfixturevalue("redis_url")) if ledger == "redis" else None
    database = tmp_path / "modelgate.db"
    url = f"sqlite:///{database}"
    installation = asyncio.run(upgrade(url))
    # Slow enough that the 20 requests are in flight together.
    with SimulatorThread(SimConfig.from_dict({"api_key": "sk-sim", "defaults": {"latency_ms": 300}})) as sim:
        config = openai_sim_config(sim.base_url, master_key=MASTER, database_url=url,
                                   journal_dir=str(tmp_path / "journal"), redis_url=redis_url)
        try:
            with gateway_in_thread(config) as gateway:
                created = httpx.post(f"{gateway.base_url}/admin/keys", headers={"authorization": f"Bearer {MASTER}"},
                                     json={"project": "p-" + secrets.token_hex(4), "budget": BUDGET}, timeout=10)
                assert created.status_code == 201, created.text
                key, key_id = created.json()["key"], created.json()["id"]
                with ThreadPoolExecutor(20) as pool:
                    statuses = list(pool.map(lambda _: ask(gateway, key), range(20)))

                def recorded() -> list[tuple[int, int, float]]:
                    with sqlite3.connect(database) as connection:
                        return connection.execute("SELECT input_tokens, output_tokens, price FROM usage "
                                                  "WHERE key_id = ? AND status = 200", (key_id,)).fetchall()

                def every_record() -> int:
                    with sqlite3.connect(database) as connection:
                        return int(connection.execute("SELECT count(*) FROM usage WHERE key_id = ?",
                                                      (key_id,)).fetchone()[0])

                wait_until(lambda: every_record() == 20, what="the 20 usage records")
                answered = recorded()
        finally:
            if redis_url is not None:
                client = Redis.from_url(redis_url)
                keys = list(client.scan_iter(match=f"modelgate:{installation}:*", count=500))
                if keys:
                    client.delete(*keys)
                client.close()
    # Each request reserves its worst case, ~$0.0203 (8,056 tokens of prompt at most, 20 of
    # answer, at gpt-4o's $2.50 and $10 per million): one fits the budget, and after it spent
    # $0.0202 the next does not.
    assert statuses.count(200) == 1 and statuses.count(429) == 19
    [(input_tokens, output_tokens, spent)] = answered
    assert input_tokens == 8003 and output_tokens <= 20
    assert spent == pytest.approx((8003 * 2.5 + output_tokens * 10) / 1e6)
    assert spent <= BUDGET

"""A gateway whose Redis goes away: requests wait out the outage once, then limits and budgets do
what their ``redis_outage`` says, tell the client which checks were skipped, and resume when a probe
finds Redis back. Redis is cut off through a TCP proxy: one that accepts and never answers, one
that refuses."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

from modelgate.simulator import SimulatorThread
from tests.services import upgrade
from tests.support import RunningGateway, gateway_in_thread, openai_sim_config, wait_until
from tests.tcp_proxy import TcpProxy

MASTER = "mk-outage"
HEADER = "x-modelgate-degraded"



@contextmanager
def gateway_behind(proxy: TcpProxy, sim: SimulatorThread, folder: Path, **settings: Any) -> Iterator[tuple[
        RunningGateway, str]]:
    """A gateway on a fresh SQLite database whose Redis is reached through ``proxy``; its Redis keys
    (namespaced by the database's installation id) are deleted afterwards."""
    url = f"sqlite:///{folder / 'modelgate.db'}"
    installation = asyncio.run(upgrade(url))
    config = openai_sim_config(sim.base_url, master_key=MASTER, database_url=url, journal_dir=str(folder / "journal"),
                               redis_url=f"redis://127.0.0.1:{proxy.port}/0", **settings)
    try:
        with gateway_in_thread(config) as gateway:
            yield gateway, installation
    finally:
        client = Redis.from_url("redis://127.0.0.1:6379/0")
        keys = list(client.scan_iter(match=f"modelgate:{installation}:*", count=500))
        if keys:
            client.delete(*keys)
        client.close()


def new_key(gateway: RunningGateway, **limits: Any) -> dict[str, Any]:
    response = httpx.post(f"{gateway.base_url}/admin/keys", headers={"authorization": f"Bearer {MASTER}"},
                          json={"project": "p-" + secrets.token_hex(4), **limits}, timeout=10)
    assert response.status_code == 201, response.text
    return dict(response.json())


def chat(gateway: RunningGateway, key: str, stream: bool = False) -> httpx.Response:
    return httpx.post(f"{gateway.v1}/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=30,
                      json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10,
                            "stream": stream})


def messages(gateway: RunningGateway, key: str) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/v1/messages", headers={"x-api-key": key}, timeout=30,
                      json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10})


def redis_state(gateway: RunningGateway) -> dict[str, Any]:
    report = httpx.get(f"{gateway.base_url}/health/deployments", headers={"authorization": f"Bearer {MASTER}"},
                       timeout=10).json()
    return dict(report["redis"])


def test_a_blackholed_redis_is_waited_on_once_then_limits_pass_marked_and_budgets_refuse(
        sim: SimulatorThread, tmp_path: Path, redis_url: str) -> None:
    with TcpProxy("127.0.0.1", 6379) as proxy, gateway_behind(proxy, sim, tmp_path) as (gateway, _):
        limited = new_key(gateway, rpm=1000)["key"]
        budgeted = new_key(gateway, budget=5)["key"]
        answered = chat(gateway, limited)
        assert answered.status_code == 200 and HEADER not in answered.headers
        assert chat(gateway, budgeted).status_code == 200
        healthy = redis_state(gateway)
        assert (healthy["state"], healthy["timeouts"]) == ("closed", 0)

        proxy.blackhole()
        first = chat(gateway, limited)  # waits out the timeout: Redis neither answers nor refuses
        assert first.status_code == 200 and first.headers[HEADER] == "limits"
        assert redis_state(gateway)["state"] == "open"
        # From here on nothing on the request path waits for Redis, however many probes go by.
        for _ in range(3):
            probes: int = redis_state(gateway)["probes"]
            wait_until(lambda: redis_state(gateway)["probes"] > probes, what="another probe")  # noqa: B023
            passed = chat(gateway, limited)
            assert passed.status_code == 200 and passed.headers[HEADER] == "limits"
            assert "x-ratelimit-limit-requests" not in passed.headers  # nothing was counted
            refused = chat(gateway, budgeted)
            assert refused.status_code == 503
            assert int(refused.headers["retry-after"]) >= 1
            error = refused.json()["error"]
            assert (error["type"], error["code"]) == ("server_error", "budgets_unavailable")
            assert "budgets.redis_outage: refuse" in error["message"]
        with httpx.stream("POST", f"{gateway.v1}/chat/completions", headers={"authorization": f"Bearer {limited}"},
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}],
                                "max_tokens": 10, "stream": True}, timeout=30) as streamed:
            assert streamed.status_code == 200 and streamed.headers[HEADER] == "limits"
            assert "[DONE]" in streamed.read().decode()
        anthropic = messages(gateway, budgeted)
        assert anthropic.status_code == 503 and anthropic.json()["error"]["type"] == "overloaded_error"
        outage = redis_state(gateway)
        assert outage["timeouts"] == 1, outage
        assert outage["failed_fast"] >= 7 and outage["error"]

        proxy.restore()
        wait_until(lambda: redis_state(gateway)["state"] == "closed", what="the probe finding Redis back")
        back = chat(gateway, limited)
        assert back.status_code == 200 and HEADER not in back.headers
        assert back.headers["x-ratelimit-limit-requests"] == "1000"
        assert chat(gateway, budgeted).status_code == 200
        assert redis_state(gateway)["opened"] == 1


def test_a_refusing_redis_refuses_limited_requests_and_lets_budgeted_ones_pass_as_configured(
        sim: SimulatorThread, tmp_path: Path, redis_url: str) -> None:
    with TcpProxy("127.0.0.1", 6379) as proxy, gateway_behind(
            proxy, sim, tmp_path, limits={"redis_outage": "refuse"}, budgets={"redis_outage": "allow"}) as (
            gateway, installation):
        limited = new_key(gateway, rpm=1000)["key"]
        budgeted = new_key(gateway, budget=5)
        account = f"modelgate:{installation}:budget:key:{budgeted['id']}:{datetime.now(UTC):%Y-%m}"
        client = Redis.from_url(redis_url)
        try:
            def settled() -> int:
                """The key's spend in Redis, once no reservation is left; 0 before."""
                spent = client.hget(account, "spent")
                return int(spent) if spent is not None and client.zcard(account + ":holds") == 0 else 0

            assert chat(gateway, budgeted["key"]).status_code == 200
            wait_until(settled, what="the first request settled")
            one = settled()  # the same prompt is answered alike: each request costs this

            proxy.cut()
            refused = chat(gateway, limited)
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "limits_unavailable"
            assert int(refused.headers["retry-after"]) >= 1
            passed = chat(gateway, budgeted["key"])
            assert passed.status_code == 200 and passed.headers[HEADER] == "budgets"
            assert redis_state(gateway)["timeouts"] == 0  # a refused connection is never waited on

            proxy.restore()
            wait_until(lambda: redis_state(gateway)["state"] == "closed", what="the probe finding Redis back")
            assert chat(gateway, limited).status_code == 200
            # What the unchecked request cost reached the budget's spend once Redis was back.
            wait_until(lambda: settled() == 2 * one, what="the unchecked request's cost reaching the spend")
        finally:
            client.close()

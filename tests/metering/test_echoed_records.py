"""End to end, on both databases: an upstream that echoes a client's NUL in its error costs no
record, and a gateway restarted on a poisoned journal starts and keeps what it can."""

from __future__ import annotations

import asyncio
import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import select

from modelgate.metering.journal import QUARANTINE
from modelgate.simulator import SimulatorThread
from modelgate.storage import Storage, UsageRecord
from modelgate.storage.tables import usage
from tests.support import gateway_in_thread, wait_until


async def _rows(database_url: str) -> dict[str, Any]:
    storage = await Storage.open(database_url)
    try:
        async with storage.db.read() as conn:
            return {row.request_id: row for row in (await conn.execute(select(usage))).all()}
    finally:
        await storage.close()


def rows(database_url: str) -> dict[str, Any]:
    return asyncio.run(_rows(database_url))


def installation(database_url: str) -> str:
    async def read() -> str:
        storage = await Storage.open(database_url)
        try:
            return await storage.installation_id()
        finally:
            await storage.close()
    return asyncio.run(read())


def config(sim: SimulatorThread, echoing_model: str, database_url: str, journal: Path) -> dict[str, Any]:
    return {
        "providers": {"openai": {"type": "openai", "base_url": f"{sim.base_url}/v1", "api_key": "sk-sim"}},
        "deployments": [{"name": "echoing", "provider": "openai", "model": echoing_model},
                        {"name": "gpt-4o", "provider": "openai", "model": "gpt-4o"}],
        "database_url": database_url, "journal_dir": str(journal),
    }


def chat(base_url: str, model: str, **extra: Any) -> httpx.Response:
    return httpx.post(f"{base_url}/v1/chat/completions", timeout=30, json={
        "model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, **extra})


def test_an_echoed_nul_costs_no_record_and_a_poisoned_journal_no_start(
        sim: SimulatorThread, migrated_database_url: str, tmp_path: Path) -> None:
    echoing = f"echo-{secrets.token_hex(4)}"
    set_fault = httpx.post(f"{sim.base_url}/sim/faults", json={"model": echoing, "fault": "echo=reasoning_effort"})
    assert set_fault.status_code == 200
    journal = tmp_path / "journal"
    settings = config(sim, echoing, migrated_database_url, journal)

    with gateway_in_thread(settings) as gateway:
        with ThreadPoolExecutor(8) as pool:
            # The echoing request among others, so that they share the recorder's batches.
            futures = [pool.submit(chat, gateway.base_url, "gpt-4o") for _ in range(10)]
            echoed = chat(gateway.base_url, "echoing", reasoning_effort="x\u0000y")
            futures += [pool.submit(chat, gateway.base_url, "gpt-4o") for _ in range(10)]
            answers = [future.result() for future in futures]
        assert echoed.status_code == 400
        # The upstream echoed it; the gateway relays upstream text without control characters.
        assert "'xy'" in echoed.json()["error"]["message"]
        assert [answer.status_code for answer in answers] == [200] * 20
        ids = {echoed.headers["x-request-id"], *(answer.headers["x-request-id"] for answer in answers)}
        wait_until(lambda: ids <= set(rows(migrated_database_url)), what="every record in the database")

    record = rows(migrated_database_url)[echoed.headers["x-request-id"]]
    assert record.status == 400
    assert "Invalid value for 'reasoning_effort': 'xy'" in record.error

    # A segment as a gateway that stored records raw left it: a NUL, a model that is a number, and
    # a line that is not a record. The next gateway on this journal starts and keeps the records.
    folder = journal / installation(migrated_database_url)
    poison: list[tuple[Any, str | None]] = [(echoing, "echo: 'x\x00y'"), (123, None)]
    raw = [UsageRecord(request_id=f"req_poison_{n}", created_at=record.created_at, project=None, key_id=None,
                       deployment="echoing", provider="openai", model=model, route="chat", status=400, error=error)
           for n, (model, error) in enumerate(poison)]
    (folder / "usage-4242-0badcafe-000001.jsonl").write_bytes(
        b"".join(orjson.dumps(r) + b"\n" for r in raw) + b"not a record\n")

    with gateway_in_thread(settings) as gateway:
        assert httpx.get(f"{gateway.base_url}/health").status_code == 200
        stored = rows(migrated_database_url)
        assert stored["req_poison_0"].error == "echo: 'xy'"
        assert stored["req_poison_1"].model == "123"
    [entry] = [json.loads(line) for line in (folder / QUARANTINE).read_text().splitlines()]
    assert entry["line"] == "not a record\n"

"""The services of stored state: the response store and the sealer, built at start-up."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, select

from modelgate.config import parse_settings
from modelgate.config.settings import Settings
from modelgate.pipeline.sealing import Sealer
from modelgate.server.services import build_services
from modelgate.storage import StoredResponse
from modelgate.storage.tables import gateway_secrets

SECRET = "configured-secret-key-of-40-characters!!"


def settings(database_url: str, tmp_path: Path, **extra: Any) -> Settings:
    return parse_settings({
        "database_url": database_url, "journal_dir": str(tmp_path / "journal"),
        "providers": {"up": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}},
        "deployments": [{"name": "chat", "provider": "up", "model": "gpt-4o"}], **extra}, {})


async def test_a_configured_secret_key_seals_and_none_is_kept_in_the_database(
        migrated_database_url: str, tmp_path: Path) -> None:
    services = await build_services(settings(migrated_database_url, tmp_path, secret_key=SECRET))
    try:
        token = services.sealer.seal({"text": "t"})
        assert Sealer.from_secret(SECRET).open(token) == {"text": "t"}
        async with services.storage.db.read() as conn:
            assert (await conn.execute(select(gateway_secrets.c.name))).all() == []
    finally:
        await services.storage.close()


async def test_without_a_secret_key_every_process_seals_with_the_one_kept_in_the_database(
        migrated_database_url: str, tmp_path: Path) -> None:
    first = await build_services(settings(migrated_database_url, tmp_path))
    second = await build_services(settings(migrated_database_url, tmp_path))
    try:
        token = first.sealer.seal({"text": "t"})
        assert second.sealer.open(token) == {"text": "t"}
        # A configured key wins over the one kept.
        configured = await build_services(settings(migrated_database_url, tmp_path, secret_key=SECRET))
        try:
            assert configured.sealer.open(token) is None
        finally:
            await configured.storage.close()
    finally:
        await first.storage.close()
        await second.storage.close()


async def test_stored_responses_are_written_by_the_time_the_services_stop_and_startup_reads_none(
        migrated_database_url: str, tmp_path: Path) -> None:
    services = await build_services(settings(migrated_database_url, tmp_path, responses={"retention_days": 7}))
    assert services.responses.retention_s == 7 * 86_400
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "responses" in statement:
            statements.append(statement)

    event.listen(services.storage.db.engine.sync_engine, "before_cursor_execute", record)
    await services.start()
    assert statements == []  # start-up asks nothing of stored responses
    services.responses.put_nowait(StoredResponse(
        id="resp_1", project=None, kind="response", created_at=int(time.time()), previous_id=None,
        body=b"{}", input_items=b"[]"))
    await services.stop()
    assert any(s.lstrip().upper().startswith("INSERT") for s in statements)
    reopened = await build_services(settings(migrated_database_url, tmp_path))
    try:
        found = await reopened.responses.get("resp_1", None)
        assert found is not None and found.body == b"{}"
    finally:
        await reopened.storage.close()

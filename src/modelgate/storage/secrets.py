"""Secrets every process of one database shares, made by the first process that needs one.

The sealing key (``pipeline/sealing.py``) lives here when the config sets no ``secret_key``: every
gateway process on the database must seal and open with the same key, or a token sealed by one
would not open on another. Processes that start together on a new database each make a key and
insert it only where none is stored yet, then read back the one stored: the first insert wins and
they all end with it.

Anyone who can read this table can open and forge sealed tokens; set ``secret_key`` in the config
to keep the key out of the database.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from modelgate.storage.engine import Database
from modelgate.storage.errors import StorageError
from modelgate.storage.tables import gateway_secrets

SEALING_KEY = "sealing_key"


class SecretRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def shared(self, name: str) -> str:
        """The secret ``name``: the stored one, or a new random one (43 URL-safe characters,
        256 bits) stored if no other process stored one first."""
        found = await self._read(name)
        if found is not None:
            return found
        insert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
        statement = insert(gateway_secrets).values(
            name=name, value=secrets.token_urlsafe(32), created_at=datetime.now(UTC),
        ).on_conflict_do_nothing(index_elements=[gateway_secrets.c.name])
        async with self.db.write() as conn:
            await conn.execute(statement)
        found = await self._read(name)
        if found is None:
            raise StorageError(f"the secret {name!r} was stored and is gone again: was gateway_secrets edited?")
        return found

    async def _read(self, name: str) -> str | None:
        async with self.db.read() as conn:
            found = (await conn.execute(select(gateway_secrets.c.value)
                                        .where(gateway_secrets.c.name == name))).scalar()
        return str(found) if found is not None else None

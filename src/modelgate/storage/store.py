"""``Storage``: the gateway's database, opened once at start-up and shared by every part.

Nothing on the request path waits for it: keys are read into memory at start-up and refreshed in
the background (auth/keysync.py), and usage records are written in batches off the request path
(the metering stage).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import insert, inspect, select
from sqlalchemy.ext.asyncio import AsyncConnection

from modelgate.storage.blocklists import BlocklistRepository
from modelgate.storage.cache_clears import CacheClearRepository
from modelgate.storage.deployments import DeploymentRepository
from modelgate.storage.engine import Database, describe
from modelgate.storage.errors import SchemaOutdated
from modelgate.storage.evals import EvalRepository
from modelgate.storage.keys import KeyRepository
from modelgate.storage.migrations import MIGRATIONS
from modelgate.storage.prices import PriceKey, PriceRepository
from modelgate.storage.records import PriceEntry, UsageFilters, UsageRecord, UsageRow
from modelgate.storage.replica_hours import ReplicaHoursRepository
from modelgate.storage.request_log import RequestLogRepository
from modelgate.storage.secrets import SecretRepository
from modelgate.storage.tables import counters, schema_migrations
from modelgate.storage.usage import Scope, UsageRepository

log = logging.getLogger("modelgate.storage")
# Serializes `modelgate db upgrade` and start-ups across processes on PostgreSQL.
_PG_MIGRATION_LOCK = 0x6D67_0001


class Storage:
    """The database of a gateway: schema, projects and keys, usage, prices, shared secrets, the
    replica hours of local models, the request log, evaluation runs."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.url = db.url
        self.dialect = db.dialect  # "sqlite" | "postgresql"
        self.keys = KeyRepository(db)
        self.deployments = DeploymentRepository(db)
        self.blocklists = BlocklistRepository(db)
        self.cache_clears = CacheClearRepository(db)
        self.prices = PriceRepository(db)
        self.usage = UsageRepository(db)
        self.secrets = SecretRepository(db)
        self.replica_hours = ReplicaHoursRepository(db)
        self.request_log = RequestLogRepository(db)
        self.evals = EvalRepository(db)

    @classmethod
    async def open(cls, database_url: str) -> Storage:
        """Set up the engine for ``database_url`` (``sqlite:///PATH`` or ``postgresql://...``).
        Nothing connects yet; the first query does."""
        return cls(Database(database_url))

    async def close(self) -> None:
        await self.db.close()

    def __repr__(self) -> str:
        return f"Storage({describe(self.url)})"

    # -- schema ------------------------------------------------------------------------------

    async def applied_migrations(self) -> list[str]:
        async with self.db.read() as conn:
            return await _applied(conn)

    async def pending_migrations(self) -> list[str]:
        applied = set(await self.applied_migrations())
        return [name for name, _ in MIGRATIONS if name not in applied]

    async def check_schema(self) -> None:
        """Raise ``SchemaOutdated`` naming `modelgate db upgrade` if migrations are pending."""
        pending = await self.pending_migrations()
        if pending:
            raise SchemaOutdated(
                f"the database {describe(self.url)} needs {len(pending)} migration(s) "
                f"({', '.join(pending)}): run `modelgate db upgrade --config FILE` and start again")
        applied = await self.applied_migrations()
        known = {name for name, _ in MIGRATIONS}
        newer = [name for name in applied if name not in known]
        if newer:
            raise SchemaOutdated(f"the database {describe(self.url)} has migrations this modelgate does not "
                                 f"know ({', '.join(newer)}): it was upgraded by a newer version; run that one")

    async def upgrade(self) -> list[str]:
        """Apply the pending migrations in order, in one transaction (on PostgreSQL under an
        advisory lock, on SQLite under its write lock, so concurrent upgrades queue); their names."""
        done: list[str] = []
        async with self.db.write() as conn:
            if self.dialect == "postgresql":
                await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
            applied = set(await _applied(conn, create=True))
            for name, migration in MIGRATIONS:
                if name in applied:
                    continue
                await conn.run_sync(migration)
                await conn.execute(insert(schema_migrations).values(name=name, applied_at=datetime.now(UTC)))
                done.append(name)
                log.debug("applied migration %s to %s", name, describe(self.url))
        return done

    async def prepare(self) -> list[str]:
        """What start-up does: on SQLite (embedded, one machine) apply pending migrations and
        return them; on PostgreSQL refuse to run on an outdated schema (``SchemaOutdated``)."""
        if self.dialect == "sqlite":
            applied = await self.upgrade()
            if applied:
                log.info("SQLite database %s was new or older than this modelgate: applied migrations %s "
                         "at start-up", describe(self.url), ", ".join(applied))
            await self.check_schema()
            return applied
        await self.check_schema()
        return []

    @classmethod
    async def open_prepared(cls, database_url: str) -> Storage:
        """``open`` and ``prepare``, as the gateway and the CLI start: closed again on failure."""
        storage = await cls.open(database_url)
        try:
            await storage.prepare()
        except BaseException:
            await storage.close()
            raise
        return storage

    async def installation_id(self) -> str:
        """A random id made by the first migration: the same for every process on this database."""
        async with self.db.read() as conn:
            query = select(counters.c.text).where(counters.c.name == "installation")
            return str((await conn.execute(query)).scalar_one())

    # -- usage -------------------------------------------------------------------------------

    async def write_usage(self, records: Sequence[UsageRecord]) -> int:
        """Insert the records in one transaction, skipping request ids already stored; the
        number inserted. Raises ``StorageUnavailable`` when the database cannot be reached."""
        return await self.usage.write(records)

    async def spend(self, scope: Scope, id: str, since: datetime) -> float:
        """USD charged (the sum of ``price``) to a key or project since ``since``."""
        return await self.usage.spend(scope, id, since)

    async def spend_all(self, scope: Scope, since: datetime) -> dict[str, float]:
        """``spend`` of every key or every project with usage since ``since``."""
        return await self.usage.spend_all(scope, since)

    async def query_usage(self, filters: UsageFilters, group_by: Sequence[str] = ()) -> list[UsageRow]:
        """Totals of the matching records, one row per group (one row in all without grouping,
        none if nothing matches). ``group_by`` names are from ``records.GROUP_BY``."""
        return await self.usage.query(filters, group_by)

    async def current_prices(self) -> dict[PriceKey, PriceEntry]:
        return await self.prices.current()


async def _applied(conn: AsyncConnection, create: bool = False) -> list[str]:
    """The applied migrations; on a new database none (and with ``create``, the table for them)."""
    exists = await conn.run_sync(lambda sync_conn: inspect(sync_conn).has_table("schema_migrations"))
    if not exists:
        if create:
            await conn.run_sync(lambda sync_conn: schema_migrations.create(sync_conn))
        return []
    rows = await conn.execute(select(schema_migrations.c.name).order_by(schema_migrations.c.name))
    return [str(name) for name in rows.scalars()]

"""Clears of the response cache, for the gateway processes that keep answers in their own memory.

With Redis the answers are shared and one clear drops them for everyone. Without it each process
has its own store: a clear is stored here under the next ``cache_clear_revision``, and every
process applies the clears after the revision it last saw (``server/cache.py`` follows them as
keys and deployments are followed). Rows older than ``KEPT_S`` are deleted as new ones come: a
process that has not looked for that long has restarted, with an empty store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update

from modelgate.storage.engine import Database
from modelgate.storage.tables import cache_clears, counters

REVISION = "cache_clear_revision"
KEPT_S = 86_400


@dataclass(frozen=True, slots=True)
class CacheClears:
    revision: int  # complete up to this revision
    clears: list[tuple[str | None, str | None]]  # (deployment, project); None: every one


class CacheClearRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, deployment: str | None, project: str | None) -> int:
        """Store a clear; its revision."""
        now = datetime.now(UTC)
        async with self.db.write() as conn:
            revision = int((await conn.execute(
                update(counters).where(counters.c.name == REVISION).values(value=counters.c.value + 1)
                .returning(counters.c.value))).scalar_one())
            await conn.execute(cache_clears.insert().values(revision=revision, deployment=deployment,
                                                            project=project, created_at=now))
            await conn.execute(delete(cache_clears).where(cache_clears.c.created_at < now - timedelta(seconds=KEPT_S)))
        return revision

    async def current(self) -> int:
        async with self.db.read() as conn:
            return int((await conn.execute(select(counters.c.value).where(counters.c.name == REVISION))).scalar_one())

    async def changes_since(self, revision: int) -> CacheClears | None:
        """The clears after ``revision``, oldest first; None if none."""
        async with self.db.read() as conn:
            current = int((await conn.execute(
                select(counters.c.value).where(counters.c.name == REVISION))).scalar_one())
            if current == revision:
                return None
            rows = (await conn.execute(select(cache_clears.c.deployment, cache_clears.c.project)
                                       .where(cache_clears.c.revision > revision)
                                       .order_by(cache_clears.c.revision))).all()
        return CacheClears(revision=current, clears=[(row[0], row[1]) for row in rows])

"""The versioned price table: what each (deployment, provider, model) costs and is charged.

Prices come from the deployments (catalog facts are the provider's cost; a deployment's ``price:``
is what the customer pays). At start-up the gateway writes a new row for every target whose prices
differ from the newest stored row, and so does a deployment made or changed through the admin API
when it is stored, so the table keeps every price that was ever in force, each with the time it
took effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import RowMapping, select

from modelgate.config.settings import DeploymentSettings, Settings
from modelgate.storage.engine import Database
from modelgate.storage.records import PRICE_FIELDS, PriceEntry, price_values
from modelgate.storage.tables import counters, prices

PriceKey = tuple[str, str, str]  # (deployment, provider, model)


def prices_from_settings(settings: Settings) -> list[PriceEntry]:
    """One entry per deployment target. A customer price the deployment does not state is the
    provider's cost of the same kind of token."""
    return [entry for deployment in settings.deployments.values() for entry in deployment_prices(deployment)]


def deployment_prices(deployment: DeploymentSettings) -> list[PriceEntry]:
    """The entries of one deployment's targets, its experiment's target among them, so that a
    treatment's or a shadow copy's record is priced as its own target (see ``prices_from_settings``)."""
    entries = []
    price = deployment.price
    experiment = deployment.experiment
    targets = [*deployment.targets, *([experiment.target] if experiment is not None else [])]
    for target in targets:
        facts = target.facts
        entries.append(PriceEntry(
            deployment=deployment.name, provider=target.provider, model=target.model,
            input_cost=facts.input_price, output_cost=facts.output_price,
            cached_input_cost=facts.cached_input_price, cache_write_cost=facts.cache_write_price,
            input_price=_first(price.input if price else None, facts.input_price),
            output_price=_first(price.output if price else None, facts.output_price),
            cached_input_price=_first(price.cached_input if price else None, facts.cached_input_price),
            cache_write_price=_first(price.cache_write if price else None, facts.cache_write_price),
        ))
    return entries


def _first(a: float | None, b: float | None) -> float | None:
    return a if a is not None else b


class PriceRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def current(self) -> dict[PriceKey, PriceEntry]:
        """The newest stored entry of every target."""
        return {_key(entry): entry for entry in await self.history()}

    async def history(self, deployment: str | None = None) -> list[PriceEntry]:
        """Every stored entry, oldest first."""
        query = select(prices).order_by(prices.c.valid_from, prices.c.id)
        if deployment is not None:
            query = query.where(prices.c.deployment == deployment)
        async with self.db.read() as conn:
            return [_entry(row) for row in (await conn.execute(query)).mappings()]

    async def sync(self, entries: Sequence[PriceEntry]) -> list[PriceEntry]:
        """Store each entry whose prices differ from its target's newest stored entry; the
        entries written, with their ``valid_from``."""
        now = datetime.now(UTC)
        async with self.db.write() as conn:
            # Two processes starting together: the second waits here and then finds the rows of
            # the first (a no-op on SQLite, whose write transactions are serialized anyway).
            await conn.execute(select(counters.c.value).where(counters.c.name == "installation").with_for_update())
            # The newest prices of each target, as plain tuples: read at every start-up, for
            # every target ever priced.
            columns = [prices.c.deployment, prices.c.provider, prices.c.model, *(prices.c[n] for n in PRICE_FIELDS)]
            found = await conn.execute(select(*columns).order_by(prices.c.valid_from, prices.c.id))
            current = {tuple(row[:3]): tuple(row[3:]) for row in found}
            written = [replace(entry, valid_from=now) for entry in entries
                       if current.get(_key(entry)) != price_values(entry)]
            if written:
                await conn.execute(prices.insert(), [_row(entry) for entry in written])
        return written


def _key(entry: PriceEntry) -> PriceKey:
    return (entry.deployment, entry.provider, entry.model)


def _row(entry: PriceEntry) -> dict[str, Any]:
    return {"deployment": entry.deployment, "provider": entry.provider, "model": entry.model,
            "valid_from": entry.valid_from, **{name: getattr(entry, name) for name in PRICE_FIELDS}}


def _entry(row: RowMapping) -> PriceEntry:
    return PriceEntry(deployment=row["deployment"], provider=row["provider"], model=row["model"],
                      valid_from=row["valid_from"], **{name: row[name] for name in PRICE_FIELDS})

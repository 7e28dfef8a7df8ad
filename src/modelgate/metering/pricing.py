"""Prices on the request path: what each (deployment, provider, model) costs and is charged.

The rates are the entries of the versioned price table (``storage.prices``: catalog prices are
the provider's cost, a deployment's ``price:`` what the customer pays), the same entries storage
writes at start-up with the time they took effect; so the prices behind every record are known.

Money on the request path is integer nano-dollars (1e-9 USD): sums of many small costs neither
drift nor round to zero.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from modelgate.config.settings import DeploymentSettings, Settings
from modelgate.schema.events import Usage
from modelgate.storage.prices import prices_from_settings
from modelgate.storage.records import PriceEntry, price_values

log = logging.getLogger("modelgate.metering")

NANO = 1_000_000_000  # nano-dollars per USD
# Output reserved for a request that sets no max_tokens: enough for most answers without making
# every request of a model with a 128k output window look unaffordable. max_tokens bounds it.
DEFAULT_OUTPUT_RESERVE = 4096


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per million tokens of each kind."""

    input: float = 0.0
    output: float = 0.0
    cached_input: float = 0.0
    cache_write: float = 0.0

    @classmethod
    def of(cls, input: float | None, output: float | None, cached_input: float | None,
           cache_write: float | None) -> Rates:
        plain = input or 0.0
        # Without a rate of their own, cached and cache-write tokens cost what plain input does.
        return cls(input=plain, output=output or 0.0,
                   cached_input=cached_input if cached_input is not None else plain,
                   cache_write=cache_write if cache_write is not None else plain)

    def nanos(self, usage: Usage) -> int:
        """The cost of ``usage`` at these rates, in nano-dollars. Input tokens include cached ones."""
        plain = max(0, usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens)
        # Per million tokens: a token at rate r costs r * 1000 nano-dollars.
        return round(1000 * (plain * self.input + usage.cached_input_tokens * self.cached_input
                             + usage.cache_write_tokens * self.cache_write + usage.output_tokens * self.output))


@dataclass(frozen=True, slots=True)
class TargetPrices:
    cost: Rates  # what the provider charges
    price: Rates  # what the customer is charged


UNKNOWN = TargetPrices(Rates(), Rates())
NO_CEILING: tuple[Rates, int | None] = (Rates(), None)


def target_prices(entry: PriceEntry) -> TargetPrices:
    return TargetPrices(
        cost=Rates.of(entry.input_cost, entry.output_cost, entry.cached_input_cost, entry.cache_write_cost),
        price=Rates.of(entry.input_price, entry.output_price, entry.cached_input_price, entry.cache_write_price))


class PriceBook:
    """Prices by (deployment, provider, model), and what a request may cost at most."""

    def __init__(self, entries: Iterable[PriceEntry], deployments: Iterable[DeploymentSettings]) -> None:
        self.reload(entries, deployments)

    def reload(self, entries: Iterable[PriceEntry], deployments: Iterable[DeploymentSettings]) -> None:
        """Take these prices and deployments in place of those it had (deployments changed at run time)."""
        self._exact: dict[tuple[str, str, str], TargetPrices] = {}
        self._anywhere: dict[tuple[str, str], TargetPrices] = {}
        # Targets mostly share a few price lists: one TargetPrices per distinct list.
        distinct: dict[tuple[float | None, ...], TargetPrices] = {}
        for entry in entries:
            values = price_values(entry)
            prices = distinct.get(values)
            if prices is None:
                prices = distinct[values] = target_prices(entry)
            self._exact[(entry.deployment, entry.provider, entry.model)] = prices
            self._anywhere.setdefault((entry.provider, entry.model), prices)
        self._deployments = {d.name: d for d in deployments}
        # Made for a deployment when first asked for, so that reloading costs the same at any
        # number of deployments: the deployments whose targets may answer for it (itself, then
        # its fallbacks), and its ceiling.
        self._groups: dict[str, list[DeploymentSettings]] = {}
        self._ceilings: dict[str, tuple[Rates, int | None]] = {}
        self._found: dict[tuple[str, str, str | None], TargetPrices] = {}

    def _group(self, name: str) -> list[DeploymentSettings]:
        group = self._groups.get(name)
        if group is None:
            deployment = self._deployments.get(name)
            if deployment is None:
                return []
            by_name = self._deployments
            group = self._groups[name] = [deployment] + [by_name[f] for f in deployment.fallbacks if f in by_name]
        return group

    def _ceiling_of(self, name: str) -> tuple[Rates, int | None]:
        """The dearest customer rates of the targets that may answer ``name``, and their largest output."""
        ceiling = self._ceilings.get(name)
        if ceiling is None:
            group = self._group(name)
            if not group:
                return NO_CEILING
            targets = [self._exact.get((d.name, t.provider, t.model), UNKNOWN) for d in group for t in d.targets]
            outputs = [t.facts.max_output_tokens for d in group for t in d.targets if t.facts.max_output_tokens]
            ceiling = self._ceilings[name] = (
                Rates(input=max((t.price.input for t in targets), default=0.0),
                      output=max((t.price.output for t in targets), default=0.0)),
                max(outputs) if outputs else None)
        return ceiling

    @classmethod
    def from_settings(cls, settings: Settings) -> PriceBook:
        return cls(prices_from_settings(settings), settings.deployments.values())

    def lookup(self, deployment: str, provider: str | None, model: str | None) -> TargetPrices:
        """The prices of the target that answered a call to ``deployment`` (or to a fallback).

        ``model`` is what the upstream said it is, which may be a dated name of the configured
        one (``gpt-4o-2024-08-06`` for ``gpt-4o``). Looked up once per distinct answer, then cached.
        """
        if provider is None:
            return UNKNOWN
        key = (deployment, provider, model)
        found = self._found.get(key)
        if found is None:
            found = self._found[key] = self._resolve(deployment, provider, model or "")
        return found

    def _resolve(self, deployment: str, provider: str, model: str) -> TargetPrices:
        groups = self._group(deployment)
        for group in groups:
            found = self._exact.get((group.name, provider, model))
            if found is not None:
                return found
        candidates = [(group.name, t.model) for group in groups for t in group.targets if t.provider == provider]
        if len(candidates) > 1:
            # The configured id that the upstream's name extends: the longest, so that
            # gpt-4o-mini-2024-07-18 is gpt-4o-mini, not gpt-4o.
            candidates = sorted((c for c in candidates if model.startswith(c[1] + "-")), key=lambda c: -len(c[1]))
        if candidates:
            return self._exact.get((candidates[0][0], provider, candidates[0][1]), UNKNOWN)
        found = self._anywhere.get((provider, model))
        if found is not None:
            return found
        log.warning("no price for model %r of provider %r (deployment %r): its usage is recorded at cost 0",
                    model, provider, deployment)
        return UNKNOWN

    def output_reserve(self, deployment: DeploymentSettings, max_tokens: int | None) -> int:
        """The output tokens a chat request may produce: its max_tokens (or a default), capped at
        the largest output the deployment's models can give."""
        output = max_tokens or DEFAULT_OUTPUT_RESERVE
        max_output = self._ceiling_of(deployment.name)[1]
        return min(output, max_output) if max_output is not None else output

    def ceiling(self, deployment: DeploymentSettings) -> tuple[Rates, int | None]:
        """The dearest customer rates among the targets that may answer ``deployment`` (itself and
        its fallbacks), and the largest output any of them may give (None: not known)."""
        return self._ceiling_of(deployment.name)

    def reserve_nanos(self, deployment: DeploymentSettings, input_tokens: int, output_tokens: int) -> int:
        """The most a request may cost the customer, at the dearest of the deployment's targets."""
        rates = self._ceiling_of(deployment.name)[0]
        return rates.nanos(Usage(input_tokens=input_tokens, output_tokens=output_tokens))


def cache_hit_nanos(deployment: DeploymentSettings, usage: Usage) -> int:
    """The customer price of an answer from the response cache: the deployment's
    ``price.cache_hit`` (USD per million tokens, default 0) on its input and output tokens together.
    (The price table versions what providers charge; a hit's price is the deployment's own.)"""
    price = deployment.price
    rate = price.cache_hit if price is not None else 0.0
    return round(rate * 1000 * (usage.input_tokens + usage.output_tokens)) if rate > 0 else 0

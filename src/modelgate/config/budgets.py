"""The ``budgets:`` section: what budgets do while Redis, where the spend is kept, is unreachable."""

from __future__ import annotations

from dataclasses import dataclass

from modelgate.config.limits import OnRedisOutage


@dataclass(slots=True, kw_only=True)
class BudgetsSettings:
    """Budgets (budgets/); the amounts themselves are set per key and project."""

    # While Redis is unreachable: a budget is a promise about money, and nothing bounds what
    # requests let through unchecked would spend during an outage of unknown length, so requests
    # with a budget are refused (503, Retry-After) until Redis answers; "allow" lets them pass,
    # marked with a header, their cost settled into the spend once Redis is back.
    redis_outage: OnRedisOutage = "refuse"

"""The order in which a group's targets are tried, one function per ``strategy:``.

Each function gets the targets that may take the request now (breaker allows, prompt fits) and
returns them best first; the router tries them in that order until one answers. ``max_share``
then moves the providers that are at their share to the end: they still answer when everything
else fails, since serving beats a share.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from modelgate.routing.group import Group, Target

DEFAULT_OUTPUT_TOKENS = 512  # the output assumed for the cost strategy when max_tokens is not set


def weighted(targets: list[Target], rng: random.Random) -> list[Target]:
    """Weighted random order: the first is drawn by weight, then the next from the rest, ..."""
    pool = list(targets)
    ordered: list[Target] = []
    while len(pool) > 1:
        point = rng.random() * sum(t.weight for t in pool)
        index = len(pool) - 1  # where float rounding leaves ``point`` past the end
        for i, target in enumerate(pool):
            point -= target.weight
            if point < 0:
                index = i
                break
        ordered.append(pool.pop(index))
    return ordered + pool


def priority(targets: list[Target], rng: random.Random) -> list[Target]:
    """The order of the config: the first healthy target answers."""
    return list(targets)


def latency(targets: list[Target], rng: random.Random) -> list[Target]:
    """Lowest recent time to first token first; a target with no figure yet goes first to get one."""
    return sorted(targets, key=lambda t: t.health.ttft or 0.0)


def least_busy(targets: list[Target], rng: random.Random) -> list[Target]:
    """Fewest attempts in flight first; ties in random order so equal targets share the load."""
    shuffled = list(targets)
    rng.shuffle(shuffled)
    return sorted(shuffled, key=lambda t: t.health.in_flight)


def by_cost(targets: list[Target], input_tokens: int, output_tokens: int | None) -> list[Target]:
    """Cheapest first by catalog price for the request's estimated tokens; unpriced ones last."""
    output = output_tokens or DEFAULT_OUTPUT_TOKENS

    def cost(target: Target) -> float:
        facts = target.facts
        if facts.input_price is None:
            return float("inf")
        return input_tokens * facts.input_price + output * (facts.output_price or 0.0)

    return sorted(targets, key=cost)


ORDERS: dict[str, Callable[[list[Target], random.Random], list[Target]]] = {
    "weighted": weighted,
    "priority": priority,
    "latency": latency,
    "least-busy": least_busy,
}


def order_targets(group: Group, targets: list[Target], rng: random.Random, now: float,
                  input_tokens: Callable[[], int], output_tokens: int | None) -> list[Target]:
    """``targets`` best first by the group's strategy, then its max_share."""
    if len(targets) > 1:
        if group.strategy in ("cost", "quality-cost"):
            # quality-cost: cheapest first, then reordered by its evidence where that is loaded (quality.py).
            targets = by_cost(targets, input_tokens(), output_tokens)
        else:
            targets = ORDERS[group.strategy](targets, rng)
    if group.traffic is not None:
        within = [t for t in targets if not group.over_share(t.provider.name, now)]
        if len(within) < len(targets):
            targets = within + [t for t in targets if t not in within]
    return targets

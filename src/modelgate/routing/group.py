"""A deployment resolved for routing: its targets bound to provider objects and their health.

Built once at start-up from ``DeploymentSettings``, so the request path does no lookups by name
beyond finding the group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelgate.catalog.facts import ModelFacts
from modelgate.config.settings import DeploymentSettings, TargetSettings
from modelgate.providers.base import Provider, UpstreamCall
from modelgate.routing.health import Health, TargetHealth
from modelgate.routing.window import SlidingCounts

SHARE_SPAN_S = 60.0  # max_share holds over this sliding window of the group's traffic


def upstream_call(deployment: DeploymentSettings, target: TargetSettings) -> UpstreamCall:
    """What an attempt at ``target`` of ``deployment`` tells its provider."""
    return UpstreamCall(model=target.model, timeout=deployment.timeout, max_duration=deployment.max_duration,
                        facts=target.facts, params=deployment.params, api=target.api, engine=target.local)


@dataclass(slots=True, eq=False)
class Target:
    provider: Provider
    model: str
    weight: float
    facts: ModelFacts
    upstream: UpstreamCall  # shared by every attempt; providers only read it
    health: TargetHealth
    deployment: str | None = None  # the deployment it was given as ({deployment: NAME}), evaluations' name for it

    @property
    def label(self) -> str:
        return f"{self.provider.name}/{self.model}"


class Group:
    """One deployment's targets and routing settings."""

    __slots__ = ("fallbacks", "max_share", "name", "quality", "retries", "strategy", "targets", "timeout", "traffic")

    def __init__(self, deployment: DeploymentSettings, providers: Mapping[str, Provider], health: Health) -> None:
        self.name = deployment.name
        self.strategy = deployment.strategy
        self.fallbacks = list(deployment.fallbacks)
        self.timeout = deployment.timeout
        self.retries = deployment.retries
        self.max_share = dict(deployment.max_share)
        # Attempts sent to each provider, for max_share; None when the group sets no share.
        self.traffic = SlidingCounts(SHARE_SPAN_S) if self.max_share else None
        self.targets = [
            Target(provider=providers[t.provider], model=t.model, weight=t.weight, facts=t.facts,
                   upstream=upstream_call(deployment, t),
                   health=health.target(t.provider, t.model), deployment=t.deployment)
            for t in deployment.targets
        ]
        # strategy quality-cost: what its evidence says of each target (routing/quality.py), once loaded.
        self.quality: Any = None

    def over_share(self, provider: str, now: float) -> bool:
        """Whether one more attempt to ``provider`` would take it past its max_share."""
        cap = self.max_share.get(provider)
        if cap is None or self.traffic is None:
            return False
        counts = self.traffic.counts(now)
        total = sum(counts.values())
        return (counts.get(provider, 0) + 1) > cap * (total + 1)

"""A deployment's experiment as the router sees it: which arm a call is in, and the one-target group
of the experiment's target.

A deployment with ``experiment:`` (config/deployments.py ``ExperimentSettings``) sends ``share`` of
its requests to a second target. The experiment stage (server/experiments.py) draws each call's
arm and puts it on the call (``call.experiment``, an ``Assignment``); the router then answers a
``treatment`` call from the experiment's target first, and falls back to the deployment's own
targets if that fails, and a ``shadow`` call (a copy, whose answer no client sees) from the
experiment's target alone. A ``control`` call is routed as any other.

    x-modelgate-experiment: control | treatment      which arm answered (split experiments)
    x-modelgate-experiment-fallback: ...             the treatment failed: why (control answered)
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace

from modelgate.config.settings import DeploymentSettings
from modelgate.providers.base import Provider
from modelgate.routing.group import Group
from modelgate.routing.health import Health
from modelgate.schema.errors import GatewayError

CONTROL = "control"
TREATMENT = "treatment"
SHADOW = "shadow"
HEADER = "x-modelgate-experiment"
FALLBACK_HEADER = "x-modelgate-experiment-fallback"


@dataclass(slots=True)
class Assignment:
    """A call's arm of its deployment's experiment, and what became of it."""

    arm: str  # control | treatment | shadow
    sampled: bool = False  # its answer is kept in the experiment's evaluation run
    item: int = 0  # its row's item number there (a shadow and its main call share one)
    fallback: str | None = None  # the treatment failed and the deployment's targets answered: why
    answered_by: str | None = None  # the target that answered: its deployment's name, else provider/model

    def failed(self, error: GatewayError, headers: dict[str, str], label: str) -> None:
        """The treatment's target failed: the call goes on as control, and says so."""
        code = error.code or type(error).__name__
        self.fallback = f"the experiment's target {label} failed ({error.status} {code}: {error.message[:160]})"
        self.arm = CONTROL
        headers[HEADER] = CONTROL
        headers[FALLBACK_HEADER] = "".join(c if " " <= c <= "~" else "?" for c in self.fallback[:256])


def draw(share: float, shadow: bool, rng: random.Random) -> Assignment:
    """A new call's arm. Split: ``share`` of the calls are treatment, and as many more (at most the
    rest) are control calls sampled for comparison. Shadow: ``share`` of the calls are copied;
    those are sampled (their main answer beside the copy's)."""
    drawn = rng.random()
    if shadow:
        return Assignment(CONTROL, sampled=drawn < share)
    if drawn < share:
        return Assignment(TREATMENT, sampled=True)
    return Assignment(CONTROL, sampled=drawn < share + min(share, 1 - share))


def experiment_groups(deployments: Mapping[str, DeploymentSettings], providers: Mapping[str, Provider],
                      health: Health) -> dict[str, Group]:
    """The group of each deployment's experiment target, by the deployment's name: its one target,
    tried once, no fallbacks; its timeouts and params the deployment's."""
    return {name: experiment_group(deployment, providers, health) for name, deployment in deployments.items()
            if deployment.experiment is not None}


def experiment_group(deployment: DeploymentSettings, providers: Mapping[str, Provider], health: Health) -> Group:
    assert deployment.experiment is not None
    trial = replace(deployment, targets=[deployment.experiment.target], strategy="weighted", fallbacks=[],
                    retries=0, max_share={}, experiment=None)
    return Group(trial, providers, health)

"""A deployment's deadlines: ``timeout`` to the upstream's headers, ``max_duration`` for the whole answer."""

from __future__ import annotations

from typing import Any

import pytest

from modelgate.config import ConfigError, parse_settings
from modelgate.providers.base import MAX_DURATION_S
from modelgate.routing.group import Group
from modelgate.routing.health import Health


def settings(**deployment: Any) -> Any:
    return parse_settings({"providers": {"p": {"type": "openai"}},
                           "deployments": [{"name": "d", "provider": "p", "model": "m", **deployment}]}, {})


def test_max_duration_defaults_to_a_generous_bound_and_reaches_every_upstream_call() -> None:
    assert settings().deployments["d"].max_duration == MAX_DURATION_S == 600.0
    deployment = settings(timeout=5, max_duration=90).deployments["d"]
    assert (deployment.timeout, deployment.max_duration) == (5.0, 90.0)
    group = Group(deployment, {"p": object()}, Health())  # type: ignore[dict-item]
    assert (group.targets[0].upstream.timeout, group.targets[0].upstream.max_duration) == (5.0, 90.0)


@pytest.mark.parametrize(("keys", "problem"), [
    ({"max_duration": 0}, "deployments.d.max_duration: must be a positive number of seconds"),
    ({"max_duration": float("nan")}, "deployments.d.max_duration: must be a positive number of seconds"),
    ({"timeout": float("nan")}, "deployments.d.timeout: must be a positive number of seconds"),
    ({"max_duration": "long"}, "deployments.d.max_duration: expected seconds as a number"),
    ({"timeout": 30, "max_duration": 10}, "deployments.d.max_duration: must be at least the timeout (30s)"),
])
def test_deadlines_that_cannot_hold_are_refused(keys: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(**keys)
    assert problem in str(caught.value)

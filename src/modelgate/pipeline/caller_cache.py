"""What a stage works out once per caller and deployment, then looks up on every request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from modelgate.config.settings import DeploymentSettings
from modelgate.pipeline.contract import Call, Principal

T = TypeVar("T")


class CallerCache(Generic[T]):
    """What a stage works out from a call's principal and deployment, worked out once per pair.

    Principals (from the key cache) and deployments (from the settings) are long-lived objects:
    the cache is keyed by their identity, and holds them so that an identity is not reused.
    """

    def __init__(self, make: Callable[[Call], T], size: int = 10_000) -> None:
        self._make = make
        self._size = size
        self._found: dict[tuple[int, int], tuple[Principal, DeploymentSettings, T]] = {}

    def __call__(self, call: Call) -> T:
        hit = self._found.get((id(call.principal), id(call.deployment)))
        if hit is not None and hit[0] is call.principal and hit[1] is call.deployment:
            return hit[2]
        value = self._make(call)
        if len(self._found) >= self._size:
            self._found.clear()  # keys were replaced many times over: start again
        self._found[(id(call.principal), id(call.deployment))] = (call.principal, call.deployment, value)
        return value

"""What the admin app needs of the running gateway (the server's ``Services`` provides it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from modelgate.config.settings import DeploymentSettings
from modelgate.pipeline.contract import Principal
from modelgate.routing import Router
from modelgate.storage import Storage


class KeyChanges(Protocol):
    async def changed(self, revision: int) -> None:
        """Keys changed in storage: apply the change in this process and announce it to the others."""
        ...


class SharedBreakers(Protocol):
    @property
    def connected(self) -> bool:
        """Whether the link that shares breaker state (Redis) is up right now."""
        ...


class AdminCore(Protocol):
    """Who is calling, the records of projects, keys and usage, and what routing sees."""

    @property
    def storage(self) -> Storage: ...

    @property
    def deployments(self) -> Mapping[str, DeploymentSettings]: ...

    @property
    def key_sync(self) -> KeyChanges: ...

    @property
    def router(self) -> Router:
        """Each deployment's targets, with their breakers and figures."""
        ...

    @property
    def health_sync(self) -> SharedBreakers | None:
        """The link sharing breaker state between processes; None when each process keeps its own."""
        ...

    def authenticate(self, headers: Mapping[str, str]) -> Principal: ...

"""What the admin app needs of the running gateway (the server's ``Services`` provides it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

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


class RedisLink(Protocol):
    def status(self) -> dict[str, Any]:
        """The circuit around Redis: its state, since when, why, and its counters."""
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

    @property
    def redis(self) -> RedisLink | None:
        """The process's Redis client; None without ``redis_url``."""
        ...

    def authenticate(self, headers: Mapping[str, str]) -> Principal: ...

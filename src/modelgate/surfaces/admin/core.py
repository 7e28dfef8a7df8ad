"""What the admin app needs of the running gateway (the server's ``Services`` provides it)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from modelgate.config.settings import DeploymentSettings
from modelgate.metering import UsageRecorder
from modelgate.pipeline.contract import Principal
from modelgate.routing import Router
from modelgate.storage import DeploymentRecord, Storage


class KeyChanges(Protocol):
    async def changed(self, revision: int) -> None:
        """Keys changed in storage: apply the change in this process and announce it to the others."""
        ...


class DeploymentEntry(Protocol):
    @property
    def settings(self) -> DeploymentSettings:
        """The deployment as routing uses it."""
        ...

    @property
    def record(self) -> DeploymentRecord | None:
        """Its stored record when made through the admin API; None for one of the config file."""
        ...


class DeploymentAdmin(Protocol):
    """The deployments in force, and changes to those made through the admin API, applied on every
    gateway process before they return. Bodies are deployments as the config file gives them."""

    def listed(self) -> Sequence[DeploymentEntry]: ...

    async def get(self, name: str) -> DeploymentEntry: ...

    async def create(self, body: Any) -> DeploymentEntry: ...

    async def update(self, name: str, patch: Any) -> DeploymentEntry: ...

    async def delete(self, name: str) -> DeploymentEntry: ...


class BlocklistEntry(Protocol):
    """A blocklist of the config, with the terms and patterns in force."""

    @property
    def name(self) -> str: ...

    @property
    def terms(self) -> tuple[str, ...]: ...

    @property
    def patterns(self) -> tuple[str, ...]: ...

    @property
    def source(self) -> str:
        """"config", or "api" while terms set through the admin API are in force."""
        ...

    @property
    def updated_at(self) -> datetime | None: ...

    @property
    def used_by(self) -> tuple[str, ...]:
        """The policies with a check that names it."""
        ...


class BlocklistAdmin(Protocol):
    """The blocklists of the config, and the terms set through the admin API in their place,
    applied on every gateway process before a change returns."""

    def listed(self) -> Sequence[BlocklistEntry]: ...

    def get(self, name: str) -> BlocklistEntry: ...

    async def put(self, name: str, body: Any) -> BlocklistEntry: ...

    async def delete(self, name: str) -> BlocklistEntry: ...


class SharedBreakers(Protocol):
    @property
    def connected(self) -> bool:
        """Whether the link that shares breaker state (Redis) is up right now."""
        ...


class RedisLink(Protocol):
    def status(self) -> dict[str, Any]:
        """The circuit around Redis: its state, since when, why, and its counters."""
        ...


class CacheAdmin(Protocol):
    async def clear(self, deployment: str | None, project: str | None) -> int:
        """Drop the cached answers of a deployment, a project, both, or all; how many."""
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
    def deployment_admin(self) -> DeploymentAdmin: ...

    @property
    def blocklist_admin(self) -> BlocklistAdmin: ...

    @property
    def content_policies(self) -> Collection[str]:
        """The names of the config's content policies, which a project's ``safety`` may name."""
        ...

    @property
    def router(self) -> Router:
        """Each deployment's targets, with their breakers and figures."""
        ...

    @property
    def health_sync(self) -> SharedBreakers | None:
        """The link sharing breaker state between processes; None when each process keeps its own."""
        ...

    def metrics_text(self) -> str:
        """Every worker's metrics, in Prometheus' text format."""
        ...

    @property
    def recorder(self) -> UsageRecorder:
        """This process's usage recorder: its journal, its writes, its quarantine."""
        ...

    @property
    def cache_admin(self) -> CacheAdmin:
        """The response cache (the deployments with ``cache:``)."""
        ...

    @property
    def redis(self) -> RedisLink | None:
        """The process's Redis client; None without ``redis_url``."""
        ...

    def authenticate(self, headers: Mapping[str, str]) -> Principal: ...

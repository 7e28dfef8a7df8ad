"""Deployments made through the admin API, applied on every gateway process while it runs.

The same two paths as key changes (storage/revisions.py): the process that changes a deployment
stores it, applies it here and publishes the new ``deployment_revision`` on the installation's
Redis channel, waiting for the other processes to confirm; each process also asks the database
for the revision every ``REFRESH_INTERVAL`` seconds and applies what changed, the backstop for
lost messages and for setups without Redis.

A stored deployment is read by the config's own reader (config/deployments.py), so it is checked
and completed (catalog facts) exactly as one in the config file. Deployments of the config file
are read-only here. Local providers' deployments are refused for now: starting and stopping
their replicas at run time is not wired yet.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelgate.auth.keyadmin import NAME, NAME_LENGTH
from modelgate.catalog import Catalog
from modelgate.config.deployments import read_one_deployment
from modelgate.config.fields import Reader
from modelgate.config.providers import LOCAL
from modelgate.config.settings import DeploymentSettings, Settings
from modelgate.metering import PriceBook
from modelgate.redis_client import RedisClient
from modelgate.routing import Router
from modelgate.schema.errors import Conflict, InvalidRequest, NotFound
from modelgate.storage import AlreadyExists, DeploymentRecord, RecordNotFound, Storage, StorageError
from modelgate.storage.prices import prices_from_settings
from modelgate.storage.revisions import REFRESH_INTERVAL, RevisionFollower

log = logging.getLogger("modelgate.deployments")

PATCH_REPLACES = {"targets": ("provider", "model"), "provider": ("targets",), "model": ("targets",)}
TOPIC = "deployments"  # the installation's Redis channel for deployment changes


@dataclass(frozen=True, slots=True)
class DeploymentView:
    settings: DeploymentSettings
    record: DeploymentRecord | None  # None: from the config file


class DeploymentSync:
    """The deployments of the config file and those made through the admin API, kept current in
    ``settings.deployments``, the router and the price book (see the module docstring)."""

    def __init__(self, storage: Storage, settings: Settings, router: Router, prices: PriceBook,
                 redis: RedisClient | None, config_file: str | None = None,
                 interval: float = REFRESH_INTERVAL) -> None:
        self.storage = storage
        self.settings = settings
        self.router = router
        self.prices = prices
        self.redis = redis
        self.interval = interval
        self.config_file = config_file or "the config file"
        self.config_names = frozenset(settings.deployments)
        self.records: dict[str, DeploymentRecord] = {}  # the API-made deployments in force
        self.revision = 0
        self.catalog = Catalog.builtin()
        self.follower = RevisionFollower(storage, redis, TOPIC, refresh=self._apply_changes,
                                         revision=lambda: self.revision, interval=interval, what="deployment",
                                         logger=log)

    # -- following the database ------------------------------------------------------------------

    @property
    def subscribed(self) -> bool:
        return self.follower.subscribed

    async def start(self) -> None:
        await self.follower.refresh()
        await self.follower.start()

    async def stop(self) -> None:
        await self.follower.stop()

    async def refresh(self) -> bool:
        """Apply the changes stored since the last look; whether there were any."""
        return await self.follower.refresh()

    async def changed(self, revision: int) -> None:
        """After this process changed a deployment: apply it here, then announce it to the others."""
        await self.follower.changed(revision)

    async def _apply_changes(self) -> bool:
        changes = await self.storage.deployments.changes_since(self.revision)
        if changes is None:
            return False
        self._apply(changes.records)
        self.revision = changes.revision
        return True

    def _apply(self, records: list[DeploymentRecord]) -> None:
        changes: dict[str, DeploymentSettings | None] = {}
        for record in records:
            if record.name in self.config_names:
                continue  # the config file's wins; the API refuses such a name
            deployment = None
            if record.body is not None:
                reader = Reader({}, self.catalog)
                deployment = read_one_deployment(reader, record.body, self.settings.providers)
                if reader.problems or deployment is None:
                    log.warning("deployment %r of the database cannot be used by this gateway and is left out: %s",
                                record.name, "; ".join(reader.problems))
                    deployment = None
            changes[record.name] = deployment
            if deployment is None:
                self.records.pop(record.name, None)
                self.settings.deployments.pop(record.name, None)
            else:
                self.records[record.name] = record
                self.settings.deployments[record.name] = deployment
        if changes:
            self.router.update(changes)
            self.prices.reload(prices_from_settings(self.settings), self.settings.deployments.values())
            log.info("deployments applied: %s", ", ".join(
                f"{name} ({'removed' if d is None else 'in force'})" for name, d in changes.items()))

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh()
        except StorageError as error:
            log.warning("deployment refresh failed, keeping the deployments known so far: %s", error)

    # -- the admin API's operations ----------------------------------------------------------------

    def listed(self) -> list[DeploymentView]:
        return [DeploymentView(d, self.records.get(name)) for name, d in self.settings.deployments.items()]

    async def get(self, name: str) -> DeploymentView:
        deployment = self.settings.deployments.get(name)
        if deployment is None:
            await self._refresh_logged()  # made on another process a moment ago
            deployment = self.settings.deployments.get(name)
        if deployment is None:
            raise NotFound(f"There is no deployment {name!r}.", code="deployment_not_found")
        return DeploymentView(deployment, self.records.get(name))

    async def create(self, body: Any) -> DeploymentView:
        if not isinstance(body, dict):
            raise InvalidRequest("The body must be a deployment as in the config file: a JSON object with name, "
                                 "and provider and model or targets.")
        name = body.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise InvalidRequest(f"'name' is required: letters, digits and . _ : @ - (up to {NAME_LENGTH}), "
                                 f"starting with a letter or digit; got {name!r}", param="name")
        self._writable(name)
        deployment = self.check(body)
        try:
            record = await self.storage.deployments.create(name, body)
        except AlreadyExists:
            raise Conflict(f"Deployment {name!r} exists already; change it with PATCH /admin/deployments/{name}",
                           code="already_exists") from None
        await self.changed(record.revision)
        return DeploymentView(self.settings.deployments.get(name, deployment), record)

    async def update(self, name: str, patch: Any) -> DeploymentView:
        """Merge ``patch`` over the stored body (a null removes a key) and apply the result."""
        if not isinstance(patch, dict):
            raise InvalidRequest("The body must be a JSON object of the deployment's keys to change "
                                 "(null removes one).")
        self._writable(name)
        stored = await self.storage.deployments.get(name)
        if stored is None or stored.body is None:
            raise NotFound(f"There is no deployment {name!r}.", code="deployment_not_found")
        if patch.get("name", name) != name:
            raise InvalidRequest("'name' cannot change; create a deployment under the new name and delete this one",
                                 param="name")
        body = dict(stored.body)
        for key, value in patch.items():
            for replaced in PATCH_REPLACES.get(key, ()):
                if replaced not in patch:
                    body.pop(replaced, None)
            if value is None:
                body.pop(key, None)
            else:
                body[key] = value
        deployment = self.check(body)
        try:
            record = await self.storage.deployments.update(name, body)
        except RecordNotFound:
            raise NotFound(f"There is no deployment {name!r}.", code="deployment_not_found") from None
        await self.changed(record.revision)
        return DeploymentView(self.settings.deployments.get(name, deployment), record)

    async def delete(self, name: str) -> DeploymentView:
        self._writable(name)
        users = sorted(d.name for d in self.settings.deployments.values() if name in d.fallbacks and d.name != name)
        if users:
            raise Conflict(f"Deployment {name!r} is a fallback of {', '.join(users)}; change those first.",
                           code="deployment_in_use")
        try:
            record = await self.storage.deployments.delete(name)
        except RecordNotFound:
            raise NotFound(f"There is no deployment {name!r}.", code="deployment_not_found") from None
        deployment = self.settings.deployments.get(name)
        await self.changed(record.revision)
        if deployment is None:
            raise NotFound(f"There is no deployment {name!r}.", code="deployment_not_found")
        return DeploymentView(deployment, record)

    def check(self, body: Mapping[str, Any]) -> DeploymentSettings:
        """``body`` read as the config file's reader reads a deployment: a 400 naming the field."""
        reader = Reader({}, self.catalog)
        names = set(self.settings.deployments) | {str(body.get("name"))}
        deployment = read_one_deployment(reader, body, self.settings.providers, names)
        if reader.problems or deployment is None:
            problems = reader.problems or ["the deployment has no usable target"]
            raise InvalidRequest("The deployment is not valid: " + "; ".join(problems),
                                 param=_field(problems[0], str(body.get("name"))), code="invalid_deployment")
        local = [t.provider for t in deployment.targets if self.settings.providers[t.provider].type == LOCAL]
        if local:
            raise InvalidRequest(
                f"Provider '{local[0]}' is of type {LOCAL}: deployments of local models are not made through the "
                f"admin API yet (their replicas start with the gateway); add it to {self.config_file}.",
                param="provider", code="local_deployment_unsupported")
        return deployment

    def _writable(self, name: str) -> None:
        if name in self.config_names:
            raise Conflict(f"Deployment {name!r} comes from {self.config_file} and is read-only through the admin "
                           f"API; change it in {self.config_file} (deployments:) and restart.",
                           code="deployment_from_config")


def _field(problem: str, name: str) -> str:
    """The key a problem of the reader names, as a body's field: ``deployments.NAME.timeout: ...``
    is ``timeout``."""
    path = problem.split(": ", 1)[0]
    for prefix in (f"deployments.{name}.", "deployments[]."):
        if path.startswith(prefix):
            return path[len(prefix):]
    return path.rsplit(".", 1)[-1] if path.startswith("deployments") else path

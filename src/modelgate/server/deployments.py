"""Deployments made through the admin API, applied on every gateway process while it runs.

The same two paths as key changes (storage/revisions.py): the process that changes a deployment
stores it, applies it here and publishes the new ``deployment_revision`` on the installation's
Redis channel, waiting for the other processes to confirm; each process also asks the database
for the revision every ``REFRESH_INTERVAL`` seconds and applies what changed, the backstop for
lost messages and for setups without Redis.

A stored deployment is read by the config's own reader (config/deployments.py), so it is checked
and completed (catalog facts) exactly as one in the config file; relative paths in it are taken
from the config file's folder. Deployments of the config file are read-only here (409 naming the
file). A change's prices go to the price history when it is stored.

**Local models.** A deployment whose targets are on ``local`` providers needs their replica pools
(server/engines.py) on every gateway process. The process that takes a POST or PATCH starts them
first and answers once a replica of each has loaded: a model that cannot be loaded is a 400 with
the engine's own words, and nothing is stored. Every process then starts the pools as it applies
the change. A new deployment is routed at once, its requests waiting for the load as at start-up
(or 503 with Retry-After); a changed one keeps being served by its old pools until the new ones
have a replica ready, then the old ones are drained (requests in flight finish) and stopped, as
are those of a deleted deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelgate.auth.keyadmin import NAME, NAME_LENGTH
from modelgate.catalog import Catalog
from modelgate.config.deployments import read_one_deployment
from modelgate.config.fields import Reader
from modelgate.config.settings import DeploymentSettings, Settings
from modelgate.engines.models import ModelNotFound
from modelgate.engines.replica import ReplicaFailed
from modelgate.metering import PriceBook
from modelgate.redis_client import RedisClient
from modelgate.routing import Router
from modelgate.schema.errors import Conflict, InvalidRequest, NotFound
from modelgate.server.engines import LocalEngines
from modelgate.storage import AlreadyExists, DeploymentRecord, RecordNotFound, Storage, StorageError
from modelgate.storage.prices import deployment_prices, prices_from_settings
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
                 redis: RedisClient | None, engines: LocalEngines, interval: float = REFRESH_INTERVAL) -> None:
        self.storage = storage
        self.settings = settings
        self.router = router
        self.prices = prices
        self.redis = redis
        self.engines = engines
        self.interval = interval
        self.config_file = f"the config file {settings.config_file}" if settings.config_file else "the config file"
        self.folder = Path(settings.config_file).parent if settings.config_file else None
        self.config_names = frozenset(settings.deployments)
        self.records: dict[str, DeploymentRecord] = {}  # the API-made deployments in force
        self.revision = 0
        self.catalog = Catalog.builtin()
        self.follower = RevisionFollower(storage, redis, TOPIC, refresh=self._apply_changes,
                                         revision=lambda: self.revision, interval=interval, what="deployment",
                                         logger=log)
        # Changed local deployments waiting for their new pools to load before they are routed.
        self._switches: dict[str, asyncio.Task[None]] = {}
        # Local deployments being made: their pools are kept while they load and are stored.
        self._making: list[DeploymentSettings] = []

    # -- following the database ------------------------------------------------------------------

    @property
    def subscribed(self) -> bool:
        return self.follower.subscribed

    async def start(self) -> None:
        await self.follower.refresh()
        await self.follower.start()

    async def stop(self) -> None:
        await self.follower.stop()
        switches = list(self._switches.values())
        self._switches.clear()
        for task in switches:
            task.cancel()
        await asyncio.gather(*switches, return_exceptions=True)

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
        await self._apply(changes.records)
        self.revision = changes.revision
        return True

    async def _apply(self, records: list[DeploymentRecord]) -> None:
        changes: dict[str, DeploymentSettings | None] = {}
        for record in records:
            if record.name in self.config_names:
                continue  # the config file's wins; the API refuses such a name
            deployment = None if record.body is None else await self._usable(record.name, record.body)
            changes[record.name] = deployment
            if deployment is None:
                self.records.pop(record.name, None)
                self.settings.deployments.pop(record.name, None)
            else:
                self.records[record.name] = record
                self.settings.deployments[record.name] = deployment
        if not changes:
            return
        routed: dict[str, DeploymentSettings | None] = {}
        for name, deployment in changes.items():
            self._cancel_switch(name)
            if deployment is not None and name in self.router.groups and self.engines.loading(deployment):
                self._switches[name] = asyncio.create_task(self._switch_when_loaded(deployment),
                                                           name=f"modelgate-deployment-switch-{name}")
            else:
                routed[name] = deployment
        self.router.update(routed)
        self.prices.reload(prices_from_settings(self.settings), self.settings.deployments.values())
        self._retire()
        log.info("deployments applied: %s", ", ".join(f"{name} ({self._state(name, d)})"
                                                      for name, d in changes.items()))

    def _state(self, name: str, deployment: DeploymentSettings | None) -> str:
        if deployment is None:
            return "removed"
        return "in force once its local model has loaded" if name in self._switches else "in force"

    async def _usable(self, name: str, body: Mapping[str, Any]) -> DeploymentSettings | None:
        """A stored body as this gateway can serve it, its local pools started; None (logged) if it cannot."""
        reader = Reader({}, self.catalog, self.folder)
        deployment = read_one_deployment(reader, body, self.settings.providers,
                                         policies=self.settings.safety.policies)
        if reader.problems or deployment is None:
            log.warning("deployment %r of the database cannot be used by this gateway and is left out: %s",
                        name, "; ".join(reader.problems))
            return None
        try:
            await self.engines.start_for(deployment)
        except ModelNotFound as error:
            log.warning("deployment %r of the database cannot be used by this gateway and is left out: %s",
                        name, error)
            return None
        return deployment

    async def _switch_when_loaded(self, deployment: DeploymentSettings) -> None:
        """Route ``deployment`` once its new pools have a replica ready; the old ones then drain."""
        await self.engines.any_ready(deployment)
        self._switches.pop(deployment.name, None)
        self.router.update({deployment.name: deployment})
        self._retire()
        log.info("deployment %r: its local model is loaded and the deployment is in force", deployment.name)

    def _cancel_switch(self, name: str) -> None:
        task = self._switches.pop(name, None)
        if task is not None:
            task.cancel()

    def _retire(self) -> None:
        """Drain and stop the pools no deployment needs any more (nor one waiting or being made)."""
        waiting = [d for name, d in self.settings.deployments.items() if name in self._switches]
        self.engines.retire_unused([*waiting, *self._making])

    @contextlib.asynccontextmanager
    async def _loaded(self, deployment: DeploymentSettings) -> AsyncIterator[None]:
        """Around storing ``deployment``: its local pools started on this process and a replica of
        each loaded first (a 400 saying why one cannot load), kept until the change is applied."""
        self._making.append(deployment)
        try:
            try:
                await self.engines.first_load(deployment)
            except ReplicaFailed as failure:
                raise InvalidRequest(f"The deployment is not valid: {failure}", param="model",
                                     code="model_not_loadable") from None
            except ModelNotFound as missing:  # gone since it was checked a moment ago
                raise InvalidRequest(f"The deployment is not valid: {missing}", param="model",
                                     code="invalid_deployment") from None
            yield
        finally:
            self._making.remove(deployment)
            self._retire()

    async def _record_prices(self, deployment: DeploymentSettings) -> None:
        """The prices of a stored change into the price history (every start-up writes them too)."""
        try:
            await self.storage.prices.sync(deployment_prices(deployment))
        except StorageError as error:
            log.warning("the prices of deployment %r could not be written to the price history (%s); the next "
                        "start-up writes them", deployment.name, error)

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
        if name in self.settings.deployments:  # before a local model is loaded for nothing
            raise self._exists(name)
        deployment = self.check(body)
        async with self._loaded(deployment):
            try:
                record = await self.storage.deployments.create(name, body)
            except AlreadyExists:
                raise self._exists(name) from None
            await self._record_prices(deployment)
            await self.changed(record.revision)
        return DeploymentView(self.settings.deployments.get(name, deployment), record)

    @staticmethod
    def _exists(name: str) -> Conflict:
        return Conflict(f"Deployment {name!r} exists already; change it with PATCH /admin/deployments/{name}",
                        code="already_exists")

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
        async with self._loaded(deployment):
            try:
                record = await self.storage.deployments.update(name, body)
            except RecordNotFound:
                raise NotFound(f"There is no deployment {name!r}.", code="deployment_not_found") from None
            await self._record_prices(deployment)
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
        reader = Reader({}, self.catalog, self.folder)
        names = set(self.settings.deployments) | {str(body.get("name"))}
        deployment = read_one_deployment(reader, body, self.settings.providers, names,
                                         self.settings.safety.policies)
        if reader.problems or deployment is None:
            problems = reader.problems or ["the deployment has no usable target"]
            raise InvalidRequest("The deployment is not valid: " + "; ".join(problems),
                                 param=_field(problems[0], str(body.get("name"))), code="invalid_deployment")
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

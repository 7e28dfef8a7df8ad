"""The replica pools of local deployments, as deployments come, change and go while the gateway runs.

Every gateway process runs its own replicas of every local deployment in force (with ``--workers
N``, N times ``replicas`` processes per deployment), whether the deployment comes from the config
file or from the admin API. The pools live on the local providers (``providers/local.py``); this
module says which pools the deployments in force need: a deployment's targets on ``local``
providers each need the pool of their model, engine settings and context window. The pools of the
config's deployments start with the gateway (``Provider.start``); a deployment applied later
starts its own (``start_for``), and a pool that no deployment in force (nor one being made or
waiting to be switched to, ``keep``) needs any more is drained and stopped (``retire_unused``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from modelgate.config.settings import DeploymentSettings
from modelgate.engines.pool import ReplicaPool, ReplicaWatcher
from modelgate.engines.replica import ReplicaFailed
from modelgate.providers.base import Provider, UpstreamCall
from modelgate.providers.local import LocalProvider
from modelgate.routing import Router
from modelgate.routing.group import upstream_call

REPLICA_STATES = ("starting", "ready", "dead", "stopped")


class LocalEngines:
    """The local providers of a gateway, and the pools its deployments need of them."""

    def __init__(self, providers: Mapping[str, Provider], router: Router) -> None:
        self.router = router
        self.providers = {name: p for name, p in providers.items() if isinstance(p, LocalProvider)}

    def calls(self, deployment: DeploymentSettings) -> list[tuple[LocalProvider, UpstreamCall]]:
        """The targets of ``deployment`` that a local provider runs, as their provider sees them."""
        return [(self.providers[t.provider], upstream_call(deployment, t))
                for t in deployment.targets if t.provider in self.providers]

    def watch(self, watcher: ReplicaWatcher) -> None:
        """Every pool started from now on tells ``watcher`` of its replicas (set before any starts)."""
        for provider in self.providers.values():
            provider.watcher = watcher

    async def start_for(self, deployment: DeploymentSettings) -> list[ReplicaPool]:
        """The pools ``deployment`` needs, those not running yet started now (they load in the
        background). ``ModelNotFound`` where a model's file is not on this machine."""
        return [await provider.pool(call) for provider, call in self.calls(deployment)]

    def loading(self, deployment: DeploymentSettings) -> bool:
        """Whether a pool ``deployment`` needs has no replica ready yet."""
        pools = [provider.running(call) for provider, call in self.calls(deployment)]
        return any(pool is None or not pool.ready() for pool in pools)

    async def first_load(self, deployment: DeploymentSettings) -> None:
        """Once every pool of ``deployment`` has a replica ready; ``ReplicaFailed`` naming the model
        and its file where a replica of one failed to load before any did."""
        for provider, call in self.calls(deployment):
            pool = await provider.pool(call)
            try:
                await pool.first_load()
            except ReplicaFailed as failure:
                what = "folder" if pool.spec.model.path.is_dir() else "file"
                raise ReplicaFailed(f"local model '{call.model}' of provider '{provider.name}' ({what} "
                                    f"{pool.spec.model.path}) cannot be loaded: {failure}",
                                    reason=failure.reason) from None

    async def any_ready(self, deployment: DeploymentSettings) -> None:
        """Once every pool of ``deployment`` has a replica ready, however many attempts it takes."""
        for provider, call in self.calls(deployment):
            await (await provider.pool(call)).any_ready()

    def figures(self) -> list[tuple[str, str, dict[str, int], int, int]]:
        """Each running pool's provider, model, replicas by state, requests running and waiting."""
        found = []
        for name, provider in self.providers.items():
            for pool in provider.pools.values():
                states = dict.fromkeys(REPLICA_STATES, 0)
                for replica in pool.replicas:
                    states[replica.state] = states.get(replica.state, 0) + 1
                found.append((name, pool.name, states, pool.running, pool.waiting))
        return found

    def retire_unused(self, keep: Iterable[DeploymentSettings] = ()) -> list[ReplicaPool]:
        """Drain and stop the pools that neither the router's deployments nor ``keep`` need; those pools."""
        wanted: dict[str, list[UpstreamCall]] = {name: [] for name in self.providers}
        for group in self.router.groups.values():
            for target in group.targets:
                if target.provider.name in wanted:
                    wanted[target.provider.name].append(target.upstream)
        for deployment in keep:
            for provider, call in self.calls(deployment):
                wanted[provider.name].append(call)
        return [pool for name, provider in self.providers.items() for pool in provider.retire(wanted[name])]

"""What the portal's catalog shows a signed-in key: the deployments it may call, with their facts and
the price it pays, and for the master key the built-in catalog's models and the local providers'
stored models too, each with the deployments that serve it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelgate.catalog import Catalog
from modelgate.catalog.model_store import ModelStore, ModelStoreError
from modelgate.config.settings import DeploymentSettings
from modelgate.pipeline.contract import Principal
from modelgate.providers.settings import ProviderSettings
from modelgate.storage.prices import deployment_prices


def catalog_json(deployments: Mapping[str, DeploymentSettings], principal: Principal,
                 providers: Mapping[str, ProviderSettings], catalog: Catalog | None = None) -> dict[str, Any]:
    master = principal.key_id == "master"
    shown = [_deployment(d, master) for name, d in sorted(deployments.items()) if principal.may_use(name)]
    out: dict[str, Any] = {"role": "master" if master else "project", "deployments": shown}
    if master:
        serving: dict[str, list[str]] = {}
        for deployment in deployments.values():
            for target in deployment.targets:
                serving.setdefault(target.model, []).append(deployment.name)
        # What a deployment made from the catalog can name as its provider, with the API each speaks.
        out["providers"] = [{"name": name, "type": p.type, "flavor": p.flavor} for name, p in sorted(providers.items())]
        out["models"] = [{"publisher": e.publisher, "model": e.model, **_facts(e.facts),
                          "deployed_as": sorted(set(serving.get(e.model, ())))}
                         for e in (catalog or Catalog.builtin()).entries()]
        out["models"] += local_models(providers, serving)
    return out


def local_models(providers: Mapping[str, ProviderSettings], serving: Mapping[str, list[str]]) -> list[dict[str, Any]]:
    """The models in the store of each local provider (``modelgate models add``): deploying one
    starts its replicas. A store that cannot be read lists nothing (the CLI says why)."""
    found: list[dict[str, Any]] = []
    for name, provider in sorted(providers.items()):
        if provider.type != "local":
            continue
        try:
            stored = ModelStore(provider.models_dir or ".").list()
        except (ModelStoreError, OSError):
            continue
        for model in stored:
            found.append({"publisher": name, "model": model.name, **_facts(model.facts()), "local": True,
                          "parameters": model.parameters, "quantization": model.quantization,
                          "deployed_as": sorted(set(serving.get(model.name, ())))})
    return found


def _deployment(deployment: DeploymentSettings, master: bool) -> dict[str, Any]:
    first = deployment.targets[0]
    every = deployment_prices(deployment)
    prices = every[0]
    shown: dict[str, Any] = {
        "name": deployment.name, "strategy": deployment.strategy, "fallbacks": list(deployment.fallbacks),
        **_facts(first.facts),
        # What a caller pays, USD per million tokens (the first target's, as the router tries it first).
        "price": {"input": prices.input_price, "output": prices.output_price,
                  "cached_input": prices.cached_input_price},
        # By the provider that answers (the x-modelgate-provider of an answer): what it costs the caller.
        "prices": {p.provider: {"input": p.input_price, "output": p.output_price, "cached_input": p.cached_input_price}
                   for p in reversed(every)},
        "local": any(t.local is not None for t in deployment.targets),
    }
    if master:
        shown["targets"] = [{"provider": t.provider, "model": t.model, "weight": t.weight, "api": t.api}
                            for t in deployment.targets]
        shown["cost"] = {"input": prices.input_cost, "output": prices.output_cost,
                         "cached_input": prices.cached_input_cost}
        shown["rpm"], shown["tpm"], shown["safety"] = deployment.rpm, deployment.tpm, deployment.safety
        shown["log_payloads"] = deployment.log_payloads
    return shown


def _facts(facts: Any) -> dict[str, Any]:
    return {"context_window": facts.context_window, "max_output_tokens": facts.max_output_tokens,
            "input_price": facts.input_price, "output_price": facts.output_price,
            "cached_input_price": facts.cached_input_price, "capabilities": list(facts.capabilities),
            "mode": facts.mode}

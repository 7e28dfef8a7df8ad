"""The ``deployments:`` section: what clients ask for by name, and the targets that serve it.

A deployment names one target inline (``provider:``, ``model:`` and the model's facts) or lists
``targets:``; a target's facts are the catalog's for its model with those the config gives put in
their place. Deployments refer to providers by name and to each other as fallbacks.

A target of a ``local`` provider names a model of its store, a GGUF file or a model folder (a
relative path is taken from the config file's folder and made absolute); its facts are read from
the model itself, so a model that is none of these is reported here, before the server starts,
as is a model its engine cannot load or an engine whose package is not installed.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

from modelgate.catalog.facts import ModelFacts
from modelgate.catalog.model_store import ModelStore, ModelStoreError
from modelgate.config.cache import DeploymentCache
from modelgate.config.fields import INVALID, Key, Reader, Shape, at_least, join, positive
from modelgate.config.providers import LOCAL
from modelgate.config.safety import moderation_problems
from modelgate.engines.models import ModelNotFound, resolve_model
from modelgate.engines.settings import (
    DEVICES,
    ENGINES,
    NEEDS,
    ComputeCost,
    EngineSettings,
    RaySettings,
    VllmSettings,
    ray_address_problem,
    vllm_args_problem,
)
from modelgate.providers.base import MAX_DURATION_S
from modelgate.providers.settings import ProviderSettings

STRATEGIES = ("weighted", "priority", "latency", "least-busy", "cost", "quality-cost")
# The upstream APIs a target may be called through: chat completions (or the provider's own API),
# or OpenAI's Responses API, which only OpenAI-type and Azure providers speak.
APIS = ("chat", "responses")
RESPONSES_PROVIDER_TYPES = ("openai", "azure")
CAPABILITIES = ("chat", "tools", "vision", "reasoning", "json", "embeddings", "streaming")


def _known_capabilities(capabilities: tuple[str, ...]) -> str | None:
    unknown = [c for c in capabilities if c not in CAPABILITIES]
    if unknown:
        return f"unknown capability {', '.join(map(repr, unknown))}; known: {', '.join(CAPABILITIES)}"
    return None


def _seconds(value: float) -> str | None:
    return None if value > 0 else "must be a positive number of seconds"  # NaN is not


def _share(share: float) -> str | None:
    return None if 0 < share <= 1 else f"must be a share between 0 and 1, got {share!r}"


_TOKENS = Key("a number of tokens", positive("must be a positive number of tokens"))
_COST = Key("USD per million tokens as a number")
# The keys of the catalog's facts about a model, given inline in a target (or a one-target deployment).
FACTS: Shape[ModelFacts] = Shape(ModelFacts, keys={
    "context_window": _TOKENS,
    "max_output_tokens": _TOKENS,
    "input_price": _COST,
    "output_price": _COST,
    "cached_input_price": _COST,
    "cache_write_price": _COST,
    "capabilities": Key(f"a list of {', '.join(CAPABILITIES)}", _known_capabilities),
    "mode": Key(choices=("chat", "embedding")),
})

_REQUESTS = "a whole number of requests"
COMPUTE_COST: Shape[ComputeCost] = Shape(ComputeCost, keys={
    "per_replica_hour": Key("USD per replica-hour as a number", at_least(0, "must be 0 or more"),
                            doc="USD per replica per hour it runs"),
})
_REPLICAS = "a whole number of replicas"
RAY: Shape[RaySettings] = Shape(RaySettings, keys={
    "address": Key("a Ray cluster address: auto, HOST:PORT or ray://HOST:PORT", ray_address_problem),
    "min_replicas": Key(_REPLICAS, at_least(0, "must be 0 or more")),
    "max_replicas": Key(_REPLICAS, positive("must be at least 1")),
    "target_ongoing_requests": Key("a number of requests", positive("must be a positive number of requests")),
})
VLLM: Shape[VllmSettings] = Shape(VllmSettings, keys={
    "python": Key("the path of a Python interpreter", doc="the interpreter vLLM is installed under"),
    "args": Key("a list of arguments of vLLM's server, e.g. [--dtype, float32]", vllm_args_problem),
})
# The keys of a local target's engine (engines/settings.py), given beside its provider: and model:.
ENGINE: Shape[EngineSettings] = Shape(EngineSettings, keys={
    "engine": Key(choices=ENGINES),
    "replicas": Key("a whole number of replicas", positive("must be at least 1")),
    "max_concurrency": Key(_REQUESTS, positive("must be at least 1 request at once")),
    "queue": Key(_REQUESTS, at_least(0, "must be 0 or more waiting requests")),
    "device": Key(choices=DEVICES),
    "health_interval": Key("seconds as a number", _seconds, doc="seconds between health checks of a ready replica"),
    "health_timeout": Key("seconds as a number", _seconds, doc="seconds a replica has to answer a health check"),
    "compute_cost": Key("a mapping with per_replica_hour:", shape=COMPUTE_COST),
    "ray": Key(shape=RAY),
    "vllm": Key(shape=VLLM),
})

Share = Annotated[float, Key("a share between 0 and 1", _share)]
Price = Annotated[float | None, Key("USD per million tokens as a number", at_least(0, "must be 0 or more"))]


@dataclass(slots=True, kw_only=True)
class TargetSettings:
    provider: Annotated[str, Key(doc="the name of one of the providers: entries")]
    model: Annotated[str, Key(doc="the upstream's own model id, e.g. gpt-4o")]
    weight: Annotated[float, Key("a positive number", positive("must be positive"))] = 1.0
    # "responses": call the upstream's /responses (OpenAI's Responses API) instead of chat completions.
    api: Annotated[str, Key(choices=APIS)] = "chat"
    facts: Annotated[ModelFacts, Key(shape=FACTS, inline=True)] = field(default_factory=ModelFacts)
    # The engine of a target whose provider is of type local; None for every other target.
    local: Annotated[EngineSettings | None, Key(shape=ENGINE, inline=True)] = None
    # The deployment this target was given as ({deployment: NAME}: that deployment's one target),
    # which evaluation runs name it by; None for a target given by provider and model.
    deployment: Annotated[str | None, Key("a deployment's name")] = None


@dataclass(slots=True, kw_only=True)
class ReasoningSettings:
    show: bool = True  # pass reasoning text on to clients
    split_think_tags: bool = False  # open models that write <think>...</think> into the content


def _log_payloads(value: Any) -> str | None:
    return None if value in (True, False, "errors") and type(value) in (bool, str) else \
        "must be true (every request's bodies), false (none) or errors (those of failed requests)"


@dataclass(slots=True, kw_only=True)
class PriceSettings:
    """What the customer pays, USD per million tokens; None: the provider's cost of that kind."""

    input: Price = None
    output: Price = None
    cached_input: Price = None
    cache_write: Price = None
    # An answer from the response cache, per million tokens (its input and output together); the
    # provider is not called, so it costs nothing.
    cache_hit: Annotated[float, Key("USD per million tokens as a number", at_least(0, "must be 0 or more"))] = 0.0


# The scorers an experiment may grade its answers by: judge:DEPLOYMENT (a rubric over the question
# and the answer) and, in shadow mode, similarity:DEPLOYMENT (the copy's answer to the main one).
EXPERIMENT_SCORERS = ("judge", "similarity")


@dataclass(slots=True, kw_only=True)
class ExperimentSettings:
    """``experiment:`` on a deployment: a share of its requests answered by (split) or copied to
    (``shadow``) a second target, both arms' answers kept in the evaluation run
    ``experiment:NAME`` (server/experiments.py)."""

    target: TargetSettings  # read by hand: {deployment: NAME} or {provider: P, model: M}
    share: Annotated[float, Key("a share between 0 and 1", lambda v: None if 0 <= v <= 1 else
                                f"must be a share between 0 and 1, got {v!r}", doc="the share of requests, 0 to 1")]
    # false: the share is answered by the target (split); true: it is also sent to the target,
    # whose answer is scored and never returned.
    shadow: Annotated[bool, Key("true or false")] = False
    scorer: Annotated[str | None, Key("judge:DEPLOYMENT or similarity:DEPLOYMENT")] = None
    rubric: Annotated[str | None, Key("a string: what the judge grades by")] = None
    # shadow: copies in flight at once in this process; one more is dropped (and counted).
    max_in_flight: Annotated[int, Key("a whole number of requests", positive("must be at least 1"))] = 16


@dataclass(slots=True, kw_only=True)
class DeploymentSettings:
    name: str
    targets: list[TargetSettings]
    strategy: Annotated[str, Key(choices=STRATEGIES)] = "weighted"
    fallbacks: Annotated[list[str], Key("a list of deployment names")] = field(default_factory=list)
    # Seconds to the upstream's status line and headers (the first byte of a stream), and of
    # silence between later bytes.
    timeout: Annotated[float, Key("seconds as a number", _seconds)] = 60.0
    # Seconds for the whole answer of one upstream call, streams included.
    max_duration: Annotated[float, Key("seconds as a number", _seconds)] = MAX_DURATION_S
    retries: Annotated[int, Key(check=at_least(0, "must be 0 or more"))] = 0
    # The most of the traffic each provider (by name) may get.
    max_share: Annotated[dict[str, Share], Key("a mapping of provider name to a share 0..1")] = field(
        default_factory=dict)
    reasoning: ReasoningSettings = field(default_factory=ReasoningSettings)
    # Request fields merged into every request to this deployment (e.g. a thinking setting).
    params: Annotated[dict[str, Any], Key("a mapping of request fields")] = field(default_factory=dict)
    # The customer price; the targets' facts (catalog prices) are the provider's cost.
    price: Annotated[PriceSettings | None, Key(
        "a mapping of input, output, cached_input, cache_write, cache_hit")] = None
    # Requests and tokens per minute for the whole deployment, every caller together; None: no limit.
    rpm: Annotated[int | None, Key("requests per minute as a whole number", positive(
        "must be a positive number of requests per minute; remove the key for no limit"))] = None
    tpm: Annotated[int | None, Key("tokens per minute as a whole number", positive(
        "must be a positive number of tokens per minute; remove the key for no limit"))] = None
    # The content policy its requests and answers are checked under (safety.policies); None: none.
    safety: Annotated[str | None, Key("the name of a policy under safety.policies")] = None
    # strategy quality-cost: the evaluation runs its targets' scores come from, and how much
    # quality the cheapest target may give up against the best for a request's kind.
    evidence: Annotated[list[str], Key("a list of evaluation run names")] = field(default_factory=list)
    max_quality_drop: Annotated[float, Key("a share between 0 and 1", _share)] = 0.02
    # What the request log keeps of its requests' bodies: nothing (false), every request's (true),
    # or those of failed requests (errors); with secrets and personal data redacted.
    log_payloads: Annotated[Any, Key("true, false or errors", _log_payloads)] = False
    # Whether its requests' spans carry the messages (redacted); None: telemetry.capture_content.
    capture_content: Annotated[bool | None, Key("true or false")] = None
    # Its answers kept and given again to the same requests (cache/); None: not cached.
    cache: DeploymentCache | None = None
    # A second target answering (or shadowing) a share of its requests; None: none. Read by hand.
    experiment: ExperimentSettings | None = None


TARGET: Shape[TargetSettings] = Shape(TargetSettings)
# A deployment with one target gives its keys beside its own; a weight would mean nothing there.
ONE_TARGET: Shape[TargetSettings] = Shape(TargetSettings, skip=("weight",))
DEPLOYMENT: Shape[DeploymentSettings] = Shape(DeploymentSettings, by_hand=("name", "targets", "experiment"))
EXPERIMENT: Shape[ExperimentSettings] = Shape(ExperimentSettings, by_hand=("target",))


def read_deployments(reader: Reader, value: Any, path: str, earlier: Mapping[str, Any]) -> Any:
    """The ``deployments:`` list, by name; reads after ``providers:``, which its targets name."""
    if not value:
        return {}
    if not reader.expect(value, list, path, "a list of deployments"):
        return INVALID
    providers: Mapping[str, ProviderSettings] = earlier.get("providers", {})
    safety = earlier.get("safety")
    policies: Collection[str] = safety.policies if safety is not None else ()
    deployments: dict[str, DeploymentSettings] = {}
    bodies = {body["name"]: body for body in value if isinstance(body, dict) and isinstance(body.get("name"), str)}
    for index, body in enumerate(value):
        body = with_named_targets(reader, body, bodies, f"{path}[{index}]")
        body = with_named_experiment(reader, body, bodies, f"{path}[{index}]")
        deployment = read_deployment(reader, body, f"{path}[{index}]", path, providers, policies)
        if deployment is None:
            continue
        if deployment.name in deployments:
            reader.fail(f"{path}[{index}].name", f"'{deployment.name}' is used twice; deployment names must be unique")
        deployments[deployment.name] = deployment
    for deployment in deployments.values():
        for fallback in deployment.fallbacks:
            if fallback not in deployments:
                reader.fail(join(path, f"{deployment.name}.fallbacks"),
                            f"'{fallback}' is not a deployment; name one of: {', '.join(deployments)}")
        experiment = deployment.experiment
        if experiment is not None and experiment.scorer is not None:
            scored_by = experiment.scorer.partition(":")[2]
            if scored_by not in deployments:
                reader.fail(join(path, f"{deployment.name}.experiment.scorer"),
                            f"'{scored_by}' is not a deployment; name one of: {', '.join(deployments)}")
        cache = deployment.cache
        if cache is not None and cache.mode == "semantic" and cache.embedder != "local" \
                and cache.embedder not in deployments:
            reader.fail(join(path, f"{deployment.name}.cache.embedder"),
                        f"'{cache.embedder}' is not a deployment; say local (all-MiniLM-L6-v2 in this process) "
                        "or name an embeddings deployment")
    if safety is not None:
        for where, problem in moderation_problems(safety, deployments):
            reader.fail(where, problem)
    return deployments


def with_named_targets(reader: Reader, body: Any, bodies: Mapping[str, Any], where: str) -> Any:
    """``body`` with each target given as ``{deployment: NAME}`` replaced by NAME's one target (its
    provider, model and facts), which keeps the name (``TargetSettings.deployment``)."""
    if not isinstance(body, dict) or not isinstance(body.get("targets"), list):
        return body
    targets = []
    for i, item in enumerate(body["targets"]):
        if not isinstance(item, dict) or "deployment" not in item or "provider" in item or "model" in item:
            targets.append(item)
            continue
        name = item["deployment"]
        named = bodies.get(name) if isinstance(name, str) else None
        if named is None or named is body:
            reader.fail(f"{where}.targets[{i}].deployment", f"{name!r} is not another deployment of this config")
            continue
        if "targets" in named:
            reader.fail(f"{where}.targets[{i}].deployment", f"'{name}' has targets: of its own; a target may name "
                        "a deployment of one provider and model")
            continue
        target = {key: value for key, value in named.items() if key in ONE_TARGET.keys}
        targets.append({**target, **{k: v for k, v in item.items() if k != "deployment"}, "deployment": name})
    return {**body, "targets": targets}


def with_named_experiment(reader: Reader, body: Any, bodies: Mapping[str, Any], where: str) -> Any:
    """``body`` with its ``experiment.target`` given as ``{deployment: NAME}`` replaced by NAME's one
    target, as ``with_named_targets`` does for ``targets:``."""
    experiment = body.get("experiment") if isinstance(body, dict) else None
    item = experiment.get("target") if isinstance(experiment, dict) else None
    if not isinstance(experiment, dict) or not isinstance(item, dict) or "deployment" not in item \
            or "provider" in item or "model" in item:
        return body
    name = item["deployment"]
    named = bodies.get(name) if isinstance(name, str) else None
    if named is None or named is body:
        reader.fail(f"{where}.experiment.target.deployment", f"{name!r} is not another deployment of this config")
        return {**body, "experiment": None}
    if "targets" in named:
        reader.fail(f"{where}.experiment.target.deployment", f"'{name}' has targets: of its own; an experiment's "
                    "target may name a deployment of one provider and model")
        return {**body, "experiment": None}
    target = {key: value for key, value in named.items() if key in ONE_TARGET.keys}
    target = {**target, **{k: v for k, v in item.items() if k != "deployment"}, "deployment": name}
    return {**body, "experiment": {**experiment, "target": target}}


def read_experiment(reader: Reader, body: Any, path: str,
                    providers: Mapping[str, ProviderSettings]) -> ExperimentSettings | None:
    """A deployment's ``experiment:``; None where it is absent or has a problem (reported)."""
    if body is None:
        return None
    values = EXPERIMENT.values(reader, body, path)
    if values is None:
        return None
    item = body.get("target")
    if item is None:
        reader.fail(f"{path}.target", "is required: {deployment: NAME} or {provider: P, model: M}, what answers "
                    "the experiment's share")
        return None
    if isinstance(item, dict) and "deployment" in item and "provider" not in item:
        reader.fail(f"{path}.target", "names a deployment, which only a deployment of the config file can do; "
                    "give provider: and model:")
        return None
    target = read_target(reader, ONE_TARGET, item, f"{path}.target", providers)
    experiment = EXPERIMENT.build(reader, body, {**values, "target": target}, path) if target is not None else None
    if experiment is None:
        return None
    ok = True
    if experiment.scorer is not None:
        kind, _, scored_by = experiment.scorer.partition(":")
        if kind not in EXPERIMENT_SCORERS or not scored_by:
            reader.fail(f"{path}.scorer", f"must be judge:DEPLOYMENT or similarity:DEPLOYMENT, got "
                        f"{experiment.scorer!r}")
            ok = False
        elif kind == "similarity" and not experiment.shadow:
            reader.fail(f"{path}.scorer", "similarity compares the copy's answer with the main one, so it needs "
                        "shadow: true; a split experiment is scored by judge:DEPLOYMENT")
            ok = False
    if experiment.rubric is not None and not (experiment.scorer or "").startswith("judge:"):
        reader.fail(f"{path}.rubric", "is what a judge grades by: set scorer: judge:DEPLOYMENT, or remove rubric:")
        ok = False
    return experiment if ok else None


def read_one_deployment(reader: Reader, body: Any, providers: Mapping[str, ProviderSettings],
                        names: Collection[str] | None = None,
                        policies: Collection[str] = ()) -> DeploymentSettings | None:
    """One deployment given on its own (through the admin API), read as an entry of the config
    file's ``deployments:`` is: its problems are reported with the same key paths. ``names``: the
    deployments its fallbacks may name (None: not checked); ``policies``: the content policies
    its ``safety:`` may name."""
    deployment = read_deployment(reader, body, "deployments[]", "deployments", providers, policies)
    if deployment is None or names is None:
        return deployment
    for fallback in deployment.fallbacks:
        if fallback != deployment.name and fallback not in names:
            reader.fail(join("deployments", f"{deployment.name}.fallbacks"),
                        f"'{fallback}' is not a deployment; name one of: {', '.join(names)}")
    return deployment


def read_deployment(reader: Reader, body: Any, where: str, section: str,
                    providers: Mapping[str, ProviderSettings],
                    policies: Collection[str] = ()) -> DeploymentSettings | None:
    """One deployment; None when it has no name or no usable target (the problems are reported)."""
    if not reader.expect(body, dict, where, "a mapping with name:, provider: and model:"):
        return None
    name = body.get("name")
    if not isinstance(name, str) or not name:
        reader.fail(f"{where}.name", 'is required: what clients send as "model"')
        return None
    path = join(section, name)
    values = DEPLOYMENT.values(reader, body, path, also=ONE_TARGET.keys)
    if values is None:
        return None
    targets: list[TargetSettings] = []
    if "targets" in body:
        if "provider" in body or "model" in body:
            reader.fail(path, "give either provider: and model:, or targets:, not both")
        listed = body["targets"]
        # A deployment's api: is the default of its targets that do not say.
        api = _api(reader, body.get("api"), f"{path}.api")
        if reader.expect(listed, list, f"{path}.targets", "a list of {provider, model, weight}"):
            for i, item in enumerate(listed):
                if api is not None and isinstance(item, dict) and item.get("api") is None:
                    item = {**item, "api": api}
                target = read_target(reader, TARGET, item, f"{path}.targets[{i}]", providers)
                if target is not None:
                    targets.append(target)
        if not listed:
            reader.fail(f"{path}.targets", "is empty; list at least one {provider, model}")
    else:
        target = read_target(reader, ONE_TARGET, body, path, providers, inline=True)
        if target is not None:
            targets.append(target)
    if not targets:
        return None
    shares = values.get("max_share", {})
    for provider in [p for p in shares if p not in providers]:
        reader.fail(f"{path}.max_share.{provider}", "is not a configured provider")
        del shares[provider]
    deployment = DeploymentSettings(name=name, targets=targets, **values)
    if "experiment" in body:
        deployment.experiment = read_experiment(reader, body["experiment"], f"{path}.experiment", providers)
    if deployment.safety is not None and deployment.safety not in policies:
        known = ", ".join(policies) or "none are defined"
        reader.fail(f"{path}.safety", f"'{deployment.safety}' is not a policy under safety.policies ({known}); "
                    "define it there or remove safety:")
        deployment.safety = None
    if deployment.strategy == "quality-cost":
        if not deployment.evidence:
            reader.fail(f"{path}.evidence", "is required by strategy quality-cost: the evaluation runs (modelgate eval "
                        "run --name NAME) of its targets' deployments")
        for i, target in enumerate(deployment.targets):
            if target.deployment is None:
                reader.fail(f"{path}.targets[{i}]", "a quality-cost target names a deployment ({deployment: NAME}), "
                            "which the evidence's runs evaluated")
    if 0 < deployment.max_duration < deployment.timeout:
        reader.fail(f"{path}.max_duration", f"must be at least the timeout ({deployment.timeout:g}s): the "
                    "whole answer cannot take less time than its first byte may")
    return deployment


def _api(reader: Reader, value: Any, path: str) -> str | None:
    """A deployment-level ``api:`` beside ``targets:``, checked as a target's would be; None if absent or wrong."""
    if value is None:
        return None
    if value not in APIS:
        reader.fail(path, f"must be one of {', '.join(APIS)}, got {value!r}")
        return None
    return str(value)


def read_target(reader: Reader, shape: Shape[TargetSettings], body: Any, path: str,
                providers: Mapping[str, ProviderSettings], *, inline: bool = False) -> TargetSettings | None:
    """One target, its facts merged over the catalog's; ``inline``: its keys sit in the deployment's."""
    values = shape.values(reader, body, path, what="a mapping with provider: and model:", strict=not inline)
    if values is None:
        return None
    provider = values.get("provider")
    if provider is not None and provider not in providers:
        known = ", ".join(providers) or "none are configured"
        reader.fail(f"{path}.provider", f"'{provider}' is not a configured provider ({known})")
        return None
    if provider is not None and values.get("api") == "responses":
        kind = providers[provider].type
        if kind not in RESPONSES_PROVIDER_TYPES:
            reader.fail(f"{path}.api", f"'responses' needs a provider of type {' or '.join(RESPONSES_PROVIDER_TYPES)} "
                        f"(the Responses API is OpenAI's); provider '{provider}' is of type {kind}: "
                        "remove api: or set it to chat")
            return None
    target = shape.build(reader, body, values, path)
    if target is None:
        return None
    settings = providers[target.provider]
    if settings.type != LOCAL:
        if not _engine_checked(reader, target, settings.type, path, None, body):
            return None
    else:
        store = ModelStore(settings.models_dir or ".", relative_to=reader.folder)
        try:
            model = store.resolve(target.model)
        except ModelStoreError as error:
            reader.fail(f"{path}.model", str(error))
            return None
        if store.get(target.model) is None:  # a path: absolute, so that it means the same from any folder
            target.model = str(model.path)
        target.facts = model.facts().merged(target.facts)
        if not _engine_checked(reader, target, settings.type, path, model.path, body):
            return None
        return target
    entry = reader.catalog.get(target.model)
    if entry is not None:
        target.facts = entry.facts.merged(target.facts)
    return target


def _engine_checked(reader: Reader, target: TargetSettings, kind: str, path: str, model: Path | None,
                    given: Mapping[str, Any]) -> bool:
    """Whether the engine keys suit the target's provider: a local one gets its engine (the
    defaults where none is given) and a model its engine can load (``model``); any other has none.
    ``given``: the target's own keys, as written."""
    if kind != LOCAL:
        if target.local is not None:
            reader.fail(path, f"{', '.join(k + ':' for k in sorted(ENGINE.keys))} are for providers of type "
                        f"{LOCAL}; provider '{target.provider}' is of type {kind}: remove them")
            return False
        return True
    engine = target.local = target.local or EngineSettings()
    ok = True
    needed = NEEDS.get(engine.engine)
    elsewhere = engine.vllm is not None and engine.vllm.python is not None  # vLLM in an environment of its own
    if needed is not None and not elsewhere and importlib.util.find_spec(needed[0]) is None:
        package, extra = needed
        elsewhere_hint = ("; or set vllm.python: to the interpreter of an environment where it is installed"
                          if engine.engine == "vllm" else "")
        reader.fail(join(path, "engine"), f"engine {engine.engine} needs the {package} package on this machine, "
                    f"which is not installed: pip install 'modelgate[{extra}]'{elsewhere_hint}")
        ok = False
    if engine.engine == "ray":
        ok = _ray_checked(reader, target, engine, path, given) and ok
    elif engine.ray is not None:
        reader.fail(join(path, "ray"), f"is for engine: ray, and this target's engine is {engine.engine}: "
                    "remove ray: or set engine: ray")
        ok = False
    if engine.engine == "vllm":
        ok = _vllm_checked(reader, target, engine, path) and ok
    elif engine.vllm is not None:
        reader.fail(join(path, "vllm"), f"is for engine: vllm, and this target's engine is {engine.engine}: "
                    "remove vllm: or set engine: vllm")
        ok = False
    try:
        resolve_model(str(model), engine=engine.engine)
    except ModelNotFound as problem:
        reader.fail(join(path, "model"), str(problem))
        ok = False
    return ok


def _vllm_checked(reader: Reader, target: TargetSettings, engine: EngineSettings, path: str) -> bool:
    """The vllm engine's keys: ``python`` made absolute (from the config file's folder) and checked
    to be an interpreter there."""
    vllm = engine.vllm or VllmSettings()
    if vllm.python is None:
        target.local = replace(engine, vllm=vllm)
        return True
    python = reader.path(vllm.python)
    target.local = replace(engine, vllm=replace(vllm, python=str(python)))
    if not python.is_file() or not os.access(python, os.X_OK):
        reader.fail(join(path, "vllm.python"), f"{python} is not an executable file: give the Python interpreter of "
                    "the environment vLLM is installed in (e.g. /opt/vllm/bin/python, made by python -m venv "
                    "/opt/vllm && /opt/vllm/bin/pip install vllm)")
        return False
    return True


def _ray_checked(reader: Reader, target: TargetSettings, engine: EngineSettings, path: str,
                 given: Mapping[str, Any]) -> bool:
    """The ray engine's keys: Ray Serve sets the replicas, and the gateway does not see what they cost."""
    ray = engine.ray or RaySettings()
    target.local = replace(engine, ray=ray)
    ok = True
    if "replicas" in given:
        reader.fail(join(path, "replicas"), "is not used with engine: ray: Ray Serve scales the replicas between "
                    "ray.min_replicas and ray.max_replicas; set those instead")
        ok = False
    if ray.max_replicas < ray.min_replicas:
        reader.fail(join(path, "ray.max_replicas"), f"must be at least ray.min_replicas ({ray.min_replicas})")
        ok = False
    if engine.compute_cost is not None:
        reader.fail(join(path, "compute_cost"), "is not supported with engine: ray: its replicas run on the Ray "
                    "cluster, where the gateway does not see how many run or for how long; remove it")
        ok = False
    return ok

"""Reads the YAML config file into ``Settings``, checking every key before the server starts.

Strings may hold ``${VAR}`` (the variable must be set) or ``${VAR:-default}``; ``$$`` is a
literal ``$``. Every problem found is reported at once, each naming its key and the fix.

References are swapped for placeholders before the YAML is parsed, so that ``{api_key: ${KEY}}``
in a flow mapping parses, and are expanded afterwards, so that a value with YAML's special
characters in it cannot change the document's structure. A value that is one reference alone
takes the type its text has in YAML (``timeout: ${TIMEOUT:-30}`` is a number).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from modelgate.catalog import Catalog, facts_from_mapping
from modelgate.catalog.facts import ModelFacts
from modelgate.config.settings import (
    CAPABILITIES,
    STRATEGIES,
    DeploymentSettings,
    PriceSettings,
    ReasoningSettings,
    RoutingSettings,
    Settings,
    TargetSettings,
)
from modelgate.providers.registry import PROVIDER_TYPES
from modelgate.providers.settings import ProviderSettings

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
}
# Hosts whose OpenAI-compatible APIs have quirks of their own (providers/openai_profiles.py).
FLAVOR_BY_HOST = {
    "api.x.ai": "xai",
    "api.deepseek.com": "deepseek",
    "api.mistral.ai": "mistral",
    "api.groq.com": "groq",
    "api.together.xyz": "together",
    "api.fireworks.ai": "fireworks",
    "models.github.ai": "github",
    "api.llama.com": "meta",
}

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PLACEHOLDER = re.compile(r"__modelgate_ref_(\d+)__")

TOP_KEYS = {"master_key", "providers", "deployments", "database_url", "redis_url", "routing", "journal_dir"}
PROVIDER_KEYS = {"type", "base_url", "api_key", "api_version", "headers", "flavor", "connect_timeout"}
FACT_KEYS = {
    "context_window",
    "max_output_tokens",
    "input_price",
    "output_price",
    "cached_input_price",
    "cache_write_price",
    "capabilities",
    "mode",
}
TARGET_KEYS = {"provider", "model", "weight"} | FACT_KEYS
DEPLOYMENT_KEYS = (
    {"name", "provider", "model", "targets", "strategy", "fallbacks", "timeout", "retries", "max_share"}
    | {"reasoning", "params", "price"}
    | {"rpm", "tpm"}
    | FACT_KEYS
)
REASONING_KEYS = {"show", "split_think_tags"}
PRICE_KEYS = {"input", "output", "cached_input", "cache_write"}
ROUTING_KEYS = {"failures", "cooldown", "redis_prefix"}


class ConfigError(Exception):
    """The config file cannot be used; the message lists every problem and its fix."""


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, key: str, problem: str) -> None:
        self.problems.append(f"{key}: {problem}")

    def keys(self, where: str, data: Mapping[str, Any], allowed: set[str]) -> None:
        for key in data:
            if key not in allowed:
                self.fail(f"{where}.{key}" if where else key,
                          f"unknown key; allowed here: {', '.join(sorted(allowed))}")

    def typed(self, key: str, value: Any, kind: type | tuple[type, ...], what: str) -> bool:
        # bool is an int in Python; a YAML `true` is never a valid number here.
        if isinstance(value, bool) and kind is not bool and bool not in _as_tuple(kind):
            self.fail(key, f"expected {what}, got {value!r}")
            return False
        if not isinstance(value, kind):
            self.fail(key, f"expected {what}, got {type(value).__name__} {value!r}")
            return False
        return True


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def protect_references(text: str) -> tuple[str, list[str]]:
    """Swap every ``${...}`` or ``$$`` in the file's text for a placeholder YAML reads as plain text."""
    references: list[str] = []

    def swap(match: re.Match[str]) -> str:
        references.append(match.group(0))
        return f"__modelgate_ref_{len(references) - 1}__"

    return _VAR.sub(swap, text), references


def _typed(text: str) -> Any:
    """A lone reference's value as YAML would type it: a number or a boolean, else the text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def expand_env(value: Any, env: Mapping[str, str], key: str, checker: _Checker,
               references: list[str] | None = None) -> Any:
    """Expand ``${VAR}`` references (or their placeholders) in every string of a parsed document."""
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            checker.fail(key, f"environment variable {name} is not set; export {name}=... "
                              f"or give a default as ${{{name}:-value}}")
            return ""

        if references is not None and _PLACEHOLDER.search(value):
            whole = _PLACEHOLDER.fullmatch(value)
            value = _PLACEHOLDER.sub(lambda m: references[int(m.group(1))], value)
            expanded = _VAR.sub(substitute, value)
            return _typed(expanded) if whole else expanded
        return _VAR.sub(substitute, value)
    if isinstance(value, dict):
        return {k: expand_env(v, env, f"{key}.{k}" if key else str(k), checker, references)
                for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, f"{key}[{i}]", checker, references) for i, v in enumerate(value)]
    return value


def load_settings(path: str | Path, env: Mapping[str, str], catalog: Catalog | None = None) -> Settings:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    protected, references = protect_references(text)
    try:
        data = yaml.safe_load(protected)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return parse_settings(data or {}, env, catalog, source=str(path), references=references)


def parse_settings(
    data: Any, env: Mapping[str, str], catalog: Catalog | None = None, source: str = "config",
    references: list[str] | None = None,
) -> Settings:
    """Settings from a parsed document; ``references`` are those ``protect_references`` swapped out."""
    checker = _Checker()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with providers: and deployments:")
    data = expand_env(data, env, "", checker, references)
    checker.keys("", data, TOP_KEYS)
    catalog = catalog or Catalog.builtin()
    settings = Settings()

    master_key = data.get("master_key")
    if master_key is not None and checker.typed("master_key", master_key, str, "a string"):
        if not master_key:
            checker.fail("master_key", "is empty; set a secret value or remove the key to run without auth")
        settings.master_key = master_key or None
    for key in ("database_url", "redis_url"):
        value = data.get(key)
        if value is not None and checker.typed(key, value, str, "a URL string"):
            setattr(settings, key, value)
    journal_dir = data.get("journal_dir")
    if journal_dir is not None and checker.typed("journal_dir", journal_dir, str, "a directory path"):
        if not journal_dir:
            checker.fail("journal_dir", "is empty; name a directory or remove the key for ./journal")
        settings.journal_dir = journal_dir or settings.journal_dir
    routing = data.get("routing", {})
    if checker.typed("routing", routing, dict, "a mapping with failures:, cooldown:, redis_prefix:"):
        settings.routing = _parse_routing(routing, checker)

    providers = data.get("providers") or {}
    if checker.typed("providers", providers, dict, "a mapping of provider name to settings"):
        for name, body in providers.items():
            provider = _parse_provider(str(name), body, checker)
            if provider is not None:
                settings.providers[provider.name] = provider

    deployments = data.get("deployments") or []
    if checker.typed("deployments", deployments, list, "a list of deployments"):
        for index, body in enumerate(deployments):
            deployment = _parse_deployment(index, body, settings.providers, catalog, checker)
            if deployment is None:
                continue
            if deployment.name in settings.deployments:
                checker.fail(f"deployments[{index}].name",
                             f"'{deployment.name}' is used twice; deployment names must be unique")
            settings.deployments[deployment.name] = deployment
    for deployment in settings.deployments.values():
        for fallback in deployment.fallbacks:
            if fallback not in settings.deployments:
                checker.fail(f"deployments.{deployment.name}.fallbacks",
                             f"'{fallback}' is not a deployment; name one of: "
                             f"{', '.join(settings.deployments)}")

    if checker.problems:
        raise ConfigError(f"{source} has {len(checker.problems)} problem(s):\n  "
                          + "\n  ".join(checker.problems))
    return settings


def _parse_provider(name: str, body: Any, checker: _Checker) -> ProviderSettings | None:
    key = f"providers.{name}"
    if not checker.typed(key, body, dict, "a mapping with type: and api_key:"):
        return None
    checker.keys(key, body, PROVIDER_KEYS)
    kind = body.get("type")
    if kind not in PROVIDER_TYPES:
        checker.fail(f"{key}.type", f"must be one of {', '.join(PROVIDER_TYPES)}, got {kind!r}")
        return None
    base_url = body.get("base_url") or DEFAULT_BASE_URLS.get(kind)
    if base_url is None:
        checker.fail(f"{key}.base_url", "is required for type azure: https://RESOURCE.openai.azure.com")
        return None
    if not checker.typed(f"{key}.base_url", base_url, str, "a URL string"):
        return None
    if not base_url.startswith(("http://", "https://")):
        checker.fail(f"{key}.base_url", f"must start with http:// or https://, got {base_url!r}")
    api_key = body.get("api_key")
    if api_key is not None:
        checker.typed(f"{key}.api_key", api_key, str, "a string")
        api_key = api_key or None
    if kind in ("anthropic", "gemini", "azure") and api_key is None:
        env_name = f"{name.upper()}_API_KEY"
        checker.fail(f"{key}.api_key",
                     f"no key for provider '{name}': set {env_name} and add api_key: ${{{env_name}}}")
    api_version = body.get("api_version")
    if api_version is not None:
        checker.typed(f"{key}.api_version", api_version, str, 'a quoted date string such as "2024-10-21"')
    headers = body.get("headers") or {}
    if checker.typed(f"{key}.headers", headers, dict, "a mapping of header name to value"):
        headers = {str(k): str(v) for k, v in headers.items()}
    host = base_url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    flavor = body.get("flavor") or FLAVOR_BY_HOST.get(host, "openai")
    connect_timeout = body.get("connect_timeout", 5.0)
    if checker.typed(f"{key}.connect_timeout", connect_timeout, (int, float), "seconds as a number"):
        connect_timeout = float(connect_timeout)
    return ProviderSettings(
        name=name, type=kind, base_url=base_url.rstrip("/"), api_key=api_key,
        api_version=api_version if isinstance(api_version, str) else None,
        headers=headers if isinstance(headers, dict) else {}, flavor=str(flavor),
        connect_timeout=connect_timeout if isinstance(connect_timeout, float) else 5.0,
    )


def _parse_facts(key: str, body: Mapping[str, Any], checker: _Checker) -> ModelFacts:
    facts = {k: v for k, v in body.items() if k in FACT_KEYS}
    for name in ("context_window", "max_output_tokens"):
        if (name in facts and checker.typed(f"{key}.{name}", facts[name], int, "a number of tokens")
                and facts[name] <= 0):
            checker.fail(f"{key}.{name}", "must be a positive number of tokens")
    for name in ("input_price", "output_price", "cached_input_price", "cache_write_price"):
        if name in facts:
            checker.typed(f"{key}.{name}", facts[name], (int, float), "USD per million tokens as a number")
    capabilities = facts.get("capabilities", [])
    if checker.typed(f"{key}.capabilities", capabilities, list, f"a list of {', '.join(CAPABILITIES)}"):
        for capability in capabilities:
            if capability not in CAPABILITIES:
                checker.fail(f"{key}.capabilities",
                             f"unknown capability {capability!r}; known: {', '.join(CAPABILITIES)}")
    if facts.get("mode", "chat") not in ("chat", "embedding"):
        checker.fail(f"{key}.mode", "must be chat or embedding")
    return facts_from_mapping(facts)


def _parse_target(
    key: str, body: Mapping[str, Any], providers: Mapping[str, ProviderSettings],
    catalog: Catalog, checker: _Checker,
) -> TargetSettings | None:
    provider, model = body.get("provider"), body.get("model")
    if not isinstance(provider, str) or not provider:
        checker.fail(f"{key}.provider", "is required: the name of one of the providers: entries")
        return None
    if provider not in providers:
        known = ", ".join(providers) or "none are configured"
        checker.fail(f"{key}.provider", f"'{provider}' is not a configured provider ({known})")
        return None
    if not isinstance(model, str) or not model:
        checker.fail(f"{key}.model", "is required: the upstream's own model id, e.g. gpt-4o")
        return None
    weight = body.get("weight", 1)
    if checker.typed(f"{key}.weight", weight, (int, float), "a positive number") and weight <= 0:
        checker.fail(f"{key}.weight", "must be positive")
    own = _parse_facts(key, body, checker)
    entry = catalog.get(model)
    facts = entry.facts.merged(own) if entry else own
    return TargetSettings(provider=provider, model=model, weight=float(weight), facts=facts)


def _parse_deployment(
    index: int, body: Any, providers: Mapping[str, ProviderSettings], catalog: Catalog, checker: _Checker
) -> DeploymentSettings | None:
    key = f"deployments[{index}]"
    if not checker.typed(key, body, dict, "a mapping with name:, provider: and model:"):
        return None
    name = body.get("name")
    if not isinstance(name, str) or not name:
        checker.fail(f"{key}.name", "is required: what clients send as \"model\"")
        return None
    key = f"deployments.{name}"
    checker.keys(key, body, DEPLOYMENT_KEYS)
    targets: list[TargetSettings] = []
    if "targets" in body:
        if "provider" in body or "model" in body:
            checker.fail(key, "give either provider: and model:, or targets:, not both")
        raw_targets = body["targets"]
        if checker.typed(f"{key}.targets", raw_targets, list, "a list of {provider, model, weight}"):
            for i, raw in enumerate(raw_targets):
                tkey = f"{key}.targets[{i}]"
                if checker.typed(tkey, raw, dict, "a mapping with provider: and model:"):
                    checker.keys(tkey, raw, TARGET_KEYS)
                    target = _parse_target(tkey, raw, providers, catalog, checker)
                    if target:
                        targets.append(target)
        if not raw_targets:
            checker.fail(f"{key}.targets", "is empty; list at least one {provider, model}")
    else:
        target = _parse_target(key, body, providers, catalog, checker)
        if target:
            targets.append(target)
    if not targets:
        return None
    deployment = DeploymentSettings(name=name, targets=targets)
    strategy = body.get("strategy", "weighted")
    if strategy not in STRATEGIES:
        checker.fail(f"{key}.strategy", f"must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    deployment.strategy = str(strategy)
    fallbacks = body.get("fallbacks", [])
    if checker.typed(f"{key}.fallbacks", fallbacks, list, "a list of deployment names"):
        deployment.fallbacks = [str(f) for f in fallbacks]
    timeout = body.get("timeout", 60)
    if checker.typed(f"{key}.timeout", timeout, (int, float), "seconds as a number"):
        if timeout <= 0:
            checker.fail(f"{key}.timeout", "must be a positive number of seconds")
        deployment.timeout = float(timeout)
    retries = body.get("retries", 0)
    if checker.typed(f"{key}.retries", retries, int, "a whole number") and retries < 0:
        checker.fail(f"{key}.retries", "must be 0 or more")
    deployment.retries = int(retries) if isinstance(retries, int) else 0
    max_share = body.get("max_share", {})
    if checker.typed(f"{key}.max_share", max_share, dict, "a mapping of provider name to a share 0..1"):
        for provider, share in max_share.items():
            if provider not in providers:
                checker.fail(f"{key}.max_share.{provider}", "is not a configured provider")
            elif not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 < share <= 1:
                checker.fail(f"{key}.max_share.{provider}", f"must be a share between 0 and 1, got {share!r}")
            else:
                deployment.max_share[str(provider)] = float(share)
    reasoning = body.get("reasoning", {})
    if checker.typed(f"{key}.reasoning", reasoning, dict, "a mapping with show: and split_think_tags:"):
        checker.keys(f"{key}.reasoning", reasoning, REASONING_KEYS)
        for flag in REASONING_KEYS:
            if flag in reasoning:
                checker.typed(f"{key}.reasoning.{flag}", reasoning[flag], bool, "true or false")
        deployment.reasoning = ReasoningSettings(
            show=bool(reasoning.get("show", True)),
            split_think_tags=bool(reasoning.get("split_think_tags", False)),
        )
    params = body.get("params", {})
    if checker.typed(f"{key}.params", params, dict, "a mapping of request fields"):
        deployment.params = dict(params)
    price = body.get("price")
    if price is not None and checker.typed(f"{key}.price", price, dict,
                                           "a mapping of input, output, cached_input, cache_write"):
        checker.keys(f"{key}.price", price, PRICE_KEYS)
        for kind, value in price.items():
            if (kind in PRICE_KEYS and checker.typed(f"{key}.price.{kind}", value, (int, float),
                                                     "USD per million tokens as a number") and value < 0):
                checker.fail(f"{key}.price.{kind}", "must be 0 or more")
        deployment.price = PriceSettings(**{k: float(v) for k, v in price.items()
                                            if k in PRICE_KEYS and isinstance(v, (int, float))})
    for limit, unit in (("rpm", "requests"), ("tpm", "tokens")):
        value = body.get(limit)
        if value is not None and checker.typed(f"{key}.{limit}", value, int, f"{unit} per minute as a whole number"):
            if value <= 0:
                checker.fail(f"{key}.{limit}", f"must be a positive number of {unit} per minute; "
                                               "remove the key for no limit")
            else:
                setattr(deployment, limit, value)
    return deployment


def _parse_routing(body: Mapping[str, Any], checker: _Checker) -> RoutingSettings:
    checker.keys("routing", body, ROUTING_KEYS)
    routing = RoutingSettings()
    failures = body.get("failures", routing.failures)
    if checker.typed("routing.failures", failures, int, "a whole number") and failures < 1:
        checker.fail("routing.failures", "must be 1 or more: the failures in a row that open a breaker")
    elif isinstance(failures, int):
        routing.failures = failures
    cooldown = body.get("cooldown", routing.cooldown)
    if checker.typed("routing.cooldown", cooldown, (int, float), "seconds as a number") and cooldown <= 0:
        checker.fail("routing.cooldown", "must be a positive number of seconds")
    elif isinstance(cooldown, (int, float)):
        routing.cooldown = float(cooldown)
    prefix = body.get("redis_prefix", routing.redis_prefix)
    if checker.typed("routing.redis_prefix", prefix, str, "a string such as 'modelgate:'"):
        routing.redis_prefix = prefix
    return routing

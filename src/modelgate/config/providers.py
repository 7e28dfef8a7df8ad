"""The ``providers:`` section: provider name -> ``ProviderSettings``, with defaults per provider type.

The keys are the fields of ``ProviderSettings`` (providers/settings.py); the types are those of the
registry (providers/registry.py). A provider without ``base_url`` gets its type's public API; the
``flavor`` of an OpenAI-compatible API follows from its host unless given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelgate.config.fields import INVALID, Key, Reader, Shape, join
from modelgate.providers.registry import PROVIDER_TYPES
from modelgate.providers.settings import ProviderSettings

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
}
# What a base_url looks like for the types that have no public default.
BASE_URL_EXAMPLES = {"azure": "https://RESOURCE.openai.azure.com"}
# Types whose APIs have no keyless mode (an OpenAI-compatible server on one's own machine may).
KEY_REQUIRED = frozenset({"anthropic", "gemini", "azure"})
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


def _web_url(value: str) -> str | None:
    return None if value.startswith(("http://", "https://")) else f"must start with http:// or https://, got {value!r}"


def _header_values(reader: Reader, value: Any, path: str, earlier: Mapping[str, Any]) -> Any:
    if not reader.expect(value, dict, path, "a mapping of header name to value"):
        return INVALID
    return {str(k): str(v) for k, v in value.items()}


PROVIDER: Shape[ProviderSettings] = Shape(ProviderSettings, skip=("name",), keys={
    "type": Key(doc=f"one of {', '.join(PROVIDER_TYPES)}", choices=tuple(PROVIDER_TYPES)),
    "base_url": Key("a URL string", _web_url),
    "api_version": Key('a quoted date string such as "2024-10-21"'),
    "headers": Key(read=_header_values),
    "connect_timeout": Key("seconds as a number"),
})


def read_providers(reader: Reader, value: Any, path: str, earlier: Mapping[str, Any]) -> Any:
    """The ``providers:`` mapping, by name; a provider with a problem that leaves it unusable is left out."""
    if not value:
        return {}
    if not reader.expect(value, dict, path, "a mapping of provider name to settings"):
        return INVALID
    providers: dict[str, ProviderSettings] = {}
    for name, body in value.items():
        provider = read_provider(reader, str(name), body, join(path, name))
        if provider is not None:
            providers[provider.name] = provider
    return providers


def read_provider(reader: Reader, name: str, body: Any, path: str) -> ProviderSettings | None:
    values = PROVIDER.values(reader, body, path, what="a mapping with type: and api_key:")
    if values is None:
        return None
    kind = values.get("type")
    if kind is None:
        if body.get("type") is None:
            reader.fail(join(path, "type"), f"is required: one of {', '.join(PROVIDER_TYPES)}")
        return None
    if body.get("base_url") is None or body.get("base_url") == "":
        default = DEFAULT_BASE_URLS.get(kind)
        if default is None:
            example = BASE_URL_EXAMPLES.get(kind)
            reader.fail(join(path, "base_url"), f"is required for type {kind}" + (f": {example}" if example else ""))
            return None
        values["base_url"] = default
    if "base_url" not in values:
        return None
    base_url = values["base_url"] = values["base_url"].rstrip("/")
    values["api_key"] = values.get("api_key") or None
    if kind in KEY_REQUIRED and not body.get("api_key"):
        env_name = f"{name.upper()}_API_KEY"
        reader.fail(join(path, "api_key"),
                    f"no key for provider '{name}': set {env_name} and add api_key: ${{{env_name}}}")
    host = base_url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    values["flavor"] = values.get("flavor") or FLAVOR_BY_HOST.get(host, "openai")
    return PROVIDER.build(reader, body, {"name": name, **values}, path)

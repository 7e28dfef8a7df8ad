"""The ``providers:`` section: provider name -> ``ProviderSettings``, with defaults per provider type.

The keys are the fields of ``ProviderSettings`` (providers/settings.py); the types are those of the
registry (providers/registry.py). A provider without ``base_url`` gets its type's public API; the
``flavor`` of an OpenAI-compatible API follows from its host unless given.

A provider of type ``local`` runs models in this installation: it has no URL but a ``models_dir``,
the model store's folder (catalog/model_store.py), relative to the config file's folder.

Egress proxy: a provider without a ``proxy`` key connects through the proxy the environment names
for its URL's scheme, ``https_proxy``/``HTTPS_PROXY`` for https and ``http_proxy``/``HTTP_PROXY``
for http (the lower-case variable first, as curl and Python do; a value without a scheme is an
http:// one), unless ``no_proxy``/``NO_PROXY`` names its host or it is a loopback host (a proxy
would reach its own). ``proxy: ""`` connects directly whatever the environment says.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from modelgate.config.fields import INVALID, Key, Reader, Shape, join, nonempty, positive
from modelgate.providers.registry import PROVIDER_TYPES
from modelgate.providers.settings import ProviderSettings

LOCAL = "local"
# The types the config takes: the registry's, and local (its adapter runs the model store's models).
TYPES = tuple(dict.fromkeys([*PROVIDER_TYPES, LOCAL]))
DEFAULT_MODELS_DIR = "./models"
# What a local provider has no use for: it reaches no upstream.
NOT_LOCAL = ("base_url", "api_version", "headers", "flavor", "proxy")
DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
    # A local provider's replicas listen on loopback ports of their own (engines/pool.py).
    "local": "http://127.0.0.1",
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
PROXY_EXAMPLE = "http://proxy.internal:3128"


def _web_url(value: str) -> str | None:
    return None if value.startswith(("http://", "https://")) else f"must start with http:// or https://, got {value!r}"


def proxy_problem(url: str) -> str | None:
    """What keeps ``url`` from being an egress proxy's URL (http://host:port), or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is no number
    except ValueError as exc:
        return str(exc)
    if parts.scheme != "http":
        return "not an http:// URL"
    if not parts.hostname:
        return "no host"
    return None


def _proxy_key(value: str) -> str | None:
    if value and proxy_problem(value):
        return f'must be an http:// URL such as {PROXY_EXAMPLE}, got {value!r}; proxy: "" connects directly'
    return None


def _header_values(reader: Reader, value: Any, path: str, earlier: Mapping[str, Any]) -> Any:
    if not reader.expect(value, dict, path, "a mapping of header name to value"):
        return INVALID
    return {str(k): str(v) for k, v in value.items()}


PROVIDER: Shape[ProviderSettings] = Shape(ProviderSettings, skip=("name",), keys={
    "type": Key(doc=f"one of {', '.join(TYPES)}", choices=TYPES),
    "base_url": Key("a URL string", _web_url),
    "api_version": Key('a quoted date string such as "2024-10-21"'),
    "headers": Key(read=_header_values),
    "connect_timeout": Key("seconds as a number"),
    "proxy": Key(f"an http:// URL such as {PROXY_EXAMPLE}", _proxy_key),
    "max_connections": Key("a whole number of connections", positive("must be at least 1")),
    "models_dir": Key("a folder path", nonempty(f"is empty; name a folder or remove the key for {DEFAULT_MODELS_DIR}")),
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
            reader.fail(join(path, "type"), f"is required: one of {', '.join(TYPES)}")
        return None
    if kind == LOCAL:
        return _read_local(reader, name, body, values, path)
    if body.get("models_dir") is not None:
        reader.fail(join(path, "models_dir"), f"is for providers of type {LOCAL}; remove it from this {kind} provider")
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
    if body.get("proxy") is None:
        values["proxy"] = _environment_proxy(reader, base_url, path)
    else:
        values["proxy"] = values.get("proxy") or None
    return PROVIDER.build(reader, body, {"name": name, **values}, path)


def _read_local(reader: Reader, name: str, body: Mapping[str, Any], values: dict[str, Any],
                path: str) -> ProviderSettings | None:
    for key in NOT_LOCAL:
        if body.get(key) is not None:
            reader.fail(join(path, key), f"type {LOCAL} runs its models in this installation and reaches no "
                        f"upstream; remove {key}")
    if "models_dir" in body and "models_dir" not in values:
        return None
    folder = reader.path(values.get("models_dir") or DEFAULT_MODELS_DIR)
    if folder.exists() and not folder.is_dir():
        reader.fail(join(path, "models_dir"), f"{folder} is a file; name a folder for the model store")
        return None
    for key in NOT_LOCAL:
        values.pop(key, None)
    # base_url says where the provider's models are, in the messages that name it.
    values.update(models_dir=str(folder), base_url=folder.as_uri(), api_key=None)
    return PROVIDER.build(reader, body, {"name": name, **values}, path)


def _environment_proxy(reader: Reader, base_url: str, path: str) -> str | None:
    found = environment_proxy(base_url, reader.env)
    if found is None:
        return None
    variable, url = found
    if proxy_problem(url):
        host = urlsplit(base_url).hostname
        reader.fail(join(path, "proxy"),
                    f"{variable}={url!r} in the environment is not an http:// proxy URL such as {PROXY_EXAMPLE}; "
                    f'correct it, add {host} to NO_PROXY, or give this provider proxy: "" to connect directly')
        return None
    return url


def environment_proxy(base_url: str, env: Mapping[str, str]) -> tuple[str, str] | None:
    """The proxy the environment names for ``base_url``, and the variable that names it; None: direct."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    names = ("https_proxy", "HTTPS_PROXY") if parts.scheme == "https" else ("http_proxy", "HTTP_PROXY")
    variable = next((name for name in names if env.get(name, "").strip()), None)
    if variable is None:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = None
    no_proxy = next((env[name] for name in ("no_proxy", "NO_PROXY") if env.get(name, "").strip()), "")
    if _loopback(parts.hostname) or bypasses_proxy(no_proxy, parts.hostname, port):
        return None
    url = env[variable].strip()
    return variable, url if "://" in url else f"http://{url}"


def bypasses_proxy(no_proxy: str, host: str, port: int | None) -> bool:
    """Whether a ``NO_PROXY`` list names ``host`` (on ``port``).

    Entries are separated by commas: ``*`` (every host), a host or IP address, a domain that
    matches itself and its subdomains (a leading ``.`` or ``*.`` is the same), an address range
    (``10.0.0.0/8``); any of them with ``:port`` matches that port only.
    """
    host = host.lower().rstrip(".")
    for raw in no_proxy.split(","):
        entry, entry_port = _split_port(raw.strip().lower())
        if not entry:
            continue
        if entry == "*":
            return True
        if entry_port is not None and entry_port != port:
            continue
        if "/" in entry:
            if _in_network(host, entry):
                return True
            continue
        name = entry.removeprefix("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith(f".{name}")):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [IPv6] or [IPv6]:port
        address, _, rest = entry[1:].partition("]")
        return address, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        if port.isdigit():
            return name, int(port)
    return entry, None


def _in_network(host: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

"""A provider's egress proxy: the proxy: key, or the environment's HTTPS_PROXY/HTTP_PROXY and NO_PROXY."""

from __future__ import annotations

from typing import Any

import pytest

from modelgate.config import ConfigError, parse_settings
from modelgate.config.providers import bypasses_proxy

OPENAI = {"type": "openai", "api_key": "sk"}  # https://api.openai.com/v1
LOCAL = {"type": "openai", "base_url": "http://models.lan:8000/v1"}


def proxy(provider: dict[str, Any], env: dict[str, str]) -> str | None:
    settings = parse_settings({"providers": {"p": provider}, "deployments": []}, env)
    return settings.providers["p"].proxy


def problems(provider: dict[str, Any], env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_settings({"providers": {"p": provider}, "deployments": []}, env)
    return str(caught.value)


def test_the_proxy_key_is_read_and_checked() -> None:
    assert proxy({**OPENAI, "proxy": "http://proxy.corp:3128"}, {}) == "http://proxy.corp:3128"
    assert proxy(OPENAI, {}) is None
    assert "providers.p.proxy: must be an http:// URL such as http://proxy.internal:3128, got 'socks5://p:1080'" \
        in problems({**OPENAI, "proxy": "socks5://p:1080"}, {})
    assert "providers.p.proxy: must be an http:// URL" in problems({**OPENAI, "proxy": "proxy.corp:3128"}, {})
    assert "providers.p.proxy: must be an http:// URL" in problems({**OPENAI, "proxy": "http://p:port"}, {})
    assert "providers.p.proxy: expected an http:// URL such as http://proxy.internal:3128, got int 3128" \
        in problems({**OPENAI, "proxy": 3128}, {})


def test_without_the_key_the_environment_names_the_proxy_for_the_url_scheme() -> None:
    env = {"HTTPS_PROXY": "http://secure:3128", "HTTP_PROXY": "http://plain:3128"}
    assert proxy(OPENAI, env) == "http://secure:3128"
    assert proxy(LOCAL, env) == "http://plain:3128"
    assert proxy(OPENAI, {"HTTP_PROXY": "http://plain:3128"}) is None
    assert proxy(LOCAL, {"HTTPS_PROXY": "http://secure:3128"}) is None
    # Lower-case variables too, and first; an empty one is unset; a bare host:port is an http:// proxy.
    assert proxy(OPENAI, {"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:2"}) == "http://lower:1"
    assert proxy(LOCAL, {"http_proxy": "lower:1"}) == "http://lower:1"
    assert proxy(LOCAL, {"http_proxy": " ", "HTTP_PROXY": "http://upper:2"}) == "http://upper:2"


def test_the_key_wins_over_the_environment_and_empty_turns_the_proxy_off() -> None:
    env = {"HTTPS_PROXY": "http://secure:3128", "NO_PROXY": "api.openai.com"}
    assert proxy({**OPENAI, "proxy": "http://own:8080"}, env) == "http://own:8080"
    assert proxy({**OPENAI, "proxy": ""}, {"HTTPS_PROXY": "http://secure:3128"}) is None
    assert proxy({**OPENAI, "proxy": None}, {"HTTPS_PROXY": "http://secure:3128"}) == "http://secure:3128"


def test_no_proxy_and_loopback_hosts_connect_directly() -> None:
    env = {"HTTPS_PROXY": "http://secure:3128", "HTTP_PROXY": "http://plain:3128"}
    assert proxy(OPENAI, {**env, "NO_PROXY": "localhost, .openai.com"}) is None
    assert proxy(OPENAI, {**env, "no_proxy": "*"}) is None
    assert proxy(LOCAL, {**env, "NO_PROXY": "models.lan:8000"}) is None
    assert proxy(LOCAL, {**env, "NO_PROXY": "models.lan:9000"}) == "http://plain:3128"
    # A proxy would reach its own loopback, not this machine's.
    assert proxy({"type": "openai", "base_url": "http://127.0.0.1:11434/v1"}, env) is None
    assert proxy({"type": "openai", "base_url": "http://localhost:11434/v1"}, env) is None


def test_a_proxy_from_the_environment_that_is_no_http_url_is_named_with_its_variable() -> None:
    message = problems(OPENAI, {"HTTPS_PROXY": "socks5://p:1080"})
    assert "providers.p.proxy: HTTPS_PROXY='socks5://p:1080' in the environment is not an http:// proxy URL" in message
    assert 'add api.openai.com to NO_PROXY, or give this provider proxy: "" to connect directly' in message
    assert proxy({**OPENAI, "proxy": ""}, {"HTTPS_PROXY": "socks5://p:1080"}) is None


@pytest.mark.parametrize(("no_proxy", "host", "port", "bypassed"), [
    ("", "api.openai.com", 443, False),
    ("*", "api.openai.com", 443, True),
    ("api.openai.com", "api.openai.com", 443, True),
    ("API.OpenAI.com", "api.openai.com", 443, True),
    ("openai.com", "api.openai.com", 443, True),
    (".openai.com", "api.openai.com", 443, True),
    (".openai.com", "openai.com", 443, True),
    ("*.openai.com", "api.openai.com", 443, True),
    ("openai.com", "notopenai.com", 443, False),
    (".corp.example", "llm.corp.example", 443, True),
    ("a.example, ,b.example", "b.example", 443, True),
    ("api.openai.com:443", "api.openai.com", 443, True),
    ("api.openai.com:8443", "api.openai.com", 443, False),
    ("10.0.0.0/8", "10.1.2.3", 80, True),
    ("10.0.0.0/8", "11.1.2.3", 80, False),
    ("10.1.2.3", "10.1.2.3", 80, True),
    ("[::1]:8080", "::1", 8080, True),
    ("fd00::/8", "fd00::5", 80, True),
])
def test_no_proxy_entries(no_proxy: str, host: str, port: int, bypassed: bool) -> None:
    assert bypasses_proxy(no_proxy, host, port) is bypassed

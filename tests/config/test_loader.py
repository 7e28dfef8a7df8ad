"""The config file: environment expansion, defaults, catalog facts and errors that name the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelgate.config import ConfigError, load_settings, parse_settings


def readme_example() -> str:
    """The config example of the README, as a reader copies it."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("## Configure"):]
    return section[section.index("```yaml\n") + 8:section.index("```", section.index("```yaml\n") + 8)]


ISSUE_EXAMPLE = readme_example()
ENV = {"MODELGATE_MASTER_KEY": "mk", "OPENAI_API_KEY": "o", "XAI_API_KEY": "x", "DEEPSEEK_API_KEY": "d",
       "AZURE_API_KEY": "a"}


def problems(data: Any, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_settings(data, env or {})
    return str(caught.value)


def test_the_documented_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "modelgate.yaml"
    path.write_text(ISSUE_EXAMPLE)
    settings = load_settings(path, ENV)
    assert settings.master_key == "mk"
    openai, xai, deepseek, azure = (settings.providers[n] for n in ("openai", "xai", "deepseek", "azure"))
    assert openai.base_url == "https://api.openai.com/v1" and openai.api_key == "o"
    assert (xai.flavor, deepseek.flavor, openai.flavor) == ("xai", "deepseek", "openai")
    assert azure.api_version == "2024-10-21"
    grok = settings.deployments["grok"].targets[0]
    assert (grok.provider, grok.model) == ("xai", "grok-3")
    assert (grok.api, settings.deployments["codex"].targets[0].api) == ("chat", "responses")
    # Catalog facts come from the built-in catalog for well-known models.
    assert grok.facts.context_window == 131072 and grok.facts.input_price == 3.0


def test_env_defaults_and_dollar_escape() -> None:
    settings = parse_settings({
        "master_key": "${MK:-fallback}$$",
        "providers": {"p": {"type": "openai", "base_url": "${URL:-http://127.0.0.1:9/v1}"}},
        "deployments": [{"name": "d", "provider": "p", "model": "m"}]}, {})
    assert settings.master_key == "fallback$"
    assert settings.providers["p"].base_url == "http://127.0.0.1:9/v1"


def test_unset_variable_names_key_and_variable(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(ISSUE_EXAMPLE)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {k: v for k, v in ENV.items() if k != "XAI_API_KEY"})
    message = str(caught.value)
    assert "providers.xai.api_key" in message and "XAI_API_KEY is not set" in message
    assert "export XAI_API_KEY" in message


def test_every_problem_is_reported_at_once() -> None:
    message = problems({
        "providers": {"a": {"type": "bedrock"}, "b": {"type": "openai", "bogus": 1}},
        "deployments": [{"name": "x", "provider": "nope", "model": "m"},
                        {"name": "y", "provider": "b", "model": "m", "timeout": "soon", "fallbacks": ["z"]},
                        {"provider": "b", "model": "m"}],
        "extra_key": True})
    assert "providers.a.type: must be one of openai, azure, anthropic, gemini" in message
    assert "providers.b.bogus: unknown key" in message
    assert "deployments.x.provider: 'nope' is not a configured provider" in message
    assert "deployments.y.timeout: expected seconds as a number" in message
    assert "deployments.y.fallbacks: 'z' is not a deployment" in message
    assert "deployments[2].name: is required" in message
    assert "extra_key: unknown key" in message


def test_deployment_facts_override_the_catalog_and_are_validated() -> None:
    settings = parse_settings({
        "providers": {"p": {"type": "openai"}},
        "deployments": [{"name": "d", "provider": "p", "model": "gpt-4o", "input_price": 1.5,
                         "capabilities": ["tools", "reasoning"], "context_window": 1000}]}, {})
    facts = settings.deployments["d"].targets[0].facts
    assert facts.input_price == 1.5 and facts.output_price == 10.0
    assert facts.context_window == 1000 and facts.capabilities == ("tools", "reasoning")
    assert "unknown capability 'telepathy'" in problems({
        "providers": {"p": {"type": "openai"}},
        "deployments": [{"name": "d", "provider": "p", "model": "m", "capabilities": ["telepathy"]}]})


def test_keys_required_where_the_provider_has_no_keyless_mode() -> None:
    message = problems({"providers": {"claude": {"type": "anthropic"}}, "deployments": []})
    assert "no key for provider 'claude': set CLAUDE_API_KEY" in message
    assert "base_url: is required for type azure" in problems(
        {"providers": {"az": {"type": "azure", "api_key": "k"}}, "deployments": []})


def test_duplicate_names_and_target_groups() -> None:
    assert "used twice" in problems({"providers": {"p": {"type": "openai"}}, "deployments": [
        {"name": "d", "provider": "p", "model": "m"}, {"name": "d", "provider": "p", "model": "m"}]})
    settings = parse_settings({"providers": {"p": {"type": "openai"}, "q": {"type": "openai"}}, "deployments": [
        {"name": "chat", "strategy": "priority", "retries": 2, "max_share": {"p": 0.6},
         "targets": [{"provider": "p", "model": "gpt-4o", "weight": 3}, {"provider": "q", "model": "gpt-4o"}]}]}, {})
    chat = settings.deployments["chat"]
    assert [t.weight for t in chat.targets] == [3.0, 1.0]
    assert chat.strategy == "priority" and chat.retries == 2 and chat.max_share == {"p": 0.6}


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "missing.yaml", {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad, {})


def test_references_expand_after_parsing_and_keep_their_type(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("providers:\n  p: {type: openai, api_key: ${KEY}, base_url: '${URL:-http://h/v1}'}\n"
                    "deployments:\n  - {name: d, provider: p, model: m, timeout: ${TIMEOUT:-30}, retries: ${R}}\n")
    settings = load_settings(path, {"KEY": "a: {b}, # not yaml", "R": "2"})
    assert settings.providers["p"].api_key == "a: {b}, # not yaml"
    assert settings.providers["p"].base_url == "http://h/v1"
    assert settings.deployments["d"].timeout == 30.0 and settings.deployments["d"].retries == 2

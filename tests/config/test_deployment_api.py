"""A target's ``api:``: chat completions (the default) or OpenAI's Responses API, for openai and azure types."""

from __future__ import annotations

from typing import Any

import pytest

from modelgate.config import ConfigError, parse_settings
from modelgate.providers.base import Provider
from modelgate.routing.group import Group
from modelgate.routing.health import Health

PROVIDERS = {
    "openai": {"type": "openai"},
    "azure": {"type": "azure", "base_url": "https://r.openai.azure.com", "api_key": "k"},
    "claude": {"type": "anthropic", "api_key": "k"},
}


def deployments(*entries: dict[str, Any]) -> Any:
    return parse_settings({"providers": PROVIDERS, "deployments": list(entries)}, {}).deployments


def apis(deployment: Any) -> list[str]:
    group = Group(deployment, dict.fromkeys(PROVIDERS, Provider.__new__(Provider)), Health())
    return [target.upstream.api for target in group.targets]


def test_api_defaults_to_chat_and_reaches_the_upstream_call() -> None:
    found = deployments(
        {"name": "plain", "provider": "openai", "model": "gpt-4o"},
        {"name": "codex", "provider": "openai", "model": "gpt-5-codex", "api": "responses"},
        {"name": "foundry", "provider": "azure", "model": "my-gpt5", "api": "responses"},
    )
    assert [apis(found[name]) for name in ("plain", "codex", "foundry")] == [["chat"], ["responses"], ["responses"]]


def test_a_deployment_api_is_the_default_of_its_targets() -> None:
    [group] = deployments({"name": "g", "api": "responses", "targets": [
        {"provider": "openai", "model": "gpt-5"},
        {"provider": "azure", "model": "gpt-5", "api": "chat"},
    ]}).values()
    assert apis(group) == ["responses", "chat"]


@pytest.mark.parametrize(("entry", "problem"), [
    ({"name": "d", "provider": "claude", "model": "claude-sonnet-4-5", "api": "responses"},
     "deployments.d.api: 'responses' needs a provider of type openai or azure (the Responses API is OpenAI's); "
     "provider 'claude' is of type anthropic: remove api: or set it to chat"),
    ({"name": "d", "targets": [{"provider": "openai", "model": "m"},
                               {"provider": "claude", "model": "c", "api": "responses"}]},
     "deployments.d.targets[1].api: 'responses' needs a provider of type openai or azure"),
    ({"name": "d", "api": "responses", "targets": [{"provider": "claude", "model": "c"}]},
     "deployments.d.targets[0].api: 'responses' needs a provider of type openai or azure"),
    ({"name": "d", "provider": "openai", "model": "m", "api": "completions"},
     "deployments.d.api: must be one of chat, responses, got 'completions'"),
    ({"name": "d", "api": "assistants", "targets": [{"provider": "openai", "model": "m"}]},
     "deployments.d.api: must be one of chat, responses, got 'assistants'"),
])
def test_an_api_a_target_cannot_speak_is_refused(entry: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        deployments(entry)
    assert problem in str(caught.value)

"""The config keys of limits and metering: deployment rpm/tpm, journal_dir."""

from __future__ import annotations

import pytest

from modelgate.config import ConfigError, parse_settings

PROVIDERS = {"openai": {"type": "openai", "api_key": "sk"}}


def settings(deployment: dict[str, object], **top: object) -> object:
    return parse_settings({"providers": PROVIDERS, "deployments": [
        {"name": "d", "provider": "openai", "model": "gpt-4o", **deployment}], **top}, {})


def test_deployment_limits_and_the_journal_directory_are_read() -> None:
    loaded = settings({"rpm": 600, "tpm": 90_000}, journal_dir="/var/lib/modelgate/journal")
    assert (loaded.deployments["d"].rpm, loaded.deployments["d"].tpm) == (600, 90_000)  # type: ignore[attr-defined]
    assert loaded.journal_dir == "/var/lib/modelgate/journal"  # type: ignore[attr-defined]
    plain = settings({})
    assert (plain.deployments["d"].rpm, plain.deployments["d"].tpm) == (None, None)  # type: ignore[attr-defined]
    assert plain.journal_dir == "./journal"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("deployment", "top", "problem"), [
    ({"rpm": 0}, {}, "deployments.d.rpm: must be a positive number of requests per minute"),
    ({"tpm": -5}, {}, "deployments.d.tpm: must be a positive number of tokens per minute"),
    ({"rpm": 1.5}, {}, "deployments.d.rpm: expected requests per minute as a whole number, got float 1.5"),
    ({"tpm": True}, {}, "deployments.d.tpm: expected tokens per minute as a whole number, got True"),
    ({}, {"journal_dir": ""}, "journal_dir: is empty"),
    ({}, {"journal_dir": 3}, "journal_dir: expected a directory path, got int 3"),
])
def test_bad_values_are_named_with_their_fix(deployment: dict[str, object], top: dict[str, object],
                                             problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        settings(deployment, **top)
    assert problem in str(error.value)


def test_what_limits_and_budgets_do_while_redis_is_away_is_read_with_defaults() -> None:
    plain = settings({})
    assert (plain.limits.redis_outage, plain.budgets.redis_outage) == ("allow", "refuse")  # type: ignore[attr-defined]
    chosen = settings({}, limits={"redis_outage": "refuse"}, budgets={"redis_outage": "allow"})
    assert (chosen.limits.redis_outage, chosen.budgets.redis_outage) == ("refuse", "allow")  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as error:
        settings({}, limits={"redis_outage": "open"}, budgets={"on_outage": "allow"})
    assert "limits.redis_outage: must be one of allow, refuse, got 'open'" in str(error.value)
    assert "budgets.on_outage: unknown key; allowed here: redis_outage" in str(error.value)

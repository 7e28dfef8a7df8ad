"""The ``responses:`` section and ``secret_key``: defaults, and a clear problem for each bad value."""

from __future__ import annotations

from typing import Any

import pytest

from modelgate.config import parse_settings
from modelgate.config.loader import ConfigError


def problems(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as failed:
        parse_settings(data, {})
    return str(failed.value)


def test_defaults_keep_responses_30_days_and_leave_the_key_to_the_database() -> None:
    settings = parse_settings({}, {})
    assert (settings.responses.retention_days, settings.responses.retention_s) == (30, 30 * 86_400)
    assert settings.secret_key is None
    assert parse_settings({"responses": {"retention_days": 0}}, {}).responses.retention_days == 30
    assert parse_settings({"responses": None}, {}).responses.retention_days == 30
    assert parse_settings({"responses": {"retention_days": 7}}, {}).responses.retention_s == 7 * 86_400
    assert parse_settings({"secret_key": "k" * 32}, {}).secret_key == "k" * 32


@pytest.mark.parametrize(("data", "said"), [
    ({"responses": {"retention_days": -1}}, "responses.retention_days: must be a whole number of days, 1 or more"),
    ({"responses": {"retention_days": 1.5}}, "responses.retention_days: expected a whole number of days"),
    ({"responses": {"retention_days": 10**6}}, "responses.retention_days: must be at most 36500 days"),
    ({"responses": {"keep": 3}}, "responses.keep: unknown key; allowed here: retention_days"),
    ({"responses": 30}, "responses: expected a mapping with retention_days:"),
    ({"secret_key": "short"}, "secret_key: is 5 characters long; use at least 32 random characters"),
    ({"secret_key": ""}, "secret_key: is 0 characters long"),
    ({"secret_key": 12345}, "secret_key: expected a string of at least 32 characters"),
])
def test_each_bad_value_is_named_with_the_fix(data: dict[str, Any], said: str) -> None:
    assert said in problems(data)

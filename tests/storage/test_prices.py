"""The versioned price table: provider cost from the catalog, customer price from the config."""

from __future__ import annotations

from typing import Any

import pytest

from modelgate.config import ConfigError, parse_settings
from modelgate.storage import Storage, prices_from_settings


def settings(price: dict[str, Any] | None = None, **override: Any) -> Any:
    chat: dict[str, Any] = {"name": "chat", "targets": [{"provider": "openai", "model": "gpt-4o"},
                                                        {"provider": "openai", "model": "gpt-4o-mini"}]}
    if price is not None:
        chat["price"] = price
    chat.update(override)
    return parse_settings({
        "providers": {"openai": {"type": "openai", "api_key": "sk"}},
        "deployments": [chat, {"name": "own", "provider": "openai", "model": "my-model", "input_price": 1,
                               "output_price": 2}],
    }, {})


def test_cost_is_the_catalog_price_and_customer_price_defaults_to_it() -> None:
    entries = {(e.deployment, e.model): e for e in prices_from_settings(settings())}
    gpt = entries[("chat", "gpt-4o")]
    # catalog/models.yaml: gpt-4o is 2.50 in, 10.00 out, 1.25 cached input per million tokens.
    assert (gpt.input_cost, gpt.output_cost, gpt.cached_input_cost, gpt.cache_write_cost) == (2.5, 10.0, 1.25, None)
    assert (gpt.input_price, gpt.output_price, gpt.cached_input_price, gpt.cache_write_price) == (2.5, 10.0, 1.25, None)
    own = entries[("own", "my-model")]
    assert (own.input_cost, own.output_cost, own.input_price, own.output_price) == (1.0, 2.0, 1.0, 2.0)


def test_a_deployment_price_is_what_customers_pay_on_every_target() -> None:
    entries = prices_from_settings(settings({"input": 4, "output": 16.5}))
    chat = [e for e in entries if e.deployment == "chat"]
    assert [(e.model, e.input_cost, e.input_price, e.output_price) for e in chat] == [
        ("gpt-4o", 2.5, 4.0, 16.5), ("gpt-4o-mini", 0.15, 4.0, 16.5)]
    # A kind of token the price does not name is charged at the provider's cost.
    assert [e.cached_input_price for e in chat] == [1.25, 0.075]


@pytest.mark.parametrize(("price", "problem"), [
    ({"inptu": 1}, "deployments.chat.price.inptu: unknown key"),
    ({"input": "cheap"}, "deployments.chat.price.input: expected USD per million tokens"),
    ({"output": -1}, "deployments.chat.price.output: must be 0 or more"),
    (5, "deployments.chat.price: expected a mapping"),
])
def test_price_mistakes_are_named(price: Any, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace(".", r"\.")):
        settings(price)


async def test_sync_writes_a_new_version_only_when_prices_change(storage: Storage) -> None:
    first = prices_from_settings(settings())
    written = await storage.prices.sync(first)
    assert len(written) == 3 and all(e.valid_from is not None for e in written)
    assert await storage.prices.sync(first) == []

    changed = prices_from_settings(settings({"input": 4}))
    written = await storage.prices.sync(changed)
    assert sorted(e.model for e in written) == ["gpt-4o", "gpt-4o-mini"]
    current = await storage.current_prices()
    assert current[("chat", "openai", "gpt-4o")].input_price == 4.0
    assert current[("own", "openai", "my-model")].input_price == 1.0
    history = await storage.prices.history("chat")
    assert [(e.model, e.input_price) for e in history] == [
        ("gpt-4o", 2.5), ("gpt-4o-mini", 0.15), ("gpt-4o", 4.0), ("gpt-4o-mini", 4.0)]
    assert history[0].valid_from is not None and history[2].valid_from is not None
    assert history[0].valid_from < history[2].valid_from

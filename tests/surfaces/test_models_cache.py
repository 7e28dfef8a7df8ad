"""``GET /v1/models`` answers from lists serialised once, made again when the deployments change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from modelgate.config import parse_settings
from modelgate.config.settings import DeploymentSettings
from modelgate.pipeline.contract import Handler, Principal
from modelgate.schema.request import ChatRequest
from modelgate.surfaces.base import ResponseStore, Sealer
from modelgate.surfaces.models import ModelList, anthropic_model

PROVIDERS = {"a": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"},
             "b": {"type": "anthropic", "base_url": "http://127.0.0.1:9", "api_key": "k"}}


def deployments(*names: str) -> dict[str, DeploymentSettings]:
    return parse_settings({"providers": PROVIDERS, "deployments": [
        {"name": name, "provider": "b" if name.startswith("claude") else "a",
         "model": "claude-sonnet-4-5" if name.startswith("claude") else "gpt-4o"} for name in names]}, {}).deployments


class Gateway:
    """What ``ModelList`` reads of a running gateway."""

    def __init__(self, found: dict[str, DeploymentSettings]) -> None:
        self.deployments: Mapping[str, DeploymentSettings] = found

    @property
    def started_at(self) -> int:
        return 1_700_000_000

    @property
    def tracing(self) -> None:
        return None

    @property
    def request_log(self) -> None:
        return None

    @property
    def handler(self) -> Handler:
        raise NotImplementedError

    @property
    def responses(self) -> ResponseStore:
        raise NotImplementedError

    @property
    def sealer(self) -> Sealer:
        raise NotImplementedError

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        raise NotImplementedError

    def deployment(self, name: str, principal: Principal) -> DeploymentSettings:
        return self.deployments[name]

    async def count_tokens(self, request: ChatRequest, deployment: DeploymentSettings) -> int | None:
        raise NotImplementedError


def openai_list(gateway: Gateway, names: list[str]) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": n, "object": "model", "created": gateway.started_at,
                                        "owned_by": gateway.deployments[n].targets[0].provider} for n in names]}


def anthropic_list(gateway: Gateway, names: list[str]) -> dict[str, Any]:
    models = []
    for name in names:
        facts = gateway.deployments[name].targets[0].facts
        models.append(anthropic_model(name, gateway.started_at, facts.context_window, facts.max_output_tokens))
    return {"data": models, "has_more": False, "first_id": names[0] if names else None,
            "last_id": names[-1] if names else None}


def test_the_lists_are_made_once_and_answer_each_caller_its_own_deployments() -> None:
    gateway = Gateway(deployments("gpt", "claude-1", "mini", "claude-2"))
    models = ModelList(gateway)
    everything = models.listing(False, None)
    assert orjson.loads(everything) == openai_list(gateway, ["gpt", "claude-1", "mini", "claude-2"])
    assert orjson.loads(models.listing(True, None)) == anthropic_list(gateway, ["gpt", "claude-1", "mini", "claude-2"])
    narrow = frozenset({"claude-2", "gpt", "gone"})  # in config order, names no longer deployed left out
    assert orjson.loads(models.listing(False, narrow)) == openai_list(gateway, ["gpt", "claude-2"])
    assert orjson.loads(models.listing(True, narrow)) == anthropic_list(gateway, ["gpt", "claude-2"])
    assert orjson.loads(models.listing(True, frozenset())) == anthropic_list(gateway, [])
    for _ in range(100):
        assert models.listing(False, None) is everything  # the same bytes, not made again
    assert models.builds == 1


def test_new_deployments_make_the_lists_again() -> None:
    gateway = Gateway(deployments("gpt", "mini"))
    models = ModelList(gateway)
    assert [m["id"] for m in orjson.loads(models.listing(False, None))["data"]] == ["gpt", "mini"]
    gateway.deployments = deployments("gpt", "claude-1")
    assert [m["id"] for m in orjson.loads(models.listing(False, None))["data"]] == ["gpt", "claude-1"]
    assert orjson.loads(models.listing(False, frozenset({"mini", "claude-1"}))) == openai_list(gateway, ["claude-1"])
    assert models.builds == 2

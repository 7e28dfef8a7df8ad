"""A local deployment's engine keys: defaults, checks, and errors that name the key and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelgate.catalog.model_store import ModelStore
from modelgate.config import ConfigError, parse_settings
from modelgate.config.settings import Settings
from modelgate.engines.models import ModelNotFound, resolve_model
from modelgate.engines.settings import EngineSettings
from tests.local_models import tiny_llama


@pytest.fixture
def gguf(tmp_path: Path) -> str:
    return str(tiny_llama(tmp_path / "tiny.gguf"))  # a header the config reads the facts from (context 4096)


def settings(*entries: dict[str, Any], models_dir: Path | None = None) -> Settings:
    local: dict[str, Any] = {"type": "local"}
    if models_dir is not None:
        local["models_dir"] = str(models_dir)
    providers = {"local": local, "openai": {"type": "openai"}}
    return parse_settings({"providers": providers, "deployments": list(entries)}, {})


def problems(*entries: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as raised:
        settings(*entries)
    return str(raised.value)


def test_a_local_target_gets_the_engine_defaults(gguf: str) -> None:
    [target] = settings({"name": "smol", "provider": "local", "model": gguf}).deployments["smol"].targets
    assert target.local == EngineSettings(engine="llamacpp", replicas=1, max_concurrency=4, queue=32, device="auto")
    assert (target.local.health_interval, target.local.health_timeout) == (5.0, 5.0)
    assert target.facts.context_window == 4096  # the model's own


def test_the_engine_keys_sit_beside_provider_and_model(gguf: str) -> None:
    deployment = settings({"name": "smol", "provider": "local", "model": gguf, "engine": "llamacpp",
                           "replicas": 2, "max_concurrency": 1, "queue": 0, "device": "cpu",
                           "health_interval": 2, "health_timeout": 0.5, "context_window": 2048}).deployments["smol"]
    [target] = deployment.targets
    assert target.local == EngineSettings(replicas=2, max_concurrency=1, queue=0, device="cpu", health_interval=2.0,
                                          health_timeout=0.5)
    assert target.facts.context_window == 2048


def test_a_target_of_a_group_may_be_local(gguf: str) -> None:
    deployment = settings({"name": "chat", "targets": [
        {"provider": "openai", "model": "gpt-4o-mini"},
        {"provider": "local", "model": gguf, "replicas": 3}]}).deployments["chat"]
    assert [t.local.replicas if t.local else None for t in deployment.targets] == [None, 3]


@pytest.mark.parametrize(("keys", "problem"), [
    ({"engine": "vllm"}, "deployments.smol.engine: 'vllm' is not available in this build yet; use engine: llamacpp"),
    ({"engine": "ray"}, "deployments.smol.engine: 'ray' is not available in this build yet"),
    ({"engine": "tgi"}, "deployments.smol.engine: must be one of llamacpp, vllm, ray, got 'tgi'"),
    ({"replicas": 0}, "deployments.smol.replicas: must be at least 1"),
    ({"max_concurrency": 0}, "deployments.smol.max_concurrency: must be at least 1 request at once"),
    ({"queue": -1}, "deployments.smol.queue: must be 0 or more waiting requests"),
    ({"queue": "many"}, "deployments.smol.queue: expected a whole number of requests, got str 'many'"),
    ({"device": "tpu"}, "deployments.smol.device: must be one of cpu, cuda, auto, got 'tpu'"),
    ({"health_interval": 0}, "deployments.smol.health_interval: must be a positive number of seconds"),
    ({"health_timeout": "soon"}, "deployments.smol.health_timeout: expected seconds as a number, got str 'soon'"),
    ({"api": "responses"}, "deployments.smol.api: 'responses' needs a provider of type openai or azure"),
])
def test_wrong_engine_keys_are_named_with_the_fix(gguf: str, keys: dict[str, Any], problem: str) -> None:
    assert problem in problems({"name": "smol", "provider": "local", "model": gguf, **keys})


def test_a_model_that_is_no_file_is_named(tmp_path: Path) -> None:
    said = problems({"name": "smol", "provider": "local", "model": str(tmp_path / "missing.gguf")})
    assert f"deployments.smol.model: '{tmp_path / 'missing.gguf'}'" in said and "modelgate models add" in said


def test_a_file_that_is_no_gguf_is_named(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"PK\x03\x04")
    said = problems({"name": "smol", "provider": "local", "model": str(path)})
    assert "deployments.smol.model:" in said and 'does not start with "GGUF"' in said


def test_engine_keys_on_an_api_provider_are_refused() -> None:
    said = problems({"name": "gpt", "provider": "openai", "model": "gpt-4o", "replicas": 2})
    assert ("deployments.gpt: compute_cost:, device:, engine:, health_interval:, health_timeout:, max_concurrency:, "
            "queue:, replicas: are for providers of type local; provider 'openai' is of type openai: "
            "remove them") in said
    said = problems({"name": "gpt", "provider": "openai", "model": "gpt-4o", "compute_cost": {"per_replica_hour": 1}})
    assert "deployments.gpt: compute_cost:" in said and "are for providers of type local" in said


def test_compute_cost_is_read_on_a_local_deployment_and_its_targets(gguf: str) -> None:
    one = settings({"name": "smol", "provider": "local", "model": gguf, "compute_cost": {"per_replica_hour": 0.9},
                    "price": {"input": 0.1, "output": 0.2}}).deployments["smol"]
    engine = one.targets[0].local
    assert engine is not None and engine.compute_cost is not None and engine.compute_cost.per_replica_hour == 0.9
    assert one.price is not None and (one.price.input, one.price.output) == (0.1, 0.2)
    listed = settings({"name": "smol", "targets": [
        {"provider": "local", "model": gguf, "compute_cost": {"per_replica_hour": 2}},
        {"provider": "local", "model": gguf}]}).deployments["smol"]
    engines = [t.local for t in listed.targets]
    assert [e.compute_cost.per_replica_hour if e and e.compute_cost else None for e in engines] == [2.0, None]
    assert "deployments.smol.compute_cost.per_replica_hour: must be 0 or more" in problems(
        {"name": "smol", "provider": "local", "model": gguf, "compute_cost": {"per_replica_hour": -1}})
    assert "deployments.smol.compute_cost.per_replica_hour: is required" in problems(
        {"name": "smol", "provider": "local", "model": gguf, "compute_cost": {}})


def test_the_engine_finds_a_stored_model_by_its_name(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    store.add(tiny_llama(tmp_path / "tiny.gguf"), name="tiny")
    found = resolve_model("tiny", tmp_path / "models")
    assert found.name == "tiny" and found.path == store.resolve("tiny").path
    with pytest.raises(ModelNotFound, match="modelgate models add"):
        resolve_model("nothing-by-this-name", tmp_path / "models")
    deployment = settings({"name": "smol", "provider": "local", "model": "tiny"}, models_dir=tmp_path / "models")
    assert deployment.deployments["smol"].targets[0].model == "tiny"  # the name stays, for headers and usage

"""A local deployment's engine keys: defaults, checks, and errors that name the key and the fix."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelgate.catalog.model_store import ModelStore
from modelgate.config import ConfigError, load_settings, parse_settings
from modelgate.config.settings import Settings
from modelgate.engines.models import ModelFile, ModelNotFound, resolve_model
from modelgate.engines.replica import EngineSpec
from modelgate.engines.settings import EngineSettings, RaySettings, VllmSettings
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
    ({"engine": "vllm"}, "deployments.smol.model: '{gguf}' is a file, and engine vllm serves Hugging Face model "
                         "folders (config.json and the weights, as save_pretrained writes them)"),
    ({"ray": {"address": "auto"}}, "deployments.smol.ray: is for engine: ray, and this target's engine is llamacpp: "
                                   "remove ray: or set engine: ray"),
    ({"engine": "ray", "ray": "auto"}, "deployments.smol.ray: expected a mapping with address:, min_replicas:, "
                                       "max_replicas: and target_ongoing_requests:, got str 'auto'"),
    ({"engine": "ray", "ray": {"max_replica": 2}}, "deployments.smol.ray.max_replica: unknown key; allowed here: "
                                                   "address, max_replicas, min_replicas, target_ongoing_requests"),
    ({"engine": "ray", "ray": {"min_replicas": 3, "max_replicas": 2}},
     "deployments.smol.ray.max_replicas: must be at least ray.min_replicas (3)"),
    ({"engine": "ray", "ray": {"min_replicas": -1}}, "deployments.smol.ray.min_replicas: must be 0 or more"),
    ({"engine": "ray", "ray": {"max_replicas": 0}}, "deployments.smol.ray.max_replicas: must be at least 1"),
    ({"engine": "ray", "ray": {"target_ongoing_requests": 0}},
     "deployments.smol.ray.target_ongoing_requests: must be a positive number of requests"),
    ({"engine": "ray", "ray": {"address": "head.internal"}},
     "deployments.smol.ray.address: must be auto (the cluster on this machine), HOST:PORT (the head node's GCS, port "
     "6379 unless changed) or ray://HOST:PORT (Ray Client, port 10001), got 'head.internal'"),
    ({"engine": "ray", "replicas": 2}, "deployments.smol.replicas: is not used with engine: ray: Ray Serve scales the "
                                       "replicas between ray.min_replicas and ray.max_replicas; set those instead"),
    ({"engine": "ray", "compute_cost": {"per_replica_hour": 1}},
     "deployments.smol.compute_cost: is not supported with engine: ray: its replicas run on the Ray cluster"),
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
    assert problem.replace("{gguf}", gguf) in problems({"name": "smol", "provider": "local", "model": gguf, **keys})


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
            "queue:, ray:, replicas:, vllm: are for providers of type local; provider 'openai' is of type openai: "
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


def test_a_ray_target_gets_ray_serves_defaults_and_its_keys(gguf: str, ray_installed: None) -> None:
    [target] = settings({"name": "smol", "provider": "local", "model": gguf, "engine": "ray"},
                        ).deployments["smol"].targets
    assert target.local == EngineSettings(engine="ray", ray=RaySettings(
        address="auto", min_replicas=1, max_replicas=1, target_ongoing_requests=2.0))
    [target] = settings({"name": "smol", "provider": "local", "model": gguf, "engine": "ray", "max_concurrency": 2,
                         "queue": 8, "device": "cpu", "ray": {"address": "ray://10.0.0.5:10001", "min_replicas": 0,
                                                              "max_replicas": 4, "target_ongoing_requests": 1.5}},
                        ).deployments["smol"].targets
    assert target.local == EngineSettings(engine="ray", max_concurrency=2, queue=8, device="cpu", ray=RaySettings(
        address="ray://10.0.0.5:10001", min_replicas=0, max_replicas=4, target_ongoing_requests=1.5))


def hf_folder(path: Path) -> Path:
    """A Hugging Face model folder as far as the config reads it: config.json (no weights)."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                                                  "max_position_embeddings": 2048, "torch_dtype": "bfloat16"}))
    return path


def test_a_model_folder_under_a_gguf_engine_is_pointed_to_vllm(tmp_path: Path) -> None:
    folder = hf_folder(tmp_path / "tiny-llama")
    for engine in ("llamacpp", "ray"):
        said = problems({"name": "smol", "provider": "local", "model": str(folder), "engine": engine})
        assert (f"deployments.smol.model: '{folder}' is a model folder, and engine {engine} runs GGUF files "
                "(llama.cpp). A Llama-family folder (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM) is "
                "converted to one by `modelgate models add FOLDER --gguf`, a sentence-transformers BERT folder by "
                "`modelgate models add FOLDER`; serve other folders with engine: vllm") in said


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_the_vllm_engine_without_vllm_names_the_extra(tmp_path: Path) -> None:
    folder = hf_folder(tmp_path / "tiny-llama")
    said = problems({"name": "smol", "provider": "local", "model": str(folder), "engine": "vllm"})
    assert ("deployments.smol.engine: engine vllm needs the vllm package on this machine, which is not installed: "
            "pip install 'modelgate[vllm]'; or set vllm.python: to the interpreter of an environment where it is "
            "installed") in said
    assert "deployments.smol.model" not in said  # the folder is what vllm loads


def test_vllm_in_an_environment_of_its_own_is_named_by_its_interpreter(tmp_path: Path) -> None:
    folder = hf_folder(tmp_path / "tiny-llama")
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    python = tmp_path / "venv" / "bin" / "python"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    config = tmp_path / "modelgate.yaml"
    config.write_text(yaml.safe_dump({
        "providers": {"local": {"type": "local"}},
        "deployments": [{"name": "tiny", "provider": "local", "model": str(folder), "engine": "vllm",
                         "vllm": {"python": "venv/bin/python", "args": ["--dtype", "float32", "-O0"]}}]}))
    [target] = load_settings(config, {}).deployments["tiny"].targets
    # The interpreter is taken from the config file's folder, as every path there is.
    assert target.local is not None and target.local.vllm == VllmSettings(python=str(python),
                                                                          args=("--dtype", "float32", "-O0"))
    spec = EngineSpec(ModelFile("tiny", folder), target.local)
    assert spec.command()[-5:] == ["--python", str(python), "--vllm-arg=--dtype", "--vllm-arg=float32",
                                   "--vllm-arg=-O0"]


@pytest.mark.parametrize(("keys", "problem"), [
    ({"vllm": {"python": "/no/such/python"}}, "deployments.tiny.vllm.python: /no/such/python is not an executable "
                                              "file: give the Python interpreter of the environment vLLM is installed "
                                              "in"),
    ({"vllm": {"args": ["--port", "9000"]}}, "deployments.tiny.vllm.args: sets --port, which the engine sets from the "
                                             "deployment"),
    ({"vllm": {"args": ["--max-model-len=4096"]}}, "deployments.tiny.vllm.args: sets --max-model-len, which the engine "
                                                   "sets from the deployment"),
    ({"vllm": {"args": "--dtype float32"}}, "deployments.tiny.vllm.args: expected a list of arguments of vLLM's "
                                           "server, e.g. [--dtype, float32]"),
    ({"engine": "llamacpp", "vllm": {"args": []}}, "deployments.tiny.vllm: is for engine: vllm, and this target's "
                                                   "engine is llamacpp: remove vllm: or set engine: vllm"),
])
def test_wrong_vllm_keys_are_named_with_the_fix(tmp_path: Path, keys: dict[str, Any], problem: str) -> None:
    folder = hf_folder(tmp_path / "tiny-llama")
    model = str(folder) if keys.get("engine") != "llamacpp" else str(tiny_llama(tmp_path / "tiny.gguf"))
    said = problems({"name": "tiny", "provider": "local", "model": model, "engine": "vllm", **keys})
    assert problem in said


ROOT = Path(__file__).resolve().parents[2]


def yaml_blocks(path: Path, containing: str) -> list[dict[str, Any]]:
    """The YAML examples of a doc that contain ``containing``, as a reader copies them."""
    text = path.read_text()
    blocks = [part.split("```", 1)[0] for part in text.split("```yaml\n")[1:]]
    return [yaml.safe_load(block) for block in blocks if containing in block]


def test_the_docs_ray_examples_read_as_they_say(tmp_path: Path, ray_installed: None) -> None:
    store = ModelStore(tmp_path / "models")
    store.add(tiny_llama(tmp_path / "tiny.gguf"), name="smollm2-135m-instruct")
    [readme] = yaml_blocks(ROOT / "README.md", "engine: ray")
    [doc] = yaml_blocks(ROOT / "docs" / "local-engines.md", "engine: ray")
    doc["deployments"][0]["model"] = "smollm2-135m-instruct"  # the doc's path is of the reader's machine
    for example in (readme, doc):
        read = parse_settings({"providers": {"local": {"type": "local", "models_dir": str(tmp_path / "models")}},
                               **example}, {})
        [deployment] = read.deployments.values()
        assert deployment.targets[0].local == EngineSettings(engine="ray", max_concurrency=4, queue=32, ray=RaySettings(
            address="auto", min_replicas=1, max_replicas=4, target_ongoing_requests=2))

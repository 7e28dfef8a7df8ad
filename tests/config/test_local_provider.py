"""Provider type local: its models_dir, and deployments whose facts come from the model store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelgate.catalog.model_store import ModelStore
from modelgate.config import ConfigError, load_settings, parse_settings
from modelgate.config.loader import load_providers
from tests.local_models import tiny_llama


def write_config(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "modelgate.yaml"
    path.write_text(text)
    return path


def problems(data: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_settings(data, {})
    return str(caught.value)


def test_models_dir_is_taken_from_the_config_files_folder(tmp_path: Path) -> None:
    config = write_config(tmp_path / "etc", "providers:\n  local: {type: local}\n"
                                            "  other: {type: local, models_dir: ../store}\n")
    providers = load_settings(config, {}).providers
    assert providers["local"].models_dir == str(tmp_path / "etc" / "models")
    assert providers["other"].models_dir == str(tmp_path / "store")
    assert providers["local"].base_url == (tmp_path / "etc" / "models").as_uri()
    assert providers["local"].api_key is None and providers["local"].proxy is None


def test_what_a_local_provider_does_not_take() -> None:
    message = problems({"providers": {
        "local": {"type": "local", "base_url": "http://127.0.0.1:8080", "proxy": "http://p:3128"},
        "empty": {"type": "local", "models_dir": ""},
        "api": {"type": "openai", "models_dir": "./models"},
    }})
    assert "providers.local.base_url: type local runs its models in this installation and reaches no upstream; " \
           "remove base_url" in message
    assert "providers.local.proxy: type local runs its models" in message
    assert "providers.empty.models_dir: is empty; name a folder or remove the key for ./models" in message
    assert "providers.api.models_dir: is for providers of type local; remove it from this openai provider" in message


def test_models_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "models").write_text("")
    config = write_config(tmp_path, "providers:\n  local: {type: local}\n")
    with pytest.raises(ConfigError, match=r"providers.local.models_dir: .*models is a file; name a folder"):
        load_settings(config, {})


def test_a_deployment_of_a_stored_model_has_its_facts(tmp_path: Path) -> None:
    ModelStore(tmp_path / "models").add(tiny_llama(tmp_path / "tiny.gguf"), name="tiny")
    tiny_llama(tmp_path / "loose.gguf")
    config = write_config(tmp_path, "providers:\n  local: {type: local}\n"
                                    "deployments:\n"
                                    "  - {name: tiny, provider: local, model: tiny}\n"
                                    "  - {name: loose, provider: local, model: ./loose.gguf, context_window: 1024}\n")
    deployments = load_settings(config, {}).deployments
    tiny = deployments["tiny"].targets[0].facts
    assert (tiny.context_window, tiny.capabilities, tiny.mode) == (4096, ("chat", "streaming", "tools"), "chat")
    assert deployments["tiny"].targets[0].model == "tiny"
    loose = deployments["loose"].targets[0]
    assert loose.facts.context_window == 1024  # the config's own facts win
    assert loose.model == str(tmp_path / "loose.gguf")  # the same file whatever the current folder


def test_a_deployment_of_a_model_that_is_nowhere(tmp_path: Path) -> None:
    config = write_config(tmp_path, "providers:\n  local: {type: local}\n"
                                    "deployments:\n  - {name: gone, provider: local, model: llama-70b}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {})
    assert "deployments.gone.model: 'llama-70b' is no model in the store at" in str(caught.value)
    assert "`modelgate models add PATH --name llama-70b`" in str(caught.value)
    # The model store's commands read the providers alone, so that this model can be added.
    assert load_providers(config, {})["local"].models_dir == str(tmp_path / "models")


def test_load_providers_reports_only_the_providers_problems(tmp_path: Path) -> None:
    config = write_config(tmp_path, "master_key: ${UNSET_KEY}\nproviders:\n  local: {type: local, bogus: 1}\n")
    with pytest.raises(ConfigError) as caught:
        load_providers(config, {})
    assert "providers.local.bogus: unknown key" in str(caught.value) and "UNSET_KEY" not in str(caught.value)

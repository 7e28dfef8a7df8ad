"""`modelgate models add | list | rm` as a user runs them, and the deployments that use what they add."""

from __future__ import annotations

import json
from pathlib import Path

from tests.local_models import tiny_llama
from tests.test_cli import run_cli

CONFIG = ("providers:\n  local: {type: local, models_dir: ./store}\n"
          "deployments:\n  - {name: smol, provider: local, model: smollm2-135m-instruct}\n")


def test_add_list_and_remove_the_real_model(tmp_path: Path, smollm2_gguf: Path) -> None:
    config = tmp_path / "modelgate.yaml"
    config.write_text(CONFIG)
    # The deployment names a model not yet added: serving refuses, adding does not.
    refused = run_cli("deployments", "--config", str(config))
    assert refused.returncode == 2 and "deployments.smol.model: 'smollm2-135m-instruct' is no model" in refused.stderr

    added = run_cli("models", "add", str(smollm2_gguf), "--config", str(config))
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("added smollm2-135m-instruct (llama, 134.5M parameters, Q4_1, context 8192")
    assert (tmp_path / "store" / "smollm2-135m-instruct" / smollm2_gguf.name).is_file()

    listed = run_cli("models", "list", "--config", str(config))
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "FORMAT", "ARCHITECTURE", "PARAMS", "QUANT", "CONTEXT", "TOOLS", "MODE", "SIZE",
                              "SHA256"]
    assert row.split()[:8] == ["smollm2-135m-instruct", "gguf", "llama", "134.5M", "Q4_1", "8192", "no", "chat"]
    data = json.loads(run_cli("models", "list", "--config", str(config), "--json").stdout)["data"]
    assert data[0]["name"] == "smollm2-135m-instruct" and len(data[0]["sha256"]) == 64
    assert "<|im_start|>" in data[0]["chat_template"]

    # The catalog shows it beside the API models, with the facts read from the file.
    deployments = run_cli("deployments", "--config", str(config))
    assert deployments.returncode == 0, deployments.stderr
    assert deployments.stdout.splitlines()[1].split() == ["smol", "local", "smollm2-135m-instruct", "8192", "-", "-",
                                                          "-", "chat,streaming", "config"]

    removed = run_cli("models", "rm", "smollm2-135m-instruct", "--config", str(config))
    assert removed.returncode == 0 and removed.stdout.startswith("removed smollm2-135m-instruct")
    assert not (tmp_path / "store" / "smollm2-135m-instruct").exists() and smollm2_gguf.is_file()


def test_bad_paths_names_and_configs(tmp_path: Path) -> None:
    config = tmp_path / "modelgate.yaml"
    config.write_text("providers:\n  local: {type: local}\n")
    tiny = tiny_llama(tmp_path / "tiny.gguf")
    missing = run_cli("models", "add", str(tmp_path / "nope.gguf"), "--config", str(config))
    assert missing.returncode == 2 and "nope.gguf: no such file or folder" in missing.stderr
    not_gguf = run_cli("models", "add", str(config), "--config", str(config))
    assert not_gguf.returncode == 2 and 'does not start with "GGUF"' in not_gguf.stderr
    bad_name = run_cli("models", "add", str(tiny), "--name", "a/b", "--config", str(config))
    assert bad_name.returncode == 2 and "'a/b' cannot name a model" in bad_name.stderr
    first = run_cli("models", "add", str(tiny), "--name", "t", "--config", str(config), "--json")
    assert first.returncode == 0 and json.loads(first.stdout)["supports_tools"] is True
    again = run_cli("models", "add", str(tiny), "--name", "t", "--config", str(config))
    assert again.returncode == 2 and "'t' is already in the store" in again.stderr
    unknown = run_cli("models", "rm", "zzz", "--config", str(config))
    assert unknown.returncode == 2 and "no model 'zzz' in the store" in unknown.stderr

    no_local = tmp_path / "api.yaml"
    no_local.write_text("providers:\n  openai: {type: openai, api_key: sk}\n")
    result = run_cli("models", "list", "--config", str(no_local))
    assert result.returncode == 2 and "has no provider of type local" in result.stderr
    assert "local: {type: local, models_dir: ./models}" in result.stderr
    two = tmp_path / "two.yaml"
    two.write_text("providers:\n  a: {type: local}\n  b: {type: local, models_dir: ./b}\n")
    assert "say which with --provider NAME" in run_cli("models", "list", "--config", str(two)).stderr
    chosen = run_cli("models", "list", "--config", str(two), "--provider", "b")
    assert chosen.returncode == 0 and "no models in" in chosen.stderr
    absent = run_cli("models", "list", "--config", str(tmp_path / "absent.yaml"))
    assert absent.returncode == 2 and "cannot read config file" in absent.stderr



def test_a_sentence_transformers_folder_is_converted_and_served_as_embeddings(tmp_path: Path,
                                                                               minilm_folder: Path) -> None:
    config = tmp_path / "modelgate.yaml"
    config.write_text("providers:\n  local: {type: local, models_dir: ./store}\n"
                      "deployments:\n  - {name: embed, provider: local, model: minilm}\n"
                      "  - {name: folder, provider: local, model: " + str(minilm_folder) + "}\n")
    added = run_cli("models", "add", str(minilm_folder), "--name", "minilm", "--config", str(config))
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("added minilm (bert, 22.5M parameters, F16, context 256, embedding model, 43.")
    assert f"converted from {minilm_folder} to minilm.f16.gguf" in added.stdout
    assert (tmp_path / "store" / "minilm" / "minilm.f16.gguf").is_file()
    row = run_cli("models", "list", "--config", str(config)).stdout.splitlines()[1].split()
    assert row[:8] == ["minilm", "gguf", "bert", "22.5M", "F16", "256", "no", "embedding"]

    # The folder itself is no model the llamacpp engine loads: the error says how to make it one.
    refused = run_cli("deployments", "--config", str(config))
    assert refused.returncode == 2
    assert "is a model folder, and engine llamacpp runs GGUF files" in refused.stderr
    assert "`modelgate models add FOLDER`" in refused.stderr
    config.write_text("providers:\n  local: {type: local, models_dir: ./store}\n"
                      "deployments:\n  - {name: embed, provider: local, model: minilm}\n")
    listed = run_cli("deployments", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split() == ["embed", "local", "minilm", "256", "-", "-", "-", "embeddings",
                                                     "config"]

"""The model store: adding GGUF files and Hugging Face folders, the manifest, resolving, removing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import threading
from pathlib import Path
from typing import Any

import pytest

from modelgate.catalog.model_store import LocalModel, ModelStore, ModelStoreError, default_name
from tests.local_models import TOOLS_TEMPLATE, tiny_llama


def write_safetensors(path: Path, shapes: dict[str, list[int]]) -> None:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes.items():
        size = 2 * (shape[0] * (shape[1] if len(shape) > 1 else 1))
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"\0" * offset)


def hf_folder(folder: Path, *, embedding: bool = False) -> Path:
    """A folder as save_pretrained writes it, with a hand-written config and a tiny safetensors file."""
    folder.mkdir(parents=True)
    if embedding:  # an architecture the converter does not take (bert_gguf.py): kept as a folder
        config = {"architectures": ["XLMRobertaModel"], "model_type": "xlm-roberta", "max_position_embeddings": 512,
                  "hidden_size": 32, "torch_dtype": "float32"}
        (folder / "modules.json").write_text("[]")
    else:
        config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "max_position_embeddings": 131072,
                  "hidden_size": 16, "torch_dtype": "bfloat16"}
        (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": TOOLS_TEMPLATE}))
    (folder / "config.json").write_text(json.dumps(config))
    write_safetensors(folder / "model.safetensors", {"embed.weight": [100, 16], "norm.weight": [16]})
    (folder / ".cache").mkdir()
    (folder / ".cache" / "download.lock").write_text("")
    return folder


def test_a_real_gguf_is_linked_in_with_its_facts(tmp_path: Path, smollm2_gguf: Path) -> None:
    source = tmp_path / "download" / smollm2_gguf.name
    source.parent.mkdir()
    shutil.copyfile(smollm2_gguf, source)
    store = ModelStore(tmp_path / "models")
    model = store.add(source)
    assert model.name == "smollm2-135m-instruct"
    assert model.path == tmp_path / "models" / "smollm2-135m-instruct" / smollm2_gguf.name
    assert (model.format, model.architecture) == ("gguf", "llama")
    assert (model.quantization, model.context_length) == ("Q4_1", 8192)
    assert model.parameters is not None and 130e6 < model.parameters < 140e6
    assert model.chat_template and model.supports_tools is False
    assert model.size_bytes == source.stat().st_size
    assert model.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert os.path.samefile(source, model.path)  # a link, not a second 98 MB
    source.unlink()  # the store's copy outlives the original
    assert store.resolve("smollm2-135m-instruct") == model and model.path.is_file()
    facts = model.facts()
    assert (facts.context_window, facts.capabilities, facts.mode) == (8192, ("chat", "streaming"), "chat")


def test_the_manifest_is_json_with_paths_inside_the_store(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    model = store.add(tiny_llama(tmp_path / "Tiny-Llama.F16.gguf"), name="tiny")
    body = json.loads((tmp_path / "models" / "manifest.json").read_text())
    assert body["version"] == 1
    assert body["models"][0]["path"] == "tiny/Tiny-Llama.F16.gguf"
    assert body["models"][0]["supports_tools"] is True
    # The folder moves whole: the entries follow it.
    shutil.move(tmp_path / "models", tmp_path / "moved")
    moved = ModelStore(tmp_path / "moved").resolve("tiny")
    assert moved.path == tmp_path / "moved" / "tiny" / "Tiny-Llama.F16.gguf" and moved.sha256 == model.sha256
    assert not list((tmp_path / "moved").glob(".manifest-*")) and not list((tmp_path / "moved").glob(".adding-*"))


def test_a_hugging_face_folder(tmp_path: Path) -> None:
    source = hf_folder(tmp_path / "Tiny-Chat")
    store = ModelStore(tmp_path / "models")
    model = store.add(source)
    assert model.name == "tiny-chat" and model.format == "hf" and model.path == tmp_path / "models" / "tiny-chat"
    assert (model.architecture, model.context_length, model.quantization, model.parameters) == (
        "LlamaForCausalLM", 131072, "BF16", 100 * 16 + 16)
    assert model.chat_template == TOOLS_TEMPLATE and model.supports_tools is True
    assert sorted(p.name for p in model.path.iterdir()) == ["config.json", "model.safetensors", "tokenizer_config.json"]
    assert model.size_bytes == sum(p.stat().st_size for p in model.path.iterdir())
    assert model.sha256 is not None and len(model.sha256) == 64
    assert model.facts().capabilities == ("chat", "streaming", "tools")
    embedder = store.add(hf_folder(tmp_path / "embedder", embedding=True))
    assert embedder.mode == "embedding" and embedder.facts().mode == "embedding"
    assert embedder.facts().capabilities == ("embeddings",) and embedder.facts().context_window == 512
    assert [m.name for m in store.list()] == ["tiny-chat", "embedder"]


def test_a_folder_that_is_no_model(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    with pytest.raises(ModelStoreError, match=r"has no config.json: give a GGUF file or a Hugging Face model folder"):
        ModelStore(tmp_path / "models").add(tmp_path / "photos")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelStoreError, match=r"config.json is not valid JSON"):
        ModelStore(tmp_path / "models").add(broken)
    (broken / "config.json").write_text("{}")
    (broken / "model.safetensors").write_bytes(struct.pack("<Q", 2**60))
    with pytest.raises(ModelStoreError, match=r"declares a 1152921504606846976-byte header"):
        ModelStore(tmp_path / "models").add(broken)


def test_resolve_by_name_by_path_and_neither(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models", relative_to=tmp_path)
    tiny_llama(tmp_path / "loose.gguf")
    loose = store.resolve("loose.gguf")  # relative to the config's folder, not in the store
    assert loose.path == tmp_path / "loose.gguf" and loose.sha256 is None and loose.context_length == 4096
    folder = store.resolve(str(hf_folder(tmp_path / "hf")))
    assert folder.format == "hf" and folder.sha256 is None
    store.add(tmp_path / "loose.gguf", name="kept")
    with pytest.raises(ModelStoreError) as raised:
        store.resolve("nothing-here")
    assert "(it has: kept)" in str(raised.value)
    assert "`modelgate models add PATH --name nothing-here`" in str(raised.value)
    shutil.rmtree(tmp_path / "models" / "kept")
    with pytest.raises(ModelStoreError, match=r"is gone; remove it with `modelgate models rm kept` and add it again"):
        store.resolve("kept")


def test_names_taken_and_names_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    tiny = tiny_llama(tmp_path / "tiny.gguf")
    store.add(tiny)
    with pytest.raises(ModelStoreError, match=r"'tiny' is already in the store .*give another with --name"):
        store.add(tiny)
    for bad in ("../escape", "a/b", "-x", "manifest.json", "x" * 129):
        with pytest.raises(ModelStoreError, match=r"cannot name a model"):
            store.add(tiny, name=bad)
    with pytest.raises(ModelStoreError, match=r"no such file or folder"):
        store.add(tmp_path / "missing.gguf")
    os.mkfifo(tmp_path / "pipe.gguf")
    with pytest.raises(ModelStoreError, match=r"pipe.gguf is not a regular file"):
        store.add(tmp_path / "pipe.gguf")
    assert [m.name for m in store.list()] == ["tiny"]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [".lock", "manifest.json", "tiny"]


def test_remove(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    with pytest.raises(ModelStoreError, match=r"no model 'tiny' in the store .*\(it is empty\)"):
        store.remove("tiny")  # before the folder exists
    store.add(tiny_llama(tmp_path / "tiny.gguf"))
    removed = store.remove("tiny")
    assert isinstance(removed, LocalModel) and not (tmp_path / "models" / "tiny").exists()
    assert store.list() == [] and (tmp_path / "tiny.gguf").is_file()  # the original stays
    with pytest.raises(ModelStoreError, match=r"no model 'tiny' in the store .*`modelgate models list`"):
        store.remove("tiny")


def test_adds_at_once_all_land(tmp_path: Path) -> None:
    sources = [tiny_llama(tmp_path / f"m{i}.gguf") for i in range(8)]
    store = ModelStore(tmp_path / "models")
    threads = [threading.Thread(target=store.add, args=(source,)) for source in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(m.name for m in store.list()) == [f"m{i}" for i in range(8)]


def test_a_damaged_manifest_is_named(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "manifest.json").write_text('{"version": 1, "models": [{"name": "x"}]}')
    with pytest.raises(ModelStoreError, match=r"manifest.json is damaged"):
        ModelStore(tmp_path / "models").list()
    (tmp_path / "models" / "manifest.json").write_text('{"version": 7, "models": []}')
    with pytest.raises(ModelStoreError, match=r"is version 7; this modelgate reads version 1"):
        ModelStore(tmp_path / "models").list()


def test_default_names() -> None:
    assert default_name(Path("SmolLM2-135M-Instruct.Q4_1.gguf"), "Q4_1") == "smollm2-135m-instruct"
    assert default_name(Path("Llama-3.2-1B-Instruct-Q4_K_M.gguf"), "Q4_K_M") == "llama-3.2-1b-instruct"
    assert default_name(Path("my model (v2).gguf"), "F16") == "my-model-v2"
    assert default_name(Path("Q8_0.gguf"), "Q8_0") == "q8_0"

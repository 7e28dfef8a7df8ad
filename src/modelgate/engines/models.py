"""A local deployment's ``model:`` → what its engine loads.

``model:`` is a name in the model store (``catalog/model_store.py``), the path of a GGUF file, or
the path of a Hugging Face model folder (made absolute by the config); ``resolve_model`` is the
one place that turns it into what the engine loads: a GGUF file for llamacpp and ray (llama.cpp
in each replica), a model folder for vllm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelgate.catalog.model_store import ModelStore, ModelStoreError

GGUF_MAGIC = b"GGUF"
FOLDER_ENGINES = ("vllm",)  # the engines that load a Hugging Face model folder; the others, a GGUF file


class ModelNotFound(ValueError):
    """``model:`` names nothing this installation can load; the message says what to give instead."""


@dataclass(frozen=True, slots=True)
class ModelFile:
    name: str  # what answers report as the model
    path: Path  # the GGUF file, or the model folder


def resolve_model(model: str, models_dir: str | Path | None = None, engine: str = "llamacpp") -> ModelFile:
    """What ``model`` names, as ``engine`` loads it: a path, or a name in the store at ``models_dir``."""
    path = Path(model).expanduser()
    if not path.exists() and models_dir is not None:
        try:
            stored = ModelStore(models_dir).get(model)
        except ModelStoreError as error:
            raise ModelNotFound(str(error)) from error
        if stored is not None:
            return _loadable(model, stored.path, engine)
    return _loadable(path.name if path.is_dir() else path.stem, path, engine)


def _loadable(name: str, path: Path, engine: str) -> ModelFile:
    return _folder(name, path) if engine in FOLDER_ENGINES else _gguf(name, path, engine)


def _gguf(name: str, path: Path, engine: str) -> ModelFile:
    model = str(path)
    if path.is_dir():
        raise ModelNotFound(
            f"'{model}' is a model folder, and engine {engine} runs GGUF files (llama.cpp). A Llama-family "
            "folder (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM) is converted to one by "
            "`modelgate models add FOLDER --gguf`, a sentence-transformers BERT folder by `modelgate models add "
            "FOLDER`; serve other folders with engine: vllm, or convert them with llama.cpp's convert_hf_to_gguf.py")
    if not path.is_file():
        raise ModelNotFound(
            f"'{model}' is not a GGUF file on this machine; give the path of a .gguf file, or the name "
            "of one registered with 'modelgate models add'")
    with path.open("rb") as file:
        magic = file.read(4)
    if magic != GGUF_MAGIC:
        raise ModelNotFound(f"'{model}' is not a GGUF file (it does not start with GGUF); give the path "
                            "of a .gguf model, or convert the model with llama.cpp's convert_hf_to_gguf.py")
    return ModelFile(name=name, path=path.resolve())


def _folder(name: str, path: Path) -> ModelFile:
    model = str(path)
    if path.is_file():
        raise ModelNotFound(
            f"'{model}' is a file, and engine vllm serves Hugging Face model folders (config.json and the "
            "weights, as save_pretrained writes them); run a GGUF file with engine: llamacpp or ray")
    if not (path / "config.json").is_file():
        raise ModelNotFound(
            f"'{model}' is not a Hugging Face model folder on this machine (no config.json in it); give the "
            "folder save_pretrained wrote, or the name of one registered with 'modelgate models add'")
    return ModelFile(name=name, path=path.resolve())

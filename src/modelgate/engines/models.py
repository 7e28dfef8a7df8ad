"""A local deployment's ``model:`` → the file its engine loads.

``model:`` is a name in the model store (``catalog/model_store.py``) or the path of a GGUF file
(made absolute by the config); ``resolve_model`` is the one place that turns it into the file the
engine loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelgate.catalog.model_store import ModelStore, ModelStoreError

GGUF_MAGIC = b"GGUF"


class ModelNotFound(ValueError):
    """``model:`` names nothing this installation can load; the message says what to give instead."""


@dataclass(frozen=True, slots=True)
class ModelFile:
    name: str  # what answers report as the model
    path: Path


def resolve_model(model: str, models_dir: str | Path | None = None) -> ModelFile:
    """The file ``model`` names: a GGUF file's path, or a name in the store at ``models_dir``."""
    path = Path(model).expanduser()
    if not path.is_file() and models_dir is not None:
        try:
            stored = ModelStore(models_dir).get(model)
        except ModelStoreError as error:
            raise ModelNotFound(str(error)) from error
        if stored is not None:
            return _gguf(model, stored.path)
    return _gguf(path.stem, path)


def _gguf(name: str, path: Path) -> ModelFile:
    model = str(path)
    if path.is_dir():
        raise ModelNotFound(
            f"'{model}' is a model folder, which the llamacpp engine cannot load: it loads GGUF files. A "
            "sentence-transformers folder of a BERT model is converted to one by `modelgate models add FOLDER`; "
            "other folders are for the vllm engine")
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

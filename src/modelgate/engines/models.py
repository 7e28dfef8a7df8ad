"""A local deployment's ``model:`` → the file its engine loads.

Until the model store answers names (``catalog/model_store.py``), ``model:`` is the path of a
GGUF file; ``resolve_model`` is the one place that turns the one into the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

GGUF_MAGIC = b"GGUF"


class ModelNotFound(ValueError):
    """``model:`` names nothing this installation can load; the message says what to give instead."""


@dataclass(frozen=True, slots=True)
class ModelFile:
    name: str  # what answers report as the model
    path: Path


def resolve_model(model: str) -> ModelFile:
    """The file ``model`` names: a GGUF file's path (absolute, or relative to the working directory)."""
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelNotFound(
            f"'{model}' is not a GGUF file on this machine; give the path of a .gguf file "
            "(a name in the model store once it is registered with 'modelgate models add')")
    with path.open("rb") as file:
        magic = file.read(4)
    if magic != GGUF_MAGIC:
        raise ModelNotFound(f"'{model}' is not a GGUF file (it does not start with GGUF); give the path "
                            "of a .gguf model, or convert the model with llama.cpp's convert_hf_to_gguf.py")
    return ModelFile(name=path.stem, path=path.resolve())

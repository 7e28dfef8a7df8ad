"""A model folder's weights from its ``*.safetensors`` files, as numpy arrays mapped from the files.

The format (https://huggingface.co/docs/safetensors): a u64 little-endian header length, a JSON
header naming each tensor's dtype, shape and byte range in the data that follows, then the data.
Tensors are mapped from the file (``numpy.memmap``), not read, so a model of gigabytes costs no
memory until a tensor is used; bfloat16, which numpy has no type for, is widened to float32.

The files are untrusted: the header's size, each tensor's dtype, shape and byte range are checked
against the file before anything is mapped, and a problem is a ``WeightsError`` naming the file.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["Weights", "WeightsError"]

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the format's own limit
_DTYPES = {"F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2), "F64": ("<f8", 8),
           "I64": ("<i8", 8), "I32": ("<i4", 4), "I16": ("<i2", 2), "I8": ("i1", 1), "U8": ("u1", 1),
           "BOOL": ("?", 1)}


class WeightsError(ValueError):
    """The weights cannot be read; the message names the file and the problem."""


class _Entry:
    __slots__ = ("dtype", "path", "shape", "start", "stop")

    def __init__(self, path: Path, dtype: str, shape: tuple[int, ...], start: int, stop: int) -> None:
        self.path, self.dtype, self.shape, self.start, self.stop = path, dtype, shape, start, stop


class Weights:
    """The tensors of every ``*.safetensors`` file in a folder, by name."""

    def __init__(self, folder: Path) -> None:
        self.files = sorted(folder.glob("*.safetensors"))
        if not self.files:
            raise WeightsError(f"{folder} has no *.safetensors file: the weights must be in safetensors format "
                               "(save_pretrained's default); a pytorch_model.bin cannot be read without torch")
        self._entries: dict[str, _Entry] = {}
        for path in self.files:
            self._entries.update(_header(path))

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name].shape

    def get(self, name: str) -> NDArray[Any]:
        """The tensor ``name``, mapped from its file (bfloat16 widened to float32)."""
        import numpy as np

        entry = self._entries[name]
        code, _ = _DTYPES[entry.dtype]
        count = math.prod(entry.shape)
        data: NDArray[Any] = np.memmap(entry.path, dtype=code, mode="r", offset=entry.start, shape=(count,))
        if entry.dtype == "BF16":  # the high half of a float32: shift it into place
            data = (data.astype("<u4") << 16).view("<f4")
        return data.reshape(entry.shape)


def read_header(path: Path) -> tuple[dict[str, Any], int, int]:
    """A safetensors file's header (its tensors by name, ``__metadata__`` left out), where the
    data begins, and the file's size; ``WeightsError`` naming what is wrong with it."""
    try:
        with path.open("rb") as file:
            head = file.read(8)
            if len(head) != 8:
                raise WeightsError(f"{path} is too short to be a safetensors file")
            (size,) = struct.unpack("<Q", head)
            if size > MAX_HEADER_BYTES:
                raise WeightsError(f"{path} declares a {size}-byte header (at most {MAX_HEADER_BYTES})")
            raw = file.read(size)
            total = path.stat().st_size
    except OSError as exc:
        raise WeightsError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(raw) != size:
        raise WeightsError(f"{path} ends inside its header (truncated?)")
    try:
        header = json.loads(raw)
    except ValueError:
        raise WeightsError(f"{path} has a header that is not valid JSON") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path} has a header that is not a JSON object")
    header.pop("__metadata__", None)
    return header, 8 + size, total


def _header(path: Path) -> dict[str, _Entry]:
    header, base, total = read_header(path)
    return {name: _entry(path, name, tensor, base, total) for name, tensor in header.items()}


def _entry(path: Path, name: str, tensor: Any, base: int, total: int) -> _Entry:
    problem = f"{path}: tensor {name}"
    if not isinstance(tensor, dict):
        raise WeightsError(f"{problem} is not described by a JSON object")
    dtype, shape, offsets = tensor.get("dtype"), tensor.get("shape"), tensor.get("data_offsets")
    if dtype not in _DTYPES:
        raise WeightsError(f"{problem} has dtype {dtype!r}, which cannot be read (known: {', '.join(_DTYPES)})")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise WeightsError(f"{problem} has no valid shape")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise WeightsError(f"{problem} has no valid data_offsets")
    start, stop = base + offsets[0], base + offsets[1]
    if stop > total:
        raise WeightsError(f"{problem} lies past the end of the file (truncated?)")
    if stop - start != math.prod(shape) * _DTYPES[dtype][1]:
        raise WeightsError(f"{problem}: its {stop - start} bytes do not hold a {dtype} tensor of shape {shape}")
    return _Entry(path, dtype, tuple(shape), start, stop)

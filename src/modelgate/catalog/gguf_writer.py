"""Writing a GGUF file: metadata and tensors, in the layout ``gguf.py`` reads.

Version 3, little-endian (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md)::

    magic "GGUF" | version u32 | tensor count u64 | metadata count u64
    metadata:  key (string) | value type u32 | value
    tensors:   name (string) | dimension count u32 | dimensions u64... | ggml type u32 | offset u64
    padding to the alignment, then each tensor's data, each padded to the alignment

A tensor's dimensions are written in ggml's order, the fastest-varying first: the reverse of a
numpy shape, so that a (rows, columns) matrix is ``{columns, rows}``. Offsets count from the start
of the data. Metadata values carry their type, and llama.cpp checks it against the type it
expects for a key: the caller says which (``U32``, ``FLOAT32``, ``BOOL``, a string, or an ``Array``
of one element type). Tensor data is written one tensor at a time, so that a model is never held
in memory twice.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["ALIGNMENT", "BOOL", "F16", "F32", "FLOAT32", "INT32", "STRING", "U32", "Array", "TensorSpec", "Value",
           "write_gguf"]

ALIGNMENT = 32  # general.alignment's default
VERSION = 3

# Metadata value types (the GGUF spec's gguf_metadata_value_type).
U32, INT32, FLOAT32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9
_PACK = {U32: "<I", INT32: "<i", FLOAT32: "<f", BOOL: "<?"}

# Tensor types (ggml_type): the two a converted model is written in.
F32, F16 = 0, 1
_NUMPY = {F32: "<f4", F16: "<f2"}


@dataclass(frozen=True, slots=True)
class Value:
    """A scalar metadata value of a stated type (``U32``, ``INT32``, ``FLOAT32``, ``BOOL``)."""

    type: int
    value: int | float | bool


@dataclass(frozen=True, slots=True)
class Array:
    """A metadata array: its elements' type (``STRING``, ``INT32``, ...) and the elements."""

    type: int
    items: Sequence[Any]


Metadata = Mapping[str, "str | Value | Array"]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One tensor to write: its name, numpy shape and ggml type, and how to make its data (called
    once, when its turn to be written comes)."""

    name: str
    shape: tuple[int, ...]
    type: int
    data: Callable[[], NDArray[Any]]


def write_gguf(path: str | os.PathLike[str], metadata: Metadata, tensors: Iterable[TensorSpec]) -> int:
    """Write a GGUF file of ``metadata`` and ``tensors`` at ``path``; the bytes written."""
    import numpy as np

    specs = list(tensors)
    head = [b"GGUF", struct.pack("<I", VERSION), struct.pack("<Q", len(specs)), struct.pack("<Q", len(metadata))]
    head += [_string(key) + _value(item) for key, item in metadata.items()]
    offset = 0
    for spec in specs:
        dims = tuple(reversed(spec.shape))
        head += [_string(spec.name), struct.pack("<I", len(dims)), b"".join(struct.pack("<Q", d) for d in dims),
                 struct.pack("<I", spec.type), struct.pack("<Q", offset)]
        offset += _padded(_size(spec))
    header = b"".join(head)
    with Path(path).open("wb") as file:
        file.write(header + b"\0" * (-len(header) % ALIGNMENT))
        for spec in specs:
            data = np.ascontiguousarray(spec.data(), dtype=_NUMPY[spec.type])
            if data.shape != spec.shape:
                raise ValueError(f"tensor {spec.name} has shape {data.shape}, not the {spec.shape} declared")
            _write(file, data)
        return file.tell()


def _write(file: BinaryIO, data: np.ndarray[Any, Any]) -> None:
    raw = data.tobytes()
    file.write(raw + b"\0" * (-len(raw) % ALIGNMENT))


def _size(spec: TensorSpec) -> int:
    count = 1
    for dim in spec.shape:
        count *= dim
    return count * (4 if spec.type == F32 else 2)


def _padded(size: int) -> int:
    return size + (-size % ALIGNMENT)


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def _value(item: str | Value | Array) -> bytes:
    if isinstance(item, str):
        return struct.pack("<I", STRING) + _string(item)
    if isinstance(item, Value):
        return struct.pack("<I", item.type) + struct.pack(_PACK[item.type], item.value)
    if item.type == STRING:
        body = b"".join(_string(text) for text in item.items)
    else:
        body = struct.pack(f"<{len(item.items)}{_PACK[item.type][1]}", *item.items)
    return struct.pack("<IIQ", ARRAY, item.type, len(item.items)) + body

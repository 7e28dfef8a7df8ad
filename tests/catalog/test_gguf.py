"""The GGUF header reader: the facts of a real model, of files written here, and every kind of damage."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from modelgate.catalog.gguf import MAX_ARRAY_DEPTH, GGUFError, read_gguf
from tests.local_models import (
    ARRAY,
    STRING,
    UINT8,
    UINT64,
    Array,
    gguf_bytes,
    tiny_llama,
    write_gguf,
)


def test_the_real_smollm2_file(smollm2_gguf: Path) -> None:
    started = time.perf_counter()
    info = read_gguf(smollm2_gguf)
    assert time.perf_counter() - started < 5  # the header only: 98 MB of weights are never read
    assert info.architecture == "llama"
    assert info.context_length == 8192
    assert info.quantization == "Q4_1"
    assert info.parameters is not None and 130e6 < info.parameters < 140e6
    assert info.embedding_length == 576
    assert info.chat_template is not None and "<|im_start|>" in info.chat_template
    assert info.supports_tools is False and info.embedding is False
    assert info.version == 3 and info.tensor_count == 272
    assert "tokenizer.ggml.tokens" not in info.metadata  # arrays are walked over, not kept


def test_facts_of_a_written_file(tmp_path: Path) -> None:
    info = read_gguf(tiny_llama(tmp_path / "tiny.gguf"))
    assert (info.architecture, info.name) == ("llama", "Tiny Llama")
    assert (info.quantization, info.context_length) == ("F16", 4096)
    assert info.parameters == 64 * 3 + 64
    assert info.embedding_length == 64
    assert info.supports_tools is True


def test_stated_parameter_count_and_size_label(tmp_path: Path) -> None:
    stated = tiny_llama(tmp_path / "a.gguf", **{"general.parameter_count": (UINT64, 7_000_000_000)})
    assert read_gguf(stated).parameters == 7_000_000_000
    labelled = write_gguf(tmp_path / "b.gguf", {"general.architecture": "llama", "general.size_label": "8x7B"})
    assert read_gguf(labelled).parameters == 56_000_000_000


def test_quantization_from_the_tensors_when_the_file_type_is_missing(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "q.gguf", {"general.architecture": "qwen2"},
                      [("blk.0.ffn.weight", [256, 256], 12), ("norm.weight", [256], 0)])
    assert read_gguf(path).quantization == "Q4_K"


def test_an_embedding_model_and_a_named_tool_template(tmp_path: Path) -> None:
    embedding = write_gguf(tmp_path / "e.gguf", {"general.architecture": "bert", "bert.pooling_type": 1,
                                                 "bert.context_length": 512})
    info = read_gguf(embedding)
    assert info.embedding is True and info.context_length == 512 and info.chat_template is None
    named = write_gguf(tmp_path / "n.gguf", {"general.architecture": "llama",
                                             "tokenizer.chat_template": "{{ messages }}",
                                             "tokenizer.chat_template.tool_use": "{{ tools }}"})
    assert read_gguf(named).supports_tools is True
    assert read_gguf(write_gguf(tmp_path / "t.gguf", {"tokenizer.chat_template": "{{ toolset }}"})).supports_tools \
        is False


def test_version_1_and_big_endian_files(tmp_path: Path) -> None:
    metadata = {"general.architecture": "llama", "llama.context_length": 2048, "general.file_type": 7}
    for options in ({"version": 1}, {"order": ">"}):
        info = read_gguf(write_gguf(tmp_path / "f.gguf", metadata, [("w", [8, 8], 8)], **options))
        assert (info.context_length, info.quantization, info.parameters) == (2048, "Q8_0", 64), options


def test_every_truncation_is_reported(tmp_path: Path) -> None:
    whole = tiny_llama(tmp_path / "whole.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    for size in range(len(whole)):
        cut.write_bytes(whole[:size])
        with pytest.raises(GGUFError, match=r"GGUF|truncated"):
            read_gguf(cut)


def _header(version: int, tensors: int, entries: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, entries)


def _key(name: str, kind: int) -> bytes:
    return struct.pack("<Q", len(name)) + name.encode() + struct.pack("<I", kind)


HOSTILE = {
    "not gguf": (b"PK\x03\x04 a zip file", 'does not start with "GGUF"'),
    "empty": (b"", 'does not start with "GGUF"'),
    "unknown version": (_header(99, 0, 0), "version 99"),
    "huge tensor count": (_header(3, 2**63, 0), "the tensor count is 9223372036854775808"),
    "huge metadata count": (_header(3, 0, 2**40), "the metadata count is 1099511627776"),
    "huge key": (_header(3, 0, 1) + struct.pack("<Q", 2**62), "metadata key 0 is 4611686018427387904 bytes long"),
    "huge string": (_header(3, 0, 1) + _key("general.name", STRING) + struct.pack("<Q", 2**60),
                    "the value of general.name is 1152921504606846976 bytes long"),
    "string past the end": (_header(3, 0, 1) + _key("general.name", STRING) + struct.pack("<Q", 1000) + b"abc",
                            "ends inside the value of general.name"),
    "huge array": (_header(3, 0, 1) + _key("tokenizer.ggml.scores", ARRAY) + struct.pack("<IQ", UINT8, 2**50),
                   "the element count of tokenizer.ggml.scores is 1125899906842624"),
    "huge string array": (_header(3, 0, 1) + _key("tokenizer.ggml.tokens", ARRAY) + struct.pack("<IQ", STRING, 10**6),
                          "the element count of tokenizer.ggml.tokens is 1000000, more than"),
    "unknown value type": (_header(3, 0, 1) + _key("x", 77) + b"\0" * 8, "x has unknown value type 77"),
    "unknown element type": (_header(3, 0, 1) + _key("x", ARRAY) + struct.pack("<IQ", 77, 1),
                             "array of unknown type 77"),
    "key not utf-8": (_header(3, 0, 1) + struct.pack("<Q", 2) + b"\xff\xfe" + struct.pack("<I", UINT8) + b"\0",
                      "metadata key 0 is not UTF-8"),
    "too many dimensions": (_header(3, 1, 0) + struct.pack("<Q", 1) + b"w" + struct.pack("<I", 1000) + b"\0" * 32,
                            "tensor w has 1000 dimensions"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_header_is_refused_at_once(tmp_path: Path, case: str) -> None:
    data, problem = HOSTILE[case]
    path = tmp_path / "hostile.gguf"
    # Bytes enough after each header that the counts before the damaged item pass their checks.
    path.write_bytes(data + b"\0" * 64 if data.startswith(b"GGUF") else data)
    started = time.perf_counter()
    with pytest.raises(GGUFError) as raised:
        read_gguf(path)
    assert time.perf_counter() - started < 1
    assert problem in str(raised.value) and str(path) in str(raised.value)


def test_arrays_nested_too_deep(tmp_path: Path) -> None:
    nested: Array = Array(UINT8, [1])
    for _ in range(MAX_ARRAY_DEPTH):
        nested = Array(ARRAY, [nested])
    path = tmp_path / "deep.gguf"
    path.write_bytes(gguf_bytes({"deep": nested}))
    with pytest.raises(GGUFError, match=rf"deep nests arrays more than {MAX_ARRAY_DEPTH} deep"):
        read_gguf(path)


def test_a_folder_or_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GGUFError, match=r"is a folder, not a GGUF file"):
        read_gguf(tmp_path)
    with pytest.raises(GGUFError, match=r"cannot read .*: No such file or directory"):
        read_gguf(tmp_path / "missing.gguf")


def test_tool_support_is_a_template_that_uses_tools_in_a_tag(tmp_path: Path) -> None:
    def supports(**templates: str) -> bool:
        metadata = {"general.architecture": "llama", **{k.replace("__", "."): v for k, v in templates.items()}}
        return read_gguf(write_gguf(tmp_path / "m.gguf", metadata)).supports_tools

    assert supports(tokenizer__chat_template="{% for tool in tools %}{{ tool | tojson }}{% endfor %}")
    # The word in the template's text, or in a string, shows the model nothing.
    assert not supports(tokenizer__chat_template="You have no tools.{% for m in messages %}{{ m.content }}{% endfor %}")
    assert not supports(tokenizer__chat_template="{{ 'no tools here' }}{{ messages }}")
    # Only the default template and the one kept for tool use render a request with tools.
    assert not supports(tokenizer__chat_template="{{ messages }}", tokenizer__chat_template__rag="{{ tools }}")

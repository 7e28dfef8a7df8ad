"""Converting a sentence-transformers BERT folder to GGUF: the real all-MiniLM-L6-v2 folder, read
back by the GGUF reader and by llama.cpp itself, and the folders the converter cannot take."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import llama_cpp
import pytest
from safetensors.numpy import load_file, save_file

from modelgate.catalog.bert_gguf import convert_sentence_bert
from modelgate.catalog.gguf import NORMALIZE_KEY, read_gguf
from modelgate.catalog.model_store import ModelStore, ModelStoreError
from tests.bert_reference import SentenceBert, cosine

# Text that exercises the WordPiece vocabulary: capitals, accents, punctuation, digits, CJK
# characters (one token each), a word of pieces, a character the vocabulary lacks, special tokens.
TRICKY = ["Hello, World!", "naïve café RÉSUMÉ Zürich", "unbelievably tokenization-heavy", "3.14159 + 2 = 5?!",
          "東京 and 北京", "emoji 🦙 here", "tabs\tand\nnewlines   and  spaces", "[CLS] inside [SEP] text",
          "don't won't it's"]


def test_the_real_folder_becomes_a_gguf_llama_cpp_tokenizes_as_hugging_face(
        minilm_store: Path, minilm_folder: Path) -> None:
    model = ModelStore(minilm_store).resolve("minilm")
    assert (model.format, model.architecture, model.quantization, model.mode) == ("gguf", "bert", "F16", "embedding")
    assert (model.context_length, model.embedding_length) == (256, 384)  # sentence_bert_config's max_seq_length
    assert model.converted_from == str(minilm_folder) and model.path.name == "minilm.f16.gguf"
    assert model.sha256 is not None and model.parameters is not None and 22e6 < model.parameters < 23e6
    assert model.facts().capabilities == ("embeddings",)
    metadata = read_gguf(model.path).metadata
    assert metadata["bert.pooling_type"] == 1 and metadata[NORMALIZE_KEY] is True  # mean; modules.json: Normalize
    assert metadata["bert.attention.causal"] is False and metadata["tokenizer.ggml.model"] == "bert"

    reference = SentenceBert(minilm_folder)
    vocab = llama_cpp.Llama(model_path=str(model.path), vocab_only=True, verbose=False)
    try:
        for text in TRICKY:
            assert vocab.tokenize(text.encode(), add_bos=True, special=True) == reference.ids(text), text
    finally:
        vocab.close()


def test_f32_from_a_folder_with_only_vocab_txt(minilm_folder: Path, tmp_path: Path) -> None:
    folder = linked_copy(minilm_folder, tmp_path / "minilm", leave_out=("tokenizer.json",))
    target = tmp_path / "minilm.f32.gguf"
    written = convert_sentence_bert(folder, target, "f32")
    assert written == target.stat().st_size > 88_000_000  # every weight in f32: the folder's own 90 MB
    assert read_gguf(target).quantization == "F32"
    reference = SentenceBert(minilm_folder)
    llm = llama_cpp.Llama(model_path=str(target), embedding=True, n_ctx=256, n_batch=256, n_ubatch=256,
                          verbose=False)
    try:
        for text in TRICKY[:3]:
            assert llm.tokenize(text.encode(), add_bos=True, special=False) == reference.ids(text)
        vector = llm.embed(TRICKY[1], normalize=True)
        assert cosine(vector, reference.embed(TRICKY[1])) > 0.9999
    finally:
        llm.close()


def pooling(mode: str) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        config = json.loads((folder / "1_Pooling" / "config.json").read_text())
        config.update(pooling_mode_mean_tokens=False, **{f"pooling_mode_{mode}": True})
        replace_file(folder / "1_Pooling" / "config.json", json.dumps(config))
    return change


def add_module(folder: Path) -> None:
    modules = json.loads((folder / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    replace_file(folder / "modules.json", json.dumps(modules))


def relu(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    replace_file(folder / "config.json", json.dumps({**config, "hidden_act": "relu"}))


def fewer_tensors(folder: Path) -> None:
    weights = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    kept = {k: v for k, v in weights.items() if not k.startswith("embeddings.word")}
    save_file(kept, str(folder / "model.safetensors"))


def no_cls(folder: Path) -> None:
    config = json.loads((folder / "tokenizer_config.json").read_text())
    replace_file(folder / "tokenizer_config.json", json.dumps({**config, "cls_token": "<s>"}))


@pytest.mark.parametrize(("leave_out", "change", "problem"), [
    (("1_Pooling",), None, r"1_Pooling/config.json is missing: the Pooling module's config"),
    ((), pooling("max_tokens"), r"pools by max; llama.cpp pools by exactly one of mean, CLS or last token"),
    ((), add_module, r"has a sentence_transformers.models.Dense module \(2_Dense\), which llama.cpp does not run"),
    (("model.safetensors",), None, r"has no \*.safetensors file: the weights must be in safetensors format"),
    (("tokenizer.json", "vocab.txt"), None, r"has neither tokenizer.json nor vocab.txt"),
    ((), relu, r"hidden_act is 'relu'; llama.cpp's BERT computes GELU only"),
    ((), fewer_tensors, r"the weights have no tensor embeddings.word_embeddings.weight"),
    ((), no_cls, r"the vocabulary has no cls token '<s>'"),
], ids=["no-pooling-config", "max-pooling", "dense-module", "no-safetensors", "no-vocabulary", "relu",
        "missing-tensor", "no-cls"])
def test_a_folder_it_cannot_convert_is_refused_naming_what_is_missing(
        minilm_folder: Path, tmp_path: Path, leave_out: tuple[str, ...], change: Callable[[Path], None] | None,
        problem: str) -> None:
    folder = linked_copy(minilm_folder, tmp_path / "model", leave_out=leave_out)
    if change is not None:
        change(folder)
    store = ModelStore(tmp_path / "models")
    with pytest.raises(ModelStoreError, match=r"cannot convert .*/model to GGUF: .*" + problem):
        store.add(folder, "broken")
    assert store.list() == [] and not (tmp_path / "models" / "broken").exists()
    assert not list((tmp_path / "models").glob(".adding-*"))


def linked_copy(source: Path, target: Path, leave_out: tuple[str, ...] = ()) -> Path:
    """``source`` as a new folder of hard links (no 90 MB copied), less the names in ``leave_out``."""
    shutil.copytree(source, target, copy_function=_link,
                    ignore=lambda folder, names: [n for n in names if n in leave_out])
    return target


def _link(source: str, target: str) -> None:
    try:
        Path(target).hardlink_to(source)
    except OSError:
        shutil.copy2(source, target)


def replace_file(path: Path, text: str) -> None:
    """Write ``text`` at ``path`` as a new file (a hard link to the installed model stays as it is)."""
    path.unlink()
    path.write_text(text)

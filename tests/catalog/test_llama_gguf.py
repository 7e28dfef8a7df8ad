"""Converting a Llama folder to GGUF: a tiny random Llama written here (``tests/llama_reference.py``),
read back by llama.cpp itself, whose logits must be those the model computed in numpy gives (the
tensor names, the rotary reordering of the query and key rows, the hyperparameters all right),
whose tokens must be Hugging Face's, and the folders the converter cannot take."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer, processors

from modelgate.catalog.gguf import read_gguf
from modelgate.catalog.llama_gguf import convert_llama
from modelgate.catalog.model_store import ModelStore, ModelStoreError
from tests.llama_reference import CHATML, TinyLlama, write_tiny_llama
from tests.test_cli import run_cli

TEXT = "The quick brown fox jumps over the lazy llama, 12345 times!"
# Text that exercises the byte-level vocabulary: merges, digits, accents, CJK, an emoji (bytes with
# no merge), spaces and newlines, special tokens inside text.
TRICKY = ["Hello, world! How are you today?", "Zürich, café, naïve — résumé. 東京", "emoji 🦙 here 0123456789",
          "tabs\tand\nnewlines   and  spaces", "<|im_start|>user\nhi<|im_end|>", "don't won't it's I'm"]


@pytest.fixture(scope="module")
def reference(llama_folder: Path) -> TinyLlama:
    return TinyLlama(llama_folder)


def llama_logits(path: Path, ids: list[int]) -> np.ndarray[Any, Any]:
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, logits_all=True, verbose=False)
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)], dtype=np.float64)
    finally:
        llm.close()


def test_the_store_entry_is_the_converted_file_with_its_facts(llama_store: Path, llama_folder: Path) -> None:
    model = ModelStore(llama_store).resolve("tiny-llama")
    assert (model.format, model.architecture, model.quantization, model.mode) == ("gguf", "llama", "F16", "chat")
    assert (model.context_length, model.embedding_length) == (256, 64)
    assert model.converted_from == str(llama_folder) and model.path.name == "tiny-llama.f16.gguf"
    assert model.chat_template == CHATML and model.facts().capabilities == ("chat", "streaming")
    weights = load_file(str(llama_folder / "model.safetensors"))
    assert model.parameters == sum(w.size for w in weights.values())
    info = read_gguf(model.path)
    assert info.tensor_count == 1 + 2 * 9 + 2  # token_embd, 9 per block, output_norm, output
    metadata = info.metadata
    assert {key: metadata[f"llama.{key}"] for key in (
        "block_count", "feed_forward_length", "attention.head_count", "attention.head_count_kv",
        "rope.dimension_count", "vocab_size")} == {
        "block_count": 2, "feed_forward_length": 96, "attention.head_count": 4, "attention.head_count_kv": 2,
        "rope.dimension_count": 16, "vocab_size": weights["model.embed_tokens.weight"].shape[0]}
    assert (metadata["tokenizer.ggml.model"], metadata["tokenizer.ggml.pre"]) == ("gpt2", "gpt-2")
    assert (metadata["tokenizer.ggml.bos_token_id"], metadata["tokenizer.ggml.eos_token_id"]) == (0, 2)


def test_llama_cpps_logits_are_the_models_in_f16_and_f32(llama_store: Path, llama_folder: Path,
                                                         reference: TinyLlama, tmp_path: Path) -> None:
    ids = reference.ids(TEXT)
    want = reference.logits(ids)
    assert len(ids) > 10 and np.abs(want).max() > 1  # logits of some size, at positions far enough to rotate
    converted = tmp_path / "tiny.f32.gguf"
    convert_llama(llama_folder, converted, "f32")
    assert np.abs(llama_logits(converted, ids) - want).max() < 0.01
    f16 = llama_logits(ModelStore(llama_store).resolve("tiny-llama").path, ids)
    assert np.abs(f16 - want).max() < 0.03
    assert (f16.argmax(axis=1) == want.argmax(axis=1)).all()


def test_llama_cpp_tokenizes_as_hugging_face(llama_store: Path, reference: TinyLlama) -> None:
    vocab = llama_cpp.Llama(model_path=str(ModelStore(llama_store).resolve("tiny-llama").path), vocab_only=True,
                            verbose=False)
    try:
        for text in TRICKY:
            ids = reference.ids(text)
            assert vocab.tokenize(text.encode(), add_bos=False, special=True) == ids, text
            assert vocab.detokenize(ids, special=True).decode() == text
    finally:
        vocab.close()


def test_digits_split_one_by_one_as_smollm2s_tokenizer_does(tmp_path: Path) -> None:
    folder = write_tiny_llama(tmp_path / "digits", digits=True)
    target = tmp_path / "digits.gguf"
    convert_llama(folder, target, "f16")
    assert read_gguf(target).metadata["tokenizer.ggml.pre"] == "smollm"
    reference = TinyLlama(folder)
    vocab = llama_cpp.Llama(model_path=str(target), vocab_only=True, verbose=False)
    try:
        for text in [*TRICKY, "pi is 3.14159, 0123456789 in 2026"]:  # the vocabulary merges digits
            assert vocab.tokenize(text.encode(), add_bos=False, special=True) == reference.ids(text), text
    finally:
        vocab.close()


def test_a_bos_the_tokenizer_adds_is_added_by_llama_cpp(spoiled: Callable[..., Path], tmp_path: Path) -> None:
    def add_bos(folder: Path) -> None:
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<|endoftext|> $A", pair="<|endoftext|> $A <|endoftext|> $B",
            special_tokens=[("<|endoftext|>", tokenizer.token_to_id("<|endoftext|>"))])
        tokenizer.save(str(folder / "tokenizer.json"))

    folder = spoiled("with-bos", add_bos)
    target = tmp_path / "with-bos.gguf"
    convert_llama(folder, target, "f16")
    metadata = read_gguf(target).metadata
    assert (metadata["tokenizer.ggml.add_bos_token"], metadata["tokenizer.ggml.add_eos_token"]) == (True, False)
    reference = TinyLlama(folder)
    vocab = llama_cpp.Llama(model_path=str(target), vocab_only=True, verbose=False)
    try:
        for text in TRICKY:
            ids = reference.ids(text)
            assert ids[0] == 0 and vocab.tokenize(text.encode(), add_bos=True, special=True) == ids, text
    finally:
        vocab.close()


def test_a_qwen2_folder_becomes_llama_cpps_qwen2_with_its_biases_and_split(tmp_path: Path) -> None:
    folder = write_tiny_llama(tmp_path / "qwen2", seed=5, qwen2=True)
    store = ModelStore(tmp_path / "store")
    model = store.add(folder, gguf=True, precision="f32")
    assert (model.architecture, model.converted_from) == ("qwen2", str(folder))
    info = read_gguf(model.path)
    assert info.tensor_count == 1 + 2 * (9 + 3) + 2  # and a bias on each of q, k and v
    assert (info.metadata["tokenizer.ggml.pre"], info.metadata["qwen2.attention.head_count_kv"]) == ("qwen2", 2)
    reference = TinyLlama(folder)
    ids = reference.ids(TEXT)
    assert np.abs(llama_logits(model.path, ids) - reference.logits(ids)).max() < 0.01
    vocab = llama_cpp.Llama(model_path=str(model.path), vocab_only=True, verbose=False)
    try:
        for text in TRICKY:
            assert vocab.tokenize(text.encode(), add_bos=False, special=True) == reference.ids(text), text
    finally:
        vocab.close()


def test_tied_output_weights_are_the_embeddings(tmp_path: Path) -> None:
    folder = write_tiny_llama(tmp_path / "tied", seed=7, tie_word_embeddings=True)
    assert "lm_head.weight" not in load_file(str(folder / "model.safetensors"))
    target = tmp_path / "tied.gguf"
    convert_llama(folder, target, "f32")
    assert read_gguf(target).tensor_count == 1 + 2 * 9 + 1  # no output.weight: llama.cpp uses token_embd
    reference = TinyLlama(folder)
    ids = reference.ids(TEXT)
    assert np.abs(llama_logits(target, ids) - reference.logits(ids)).max() < 0.01


def test_models_add_gguf_converts_and_says_so(llama_folder: Path, tmp_path: Path) -> None:
    config = tmp_path / "modelgate.yaml"
    config.write_text("providers:\n  local: {type: local, models_dir: ./store}\n")
    added = run_cli("models", "add", str(llama_folder), "--gguf", "--precision", "f32", "--config", str(config))
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("added tiny-llama (llama, ")
    assert f"converted from {llama_folder} to tiny-llama.f32.gguf" in added.stdout
    assert read_gguf(tmp_path / "store" / "tiny-llama" / "tiny-llama.f32.gguf").quantization == "F32"
    kept = run_cli("models", "add", str(llama_folder), "--name", "as-folder", "--config", str(config))
    assert kept.returncode == 0, kept.stderr
    assert (tmp_path / "store" / "as-folder" / "config.json").is_file()  # without --gguf: for engine vllm


@pytest.fixture(scope="module")
def spoiled(llama_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Path]]:
    """A copy of the tiny folder with one thing changed."""
    root = tmp_path_factory.mktemp("spoiled")

    def copy(name: str, change: Callable[[Path], None]) -> Path:
        folder = root / name
        shutil.copytree(llama_folder, folder)
        change(folder)
        return folder
    yield copy


def edit_json(file: str, **changes: Any) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        body = json.loads((folder / file).read_text())
        body.update(changes)
        (folder / file).write_text(json.dumps(body))
    return change


def edit_tokenizer_model(**changes: Any) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        body = json.loads((folder / "tokenizer.json").read_text())
        body["model"].update(changes)
        (folder / "tokenizer.json").write_text(json.dumps(body))
    return change


def drop_tensor(name: str) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        weights = load_file(str(folder / "model.safetensors"))
        del weights[name]
        save_file(weights, str(folder / "model.safetensors"))
    return change


def weights_as_bin(folder: Path) -> None:
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")


@pytest.mark.parametrize(("name", "change", "said"), [
    ("scaled", edit_json("config.json", rope_scaling={"rope_type": "llama3", "factor": 8.0}),
     "has rope_scaling {'rope_type': 'llama3', 'factor': 8.0}, which this converter does not write; convert the "
     "folder with llama.cpp's convert_hf_to_gguf.py"),
    ("sliding", edit_json("config.json", use_sliding_window=True),
     "use_sliding_window is set, which this converter does not write"),
    ("gelu", edit_json("config.json", hidden_act="gelu"), "hidden_act is 'gelu'; llama.cpp's llama computes SiLU"),
    ("heads", edit_json("config.json", num_key_value_heads=3),
     "num_key_value_heads 3 does not divide num_attention_heads 4"),
    ("unigram", edit_tokenizer_model(type="Unigram"),
     "the tokenizer model is 'Unigram'; only byte-level BPE vocabularies convert here (convert a SentencePiece one "
     "with llama.cpp's convert_hf_to_gguf.py)"),
    ("sentencepiece", edit_tokenizer_model(byte_fallback=True),
     "the vocabulary is SentencePiece-style BPE (byte_fallback, as Llama 2's and Mistral 7B's)"),
    ("ignore-merges", edit_tokenizer_model(ignore_merges=True), "the BPE model sets ignore_merges"),
    ("roberta", edit_json("tokenizer.json", post_processor={"type": "RobertaProcessing", "sep": ["</s>", 2],
                                                            "cls": ["<s>", 0]}),
     "the post_processor 'RobertaProcessing' is not one llama.cpp repeats"),
    ("no-tokenizer", lambda folder: (folder / "tokenizer.json").unlink(),
     "has no tokenizer.json (the fast tokenizer save_pretrained writes)"),
    ("prefix-space", edit_json("tokenizer.json", pre_tokenizer={"type": "ByteLevel", "add_prefix_space": True}),
     "is none llama.cpp is known here to split the same way"),
    ("no-eos", edit_json("tokenizer_config.json", eos_token="<|nowhere|>"),
     "eos_token '<|nowhere|>' is not in the vocabulary"),
    ("no-layer", drop_tensor("model.layers.1.mlp.up_proj.weight"),
     "the weights have no tensor model.layers.1.mlp.up_proj.weight (in model.safetensors); is this a Llama"),
    ("bin", weights_as_bin, "has no *.safetensors file: the weights must be in safetensors format"),
])
def test_what_cannot_be_converted_is_named(spoiled: Callable[..., Path], tmp_path: Path, name: str,
                                           change: Callable[[Path], None], said: str) -> None:
    folder = spoiled(name, change)
    store = ModelStore(tmp_path / "store")
    with pytest.raises(ModelStoreError) as raised:
        store.add(folder, gguf=True)
    assert str(raised.value).startswith(f"cannot convert {folder} to GGUF: ")
    assert said in str(raised.value)
    assert store.list() == [] and not (tmp_path / "store" / name).exists()


def test_gguf_on_another_architecture_names_those_it_converts(spoiled: Callable[..., Path], tmp_path: Path) -> None:
    folder = spoiled("gemma", edit_json("config.json", architectures=["Gemma2ForCausalLM"], model_type="gemma2"))
    with pytest.raises(ModelStoreError) as raised:
        ModelStore(tmp_path / "store").add(folder, gguf=True)
    assert str(raised.value) == (
        f"{folder} is a Gemma2ForCausalLM folder; --gguf converts LlamaForCausalLM, MistralForCausalLM, "
        "Qwen2ForCausalLM folders and sentence-transformers BERT folders only (convert others with llama.cpp's "
        "convert_hf_to_gguf.py, or add the folder without --gguf for engine: vllm)")

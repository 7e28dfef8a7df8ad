"""A sentence-transformers folder of a BERT model → a GGUF file llama.cpp runs as an embedding model.

A sentence-transformers model is a Hugging Face folder (``config.json``, ``*.safetensors``, the
tokenizer) with ``modules.json`` naming what follows the transformer: ``Pooling`` (its config in
``1_Pooling/config.json``: mean, CLS or last-token pooling) and, for most, ``Normalize`` (vectors
of length 1). llama.cpp's ``bert`` architecture runs the transformer and the pooling itself; what
it reads, and so what is written here:

* **Hyperparameters** under ``bert.``: context length, embedding length, feed-forward length,
  block count, head count, the layer norm's epsilon, ``attention.causal`` false, and
  ``pooling_type`` (1 mean, 2 CLS, 3 last token). The context is the ``max_seq_length`` of
  ``sentence_bert_config.json`` where it is shorter than the position embeddings (the positions
  past it are dropped): the length the model's authors set, past which sentence-transformers cuts
  an input, and the engine refuses it.
* **Tensors** under llama.cpp's names (``token_embd``, ``position_embd``, ``token_types``,
  ``token_embd_norm``, and per layer ``blk.N.attn_q``/``attn_k``/``attn_v``/``attn_output``,
  ``attn_output_norm``, ``ffn_up``, ``ffn_down``, ``layer_output_norm``), each ``.weight`` and
  ``.bias``. The matrices are written in f16 (or f32), the rest (norms, biases, the position and
  token type embeddings) in f32, as llama.cpp's own converter does.
* **The WordPiece vocabulary** (``tokenizer.ggml.model`` ``bert``) in llama.cpp's form: a word's
  first piece with a leading U+2581 (a "phantom space"), a continuation (``##ing``) without its
  ``##``, special tokens as they are and typed control; the special tokens' ids ([CLS] as BOS, which
  llama.cpp adds before an input, [SEP] after it), and the normaliser's lower-casing and accent
  stripping.
* **Normalisation**, which llama.cpp leaves to its caller: ``modelgate.embeddings.normalize``
  (``gguf.NORMALIZE_KEY``), true where ``modules.json`` has a ``Normalize`` module.

Anything else a folder needs (another architecture, a ``Dense`` module, max pooling, weights that
are not safetensors) is a ``ConversionError`` naming what is missing or not supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelgate.catalog.conversion import ConversionError, Precision, json_list, json_object, positive
from modelgate.catalog.gguf import NORMALIZE_KEY
from modelgate.catalog.gguf_writer import (
    BOOL,
    F16,
    F32,
    FLOAT32,
    INT32,
    STRING,
    U32,
    Array,
    TensorSpec,
    Value,
    write_gguf,
)
from modelgate.catalog.weights import Weights, WeightsError

__all__ = ["ConversionError", "Precision", "convert_sentence_bert", "is_sentence_bert"]

PHANTOM_SPACE = "\u2581"
# Token types (llama.cpp's llama_token_type).
NORMAL, CONTROL, UNUSED = 1, 3, 5
# llama.cpp pools by these (llama_pooling_type); sentence-transformers names them in 1_Pooling.
POOLING = {"mean": 1, "cls": 2, "lasttoken": 3}
_POOLING_FLAGS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                  "pooling_mode_lasttoken": "lasttoken", "pooling_mode_max_tokens": "max",
                  "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                  "pooling_mode_weightedmean_tokens": "weightedmean"}
# The activations llama.cpp's BERT computes (GELU), under the names configs give them.
GELU = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast")
SPECIALS = {"cls": "[CLS]", "sep": "[SEP]", "pad": "[PAD]", "unk": "[UNK]", "mask": "[MASK]"}


def is_sentence_bert(folder: Path) -> bool:
    """Whether ``folder`` is a sentence-transformers model of the BERT architecture (``modules.json``
    and a ``config.json`` of ``model_type`` bert): what ``convert_sentence_bert`` takes."""
    if not (folder / "modules.json").is_file() or not (folder / "config.json").is_file():
        return False
    try:
        config = json_object(folder / "config.json")
    except ConversionError:
        return False
    return config.get("model_type") == "bert"


@dataclass(frozen=True, slots=True)
class _Vocabulary:
    tokens: list[str]  # in llama.cpp's form
    types: list[int]
    ids: dict[str, int]  # the special tokens' ids: cls, sep, unk, and pad and mask where there are
    lowercase: bool
    strip_accents: bool


def convert_sentence_bert(folder: Path, target: Path, precision: Precision = "f16") -> int:
    """Write the GGUF file of the sentence-transformers BERT model in ``folder`` at ``target``;
    the bytes written. ``ConversionError`` names what the folder lacks."""
    config = json_object(folder / "config.json")
    pooling, normalize = _modules(folder)
    try:
        weights = Weights(folder)
    except WeightsError as error:
        raise ConversionError(str(error)) from None
    hidden = positive(config, "hidden_size", folder)
    layers = positive(config, "num_hidden_layers", folder)
    heads = positive(config, "num_attention_heads", folder)
    feed_forward = positive(config, "intermediate_size", folder)
    positions = positive(config, "max_position_embeddings", folder)
    act = config.get("hidden_act", "gelu")
    if act not in GELU:
        raise ConversionError(f"{folder}/config.json: hidden_act is {act!r}; llama.cpp's BERT computes GELU only")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(f"{folder}/config.json: position_embedding_type is "
                              f"{config.get('position_embedding_type')!r}; llama.cpp's BERT has absolute positions "
                              "only")
    tensors = _tensors(weights, layers, folder)
    vocab_rows = weights.shape(tensors["token_embd.weight"])[0]
    context = min(positions, _max_seq_length(folder) or positions)
    vocabulary = _vocabulary(folder, vocab_rows)
    matrix = F16 if precision == "f16" else F32
    specs = []
    for name, source in tensors.items():
        shape = weights.shape(source)
        kind = matrix if len(shape) == 2 and name not in ("position_embd.weight", "token_types.weight") else F32
        if name == "position_embd.weight":
            shape = (context, shape[1])
        specs.append(TensorSpec(name, shape, kind, _loader(weights, source, shape)))
    metadata: dict[str, str | Value | Array] = {
        "general.architecture": "bert",
        "general.name": str(config.get("_name_or_path") or folder.name),
        "general.file_type": Value(U32, 1 if precision == "f16" else 0),
        "bert.context_length": Value(U32, context),
        "bert.embedding_length": Value(U32, hidden),
        "bert.feed_forward_length": Value(U32, feed_forward),
        "bert.block_count": Value(U32, layers),
        "bert.attention.head_count": Value(U32, heads),
        "bert.attention.layer_norm_epsilon": Value(FLOAT32, float(config.get("layer_norm_eps", 1e-12))),
        "bert.attention.causal": Value(BOOL, False),
        "bert.pooling_type": Value(U32, POOLING[pooling]),
        NORMALIZE_KEY: Value(BOOL, normalize),
        "tokenizer.ggml.model": "bert",
        "tokenizer.ggml.tokens": Array(STRING, vocabulary.tokens),
        "tokenizer.ggml.token_type": Array(INT32, vocabulary.types),
        "tokenizer.ggml.token_type_count": Value(U32, int(config.get("type_vocab_size", 1))),
        "tokenizer.ggml.bos_token_id": Value(U32, vocabulary.ids["cls"]),
        "tokenizer.ggml.cls_token_id": Value(U32, vocabulary.ids["cls"]),
        "tokenizer.ggml.seperator_token_id": Value(U32, vocabulary.ids["sep"]),  # llama.cpp's spelling
        "tokenizer.ggml.unknown_token_id": Value(U32, vocabulary.ids["unk"]),
        "tokenizer.ggml.add_bos_token": Value(BOOL, True),
        "tokenizer.ggml.add_sep_token": Value(BOOL, True),
        "tokenizer.ggml.add_eos_token": Value(BOOL, False),
        "tokenizer.ggml.normalizer.lowercase": Value(BOOL, vocabulary.lowercase),
        "tokenizer.ggml.normalizer.strip_accents": Value(BOOL, vocabulary.strip_accents),
    }
    for key, gguf_key in (("pad", "padding_token_id"), ("mask", "mask_token_id")):
        if key in vocabulary.ids:
            metadata[f"tokenizer.ggml.{gguf_key}"] = Value(U32, vocabulary.ids[key])
    return write_gguf(target, metadata, specs)


def _loader(weights: Weights, source: str, shape: tuple[int, ...]) -> Any:
    """What makes the data of one tensor: the tensor, its first rows where ``shape`` keeps fewer."""
    def load() -> Any:
        data = weights.get(source)
        return data[: shape[0]] if data.shape != shape else data
    return load


def _modules(folder: Path) -> tuple[str, bool]:
    """The pooling (a key of ``POOLING``) and whether vectors are normalised, from ``modules.json``."""
    modules = json_list(folder / "modules.json")
    pooling: str | None = None
    normalize = False
    for module in modules:
        kind = str(module.get("type", "")) if isinstance(module, dict) else ""
        path = str(module.get("path", "")) if isinstance(module, dict) else ""
        last = kind.rsplit(".", 1)[-1]
        if last == "Transformer":
            if path not in ("", "."):
                raise ConversionError(f"{folder}/modules.json puts the transformer in {path}/; convert that folder")
        elif last == "Pooling":
            pooling = _pooling(folder / path / "config.json")
        elif last == "Normalize":
            normalize = True
        else:
            raise ConversionError(f"{folder}/modules.json has a {kind or 'nameless'} module ({path or 'no path'}), "
                                  "which llama.cpp does not run after a BERT model; only Transformer, Pooling and "
                                  "Normalize modules can be converted")
    if pooling is None:
        raise ConversionError(f"{folder}/modules.json has no Pooling module: llama.cpp needs to know how to pool "
                              "the token vectors into one (add sentence-transformers' Pooling module)")
    return pooling, normalize


def _pooling(path: Path) -> str:
    if not path.is_file():
        raise ConversionError(f"{path} is missing: the Pooling module's config, which says how the token vectors "
                              "are pooled (mean, CLS or last token)")
    config = json_object(path)
    named = config.get("pooling_mode")
    if isinstance(named, str):
        modes = [named]
    else:
        modes = [mode for flag, mode in _POOLING_FLAGS.items() if config.get(flag) is True]
    if len(modes) != 1 or modes[0] not in POOLING:
        said = " and ".join(modes) or "no mode"
        raise ConversionError(f"{path} pools by {said}; llama.cpp pools by exactly one of mean, CLS or last token")
    return modes[0]


def _max_seq_length(folder: Path) -> int | None:
    path = folder / "sentence_bert_config.json"
    if not path.is_file():
        return None
    value = json_object(path).get("max_seq_length")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _tensors(weights: Weights, layers: int, folder: Path) -> dict[str, str]:
    """llama.cpp's name → the name in the safetensors files, for every tensor the model needs."""
    prefix = "bert." if any(name.startswith("bert.") for name in weights) else ""

    def find(*names: str) -> str:
        for name in names:
            if prefix + name in weights:
                return prefix + name
        raise ConversionError(f"{folder}: the weights have no tensor {prefix + names[0]} (in "
                              f"{', '.join(p.name for p in weights.files)}); is this a BERT model's folder?")

    def norm(path: str, part: str) -> str:  # LayerNorm.weight, or the older LayerNorm.gamma
        return find(f"{path}.{part}", f"{path}.{'gamma' if part == 'weight' else 'beta'}")

    found = {"token_embd.weight": find("embeddings.word_embeddings.weight"),
             "position_embd.weight": find("embeddings.position_embeddings.weight"),
             "token_types.weight": find("embeddings.token_type_embeddings.weight"),
             "token_embd_norm.weight": norm("embeddings.LayerNorm", "weight"),
             "token_embd_norm.bias": norm("embeddings.LayerNorm", "bias")}
    for index in range(layers):
        layer = f"encoder.layer.{index}"
        for ours, theirs in (("attn_q", "attention.self.query"), ("attn_k", "attention.self.key"),
                             ("attn_v", "attention.self.value"), ("attn_output", "attention.output.dense"),
                             ("ffn_up", "intermediate.dense"), ("ffn_down", "output.dense")):
            for part in ("weight", "bias"):
                found[f"blk.{index}.{ours}.{part}"] = find(f"{layer}.{theirs}.{part}")
        for ours, theirs in (("attn_output_norm", "attention.output.LayerNorm"),
                             ("layer_output_norm", "output.LayerNorm")):
            for part in ("weight", "bias"):
                found[f"blk.{index}.{ours}.{part}"] = norm(f"{layer}.{theirs}", part)
    return found


def _vocabulary(folder: Path, rows: int) -> _Vocabulary:
    """The WordPiece vocabulary in llama.cpp's form, ``rows`` long (the embedding's rows)."""
    lowercase, strip_accents = True, None
    config_path = folder / "tokenizer_config.json"
    config = json_object(config_path) if config_path.is_file() else {}
    special: set[int] = set()
    tokenizer_path = folder / "tokenizer.json"
    if tokenizer_path.is_file():
        tokenizer = json_object(tokenizer_path)
        model = tokenizer.get("model")
        if not isinstance(model, dict) or model.get("type") != "WordPiece":
            raise ConversionError(f"{tokenizer_path}: the tokenizer is not WordPiece, which llama.cpp's BERT "
                                  "vocabulary needs")
        if model.get("continuing_subword_prefix", "##") != "##":
            raise ConversionError(f"{tokenizer_path}: continuing_subword_prefix is "
                                  f"{model.get('continuing_subword_prefix')!r}; llama.cpp reads '##' only")
        vocab = model.get("vocab")
        if not isinstance(vocab, dict):
            raise ConversionError(f"{tokenizer_path} has no model.vocab")
        by_id = {i: t for t, i in vocab.items() if isinstance(i, int)}
        normalizer = tokenizer.get("normalizer")
        if isinstance(normalizer, dict) and normalizer.get("type") == "BertNormalizer":
            lowercase = bool(normalizer.get("lowercase", True))
            strip_accents = normalizer.get("strip_accents")
        special = {t["id"] for t in tokenizer.get("added_tokens") or () if isinstance(t, dict) and t.get("special")}
    elif (folder / "vocab.txt").is_file():
        lines = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
        by_id = dict(enumerate(lines))
        lowercase = bool(config.get("do_lower_case", True))
        strip_accents = config.get("strip_accents")
    else:
        raise ConversionError(f"{folder} has neither tokenizer.json nor vocab.txt: the WordPiece vocabulary is needed")
    if len(by_id) > rows:
        raise ConversionError(f"{folder}: the vocabulary has {len(by_id)} tokens, more than the {rows} rows of the "
                              "word embeddings")
    index = {token: i for i, token in by_id.items()}
    ids: dict[str, int] = {}
    for key, default in SPECIALS.items():
        text = _token_text(config.get(f"{key}_token")) or default
        if text in index:
            ids[key] = index[text]
            special.add(index[text])
        elif key in ("cls", "sep", "unk"):
            raise ConversionError(f"{folder}: the vocabulary has no {key} token {text!r}; llama.cpp's BERT needs "
                                  "[CLS], [SEP] and [UNK] (set cls_token, sep_token, unk_token in "
                                  "tokenizer_config.json)")
    tokens, types = [], []
    for i in range(rows):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
        elif i in special:
            tokens.append(token)
            types.append(CONTROL)
        else:
            tokens.append(token[2:] if token.startswith("##") else PHANTOM_SPACE + token)
            types.append(NORMAL)
    seen: dict[str, int] = {}
    for i, token in enumerate(tokens):
        if token in seen or not token:
            raise ConversionError(f"{folder}: tokens {seen.get(token, i)} and {i} become the same piece {token!r} "
                                  "in llama.cpp's vocabulary; it cannot hold this tokenizer")
        seen[token] = i
    return _Vocabulary(tokens, types, ids, lowercase,
                       lowercase if strip_accents is None else bool(strip_accents))


def _token_text(value: Any) -> str | None:
    """A tokenizer_config.json token: a string, or an object with its ``content``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None

"""A Hugging Face folder of a Llama-family causal LM → a GGUF file llama.cpp runs as a chat model.

The folders taken are those ``save_pretrained`` writes for ``LlamaForCausalLM`` and
``MistralForCausalLM`` (the same tensors and the same computation: llama.cpp runs both as its
``llama`` architecture), and ``Qwen2ForCausalLM`` (llama.cpp's ``qwen2``: the same, plus biases on
the query, key and value projections). What llama.cpp reads, and so what is written here
(https://github.com/ggml-org/ggml/blob/master/docs/gguf.md, and llama.cpp's ``convert_hf_to_gguf.py``
for the names):

* **Hyperparameters** under ``llama.`` (``qwen2.``): context length, embedding length,
  feed-forward length, block count, head count and key/value head count (grouped-query
  attention), the RMS norm's epsilon, the rotary dimension and base frequency, the vocabulary size.
* **Tensors** under llama.cpp's names: ``token_embd``, per layer ``blk.N.attn_norm``,
  ``attn_q``/``attn_k``/``attn_v``/``attn_output``, ``ffn_norm``, ``ffn_gate``/``ffn_up``/
  ``ffn_down`` (and Qwen2's ``attn_q``/``attn_k``/``attn_v`` biases), then ``output_norm`` and
  ``output`` (left out where the model ties it to the embeddings; llama.cpp then uses
  ``token_embd``). Matrices in f16 (or f32), norms and biases in f32.
* **The rotary layout.** Hugging Face rotates the first half of each head's dimensions against
  the second half; llama.cpp's ``llama`` rotates neighbouring pairs. The rows of the query and key
  matrices are reordered, head by head, from the one layout to the other, so that the same
  rotation is computed (``_pairwise``). llama.cpp's ``qwen2`` rotates halves, as Hugging Face does:
  nothing is reordered.
* **The tokenizer** from ``tokenizer.json``: a byte-level BPE model becomes ``tokenizer.ggml.model``
  ``gpt2`` (tokens, token types, merges), with the pre-tokenizer named for llama.cpp
  (``tokenizer.ggml.pre``: ``gpt-2`` for the plain byte-level split, ``smollm`` where digits are
  split one by one first, ``qwen2`` for Qwen2's regular expression; Qwen2's NFC normalisation
  llama.cpp does not repeat, so text not in NFC may be split otherwise); the special tokens' ids
  from ``tokenizer_config.json`` (or config.json);
  the chat template from ``chat_template.jinja`` or ``tokenizer_config.json``.

Anything else (another architecture, rotary scaling, a SentencePiece or otherwise pre-tokenized
vocabulary, weights that are not safetensors) is a ``ConversionError`` naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelgate.catalog.conversion import ConversionError, Precision, json_object, positive
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

__all__ = ["ARCHITECTURES", "convert_llama", "is_llama"]

# A config.json architecture → llama.cpp's, whether its query and key rows are reordered for
# llama.cpp's rotation (see ``_pairwise``), and whether its q/k/v projections have biases.
_ARCHITECTURES = {"LlamaForCausalLM": ("llama", True, False), "MistralForCausalLM": ("llama", True, False),
                  "Qwen2ForCausalLM": ("qwen2", False, True)}
ARCHITECTURES = tuple(_ARCHITECTURES)
# Qwen2's tokenizer.json splits text by this before its byte-level BPE; llama.cpp's ``qwen2``
# pre-tokenizer splits by the same expression.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")
# Token types (llama.cpp's llama_token_type).
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5
# The activation llama.cpp's llama computes in its feed-forward (SwiGLU's gate), as configs name it.
SILU = ("silu", "swish")


def is_llama(folder: Path) -> bool:
    """Whether ``folder``'s config.json names a Llama-family architecture: what ``convert_llama`` takes."""
    try:
        config = json_object(folder / "config.json")
    except ConversionError:
        return False
    architectures = config.get("architectures")
    return isinstance(architectures, list) and bool(architectures) and architectures[0] in ARCHITECTURES


def convert_llama(folder: Path, target: Path, precision: Precision = "f16") -> int:
    """Write the GGUF file of the Llama-family model in ``folder`` at ``target``; the bytes written.
    ``ConversionError`` names what the folder lacks or what llama.cpp's ``llama`` does not compute."""
    config = json_object(folder / "config.json")
    architectures = config.get("architectures")
    if not (isinstance(architectures, list) and architectures and architectures[0] in ARCHITECTURES):
        raise ConversionError(f"{folder}/config.json: the architecture is {architectures!r}; only "
                              f"{', '.join(ARCHITECTURES)} folders convert to GGUF here")
    hidden = positive(config, "hidden_size", folder)
    layers = positive(config, "num_hidden_layers", folder)
    heads = positive(config, "num_attention_heads", folder)
    kv_heads = config.get("num_key_value_heads") or heads
    if not isinstance(kv_heads, int) or kv_heads <= 0 or heads % kv_heads:
        raise ConversionError(f"{folder}/config.json: num_key_value_heads {kv_heads!r} does not divide "
                              f"num_attention_heads {heads}")
    head_dim = config.get("head_dim") or hidden // heads
    if not isinstance(head_dim, int) or head_dim <= 0 or head_dim % 2:
        raise ConversionError(f"{folder}/config.json: head_dim {head_dim!r} is not a positive even number")
    feed_forward = positive(config, "intermediate_size", folder)
    context = positive(config, "max_position_embeddings", folder)
    act = config.get("hidden_act", "silu")
    if act not in SILU:
        raise ConversionError(f"{folder}/config.json: hidden_act is {act!r}; llama.cpp's llama computes SiLU only")
    if config.get("rope_scaling"):
        raise ConversionError(f"{folder}/config.json has rope_scaling {config['rope_scaling']!r}, which this "
                              "converter does not write; convert the folder with llama.cpp's convert_hf_to_gguf.py")
    arch, reorder, biases = _ARCHITECTURES[architectures[0]]
    if config.get("use_sliding_window"):
        raise ConversionError(f"{folder}/config.json: use_sliding_window is set, which this converter does not "
                              "write; convert the folder with llama.cpp's convert_hf_to_gguf.py")
    if arch == "llama" and (config.get("attention_bias") or config.get("mlp_bias")):
        raise ConversionError(f"{folder}/config.json: attention_bias or mlp_bias is set; llama.cpp's llama has "
                              "no biases in its attention and feed-forward")
    try:
        weights = Weights(folder)
    except WeightsError as error:
        raise ConversionError(str(error)) from None
    tensors = _tensors(weights, layers, folder, biases)
    vocab_rows = weights.shape(tensors["token_embd.weight"])[0]
    vocabulary = _vocabulary(folder, config, vocab_rows)
    matrix = F16 if precision == "f16" else F32
    specs = []
    for name, source in tensors.items():
        shape = weights.shape(source)
        kind = matrix if len(shape) == 2 else F32
        load = _loader(weights, source)
        if reorder and name.endswith((".attn_q.weight", ".attn_k.weight")):
            load = _pairwise(load, heads if name.endswith(".attn_q.weight") else kv_heads)
        specs.append(TensorSpec(name, shape, kind, load))
    metadata: dict[str, str | Value | Array] = {
        "general.architecture": arch,
        "general.name": str(config.get("_name_or_path") or folder.name),
        "general.file_type": Value(U32, 1 if precision == "f16" else 0),
        f"{arch}.context_length": Value(U32, context),
        f"{arch}.embedding_length": Value(U32, hidden),
        f"{arch}.feed_forward_length": Value(U32, feed_forward),
        f"{arch}.block_count": Value(U32, layers),
        f"{arch}.attention.head_count": Value(U32, heads),
        f"{arch}.attention.head_count_kv": Value(U32, kv_heads),
        f"{arch}.attention.layer_norm_rms_epsilon": Value(FLOAT32, float(config.get("rms_norm_eps", 1e-6))),
        f"{arch}.rope.dimension_count": Value(U32, head_dim),
        f"{arch}.rope.freq_base": Value(FLOAT32, float(config.get("rope_theta", 10000.0))),
        f"{arch}.vocab_size": Value(U32, vocab_rows),
        **vocabulary,
    }
    if head_dim * heads != hidden:  # llama.cpp takes hidden / heads unless told
        metadata[f"{arch}.attention.key_length"] = Value(U32, head_dim)
        metadata[f"{arch}.attention.value_length"] = Value(U32, head_dim)
    return write_gguf(target, metadata, specs)


def _loader(weights: Weights, source: str) -> Any:
    def load() -> Any:
        return weights.get(source)
    return load


def _pairwise(load: Any, heads: int) -> Any:
    """The query or key matrix ``load`` makes, its rows reordered for llama.cpp's rotation.

    In each head's block of rows, Hugging Face pairs row ``i`` of the first half with row ``i`` of
    the second half; llama.cpp pairs rows ``2i`` and ``2i + 1``. Interleaving the halves puts each
    pair where llama.cpp looks for it.
    """
    def reordered() -> Any:
        matrix = load()
        rows, columns = matrix.shape
        return matrix.reshape(heads, 2, rows // heads // 2, columns).swapaxes(1, 2).reshape(rows, columns)
    return reordered


def _tensors(weights: Weights, layers: int, folder: Path, biases: bool) -> dict[str, str]:
    """llama.cpp's name → the name in the safetensors files, for every tensor the model needs."""
    def find(name: str) -> str:
        if name in weights:
            return name
        raise ConversionError(f"{folder}: the weights have no tensor {name} (in "
                              f"{', '.join(p.name for p in weights.files)}); is this a Llama model's folder?")

    found = {"token_embd.weight": find("model.embed_tokens.weight")}
    for index in range(layers):
        layer = f"model.layers.{index}"
        for ours, theirs in (("attn_norm", "input_layernorm"), ("attn_q", "self_attn.q_proj"),
                             ("attn_k", "self_attn.k_proj"), ("attn_v", "self_attn.v_proj"),
                             ("attn_output", "self_attn.o_proj"), ("ffn_norm", "post_attention_layernorm"),
                             ("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj"),
                             ("ffn_down", "mlp.down_proj")):
            found[f"blk.{index}.{ours}.weight"] = find(f"{layer}.{theirs}.weight")
            if biases and ours in ("attn_q", "attn_k", "attn_v"):
                found[f"blk.{index}.{ours}.bias"] = find(f"{layer}.{theirs}.bias")
    found["output_norm.weight"] = find("model.norm.weight")
    if "lm_head.weight" in weights:  # absent where the output is tied to the embeddings
        found["output.weight"] = "lm_head.weight"
    return found


def _vocabulary(folder: Path, config: dict[str, Any], rows: int) -> dict[str, str | Value | Array]:
    """The ``tokenizer.*`` metadata: the byte-level BPE vocabulary ``rows`` long (the embedding's
    rows), its special tokens and the chat template."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ConversionError(f"{folder} has no tokenizer.json (the fast tokenizer save_pretrained writes); "
                              "the vocabulary cannot be converted without it")
    tokenizer = json_object(path)
    model = tokenizer.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE":
        kind = model.get("type") if isinstance(model, dict) else None
        raise ConversionError(f"{path}: the tokenizer model is {kind!r}; only byte-level BPE vocabularies convert "
                              "here (convert a SentencePiece one with llama.cpp's convert_hf_to_gguf.py)")
    if model.get("byte_fallback"):
        raise ConversionError(f"{path}: the vocabulary is SentencePiece-style BPE (byte_fallback, as Llama 2's and "
                              "Mistral 7B's), which this converter does not write; convert the folder with "
                              "llama.cpp's convert_hf_to_gguf.py")
    if model.get("ignore_merges"):
        raise ConversionError(f"{path}: the BPE model sets ignore_merges, which llama.cpp applies to Llama 3's "
                              "vocabulary only; convert the folder with llama.cpp's convert_hf_to_gguf.py")
    pre = _pre_tokenizer(tokenizer.get("pre_tokenizer"))
    if pre is None:
        raise ConversionError(f"{path}: the pre_tokenizer {tokenizer.get('pre_tokenizer')!r} is none llama.cpp is "
                              "known here to split the same way (a plain ByteLevel, or Digits then ByteLevel)")
    if tokenizer.get("normalizer") is not None and not (pre == "qwen2" and tokenizer["normalizer"] == {"type": "NFC"}):
        raise ConversionError(f"{path} has a normalizer {tokenizer['normalizer'].get('type')!r}, which llama.cpp's "
                              "byte-level BPE does not apply")
    vocab, merges = model.get("vocab"), model.get("merges")
    if not isinstance(vocab, dict) or not isinstance(merges, list):
        raise ConversionError(f"{path} has no model.vocab and model.merges")
    by_id: dict[int, str] = {i: t for t, i in vocab.items() if isinstance(i, int)}
    types: dict[int, int] = {}
    for added in tokenizer.get("added_tokens") or ():
        if isinstance(added, dict) and isinstance(added.get("id"), int) and isinstance(added.get("content"), str):
            by_id[added["id"]] = added["content"]
            types[added["id"]] = CONTROL if added.get("special") else USER_DEFINED
    if max(by_id, default=-1) >= rows:
        raise ConversionError(f"{folder}: the vocabulary has token id {max(by_id)}, past the {rows} rows of the "
                              "embeddings")
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(rows)]
    token_types = [types.get(i, NORMAL) if i in by_id else UNUSED for i in range(rows)]
    pairs = [m if isinstance(m, str) else " ".join(m) for m in merges]  # "a b", or ["a", "b"] in newer files
    index = {token: i for i, token in by_id.items()}
    settings_path = folder / "tokenizer_config.json"
    settings = json_object(settings_path) if settings_path.is_file() else {}
    metadata: dict[str, str | Value | Array] = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": Array(STRING, tokens),
        "tokenizer.ggml.token_type": Array(INT32, token_types),
        "tokenizer.ggml.merges": Array(STRING, pairs),
    }
    added = _added_around(path, tokenizer.get("post_processor"))
    if added is None:
        added = (_token_text(settings.get("bos_token")) if settings.get("add_bos_token") is True else None,
                 _token_text(settings.get("eos_token")) if settings.get("add_eos_token") is True else None)
    metadata["tokenizer.ggml.add_bos_token"] = Value(BOOL, added[0] is not None)
    metadata["tokenizer.ggml.add_eos_token"] = Value(BOOL, added[1] is not None)
    for key, gguf_key, around in (("bos", "bos_token_id", added[0]), ("eos", "eos_token_id", added[1]),
                                  ("unk", "unknown_token_id", None), ("pad", "padding_token_id", None)):
        text = around or _token_text(settings.get(f"{key}_token"))
        token_id = index.get(text) if text is not None else _config_id(config.get(f"{key}_token_id"))
        if text is not None and token_id is None:
            raise ConversionError(f"{settings_path}: {key}_token {text!r} is not in the vocabulary")
        if token_id is not None and token_id < rows:
            metadata[f"tokenizer.ggml.{gguf_key}"] = Value(U32, token_id)
    if "tokenizer.ggml.eos_token_id" not in metadata:
        raise ConversionError(f"{folder}: no end-of-sequence token (set eos_token in tokenizer_config.json or "
                              "eos_token_id in config.json); without it generation would not stop")
    template = _chat_template(folder, settings)
    if template is not None:
        metadata["tokenizer.chat_template"] = template
    return metadata


def _added_around(path: Path, spec: Any) -> tuple[str | None, str | None] | None:
    """The tokens tokenizer.json's post-processor puts before and after a text (None where it puts
    none there), or None where it has no ``TemplateProcessing`` to say so. llama.cpp adds one
    token at each end, the BOS and the EOS, and so these become them."""
    if not isinstance(spec, dict) or spec.get("type") in (None, "ByteLevel"):  # ByteLevel moves offsets only
        return None
    single = spec.get("single")
    if spec.get("type") != "TemplateProcessing" or not isinstance(single, list):
        raise ConversionError(f"{path}: the post_processor {spec.get('type')!r} is not one llama.cpp repeats (a "
                              "TemplateProcessing that adds a token before or after the text)")
    pieces = [(next(iter(p)), next(iter(p.values())).get("id")) if isinstance(p, dict) and p else (None, None)
              for p in single]
    texts = [i for i, (kind, _) in enumerate(pieces) if kind == "Sequence"]
    specials = [i for i, (kind, _) in enumerate(pieces) if kind == "SpecialToken"]
    if len(texts) != 1 or len(specials) != len(pieces) - 1 or len(specials) > 2 or (
            len(specials) == 2 and specials != [0, 2]):
        raise ConversionError(f"{path}: the post_processor's template {single!r} adds more than one token at an end "
                              "of the text, which llama.cpp does not")
    before = str(pieces[0][1]) if texts[0] == 1 else None
    after = str(pieces[-1][1]) if texts[0] == len(pieces) - 2 else None
    return before, after


def _pre_tokenizer(spec: Any) -> str | None:
    """llama.cpp's name for the split a tokenizer.json pre-tokenizer makes: ``gpt-2`` for byte-level
    BPE's own (GPT-2's regular expression), ``smollm`` for digits one by one and then that; None
    for any other."""
    def byte_level(part: Any) -> bool:  # trim_offsets moves offsets only, never the ids
        return (isinstance(part, dict) and part.get("type") == "ByteLevel" and part.get("use_regex", True) is True
                and part.get("add_prefix_space") is False)

    if byte_level(spec):
        return "gpt-2"
    parts = spec.get("pretokenizers") if isinstance(spec, dict) and spec.get("type") == "Sequence" else None
    if not isinstance(parts, list) or len(parts) != 2:
        return None
    if parts[0] == {"type": "Digits", "individual_digits": True} and byte_level(parts[1]):
        return "smollm"
    split, last = parts
    if (isinstance(split, dict) and split.get("type") == "Split" and split.get("pattern") == {"Regex": QWEN2_SPLIT}
            and split.get("behavior") == "Isolated" and not split.get("invert") and isinstance(last, dict)
            and last.get("type") == "ByteLevel" and last.get("use_regex") is False
            and last.get("add_prefix_space") is False):
        return "qwen2"
    return None


def _chat_template(folder: Path, settings: dict[str, Any]) -> str | None:
    """``chat_template.jinja``, else tokenizer_config.json's template (the one named default, or the only one)."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = settings.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default", next(iter(named.values()), None))
    return template if isinstance(template, str) and template else None


def _token_text(value: Any) -> str | None:
    """A tokenizer_config.json token: a string, or an object with its ``content``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _config_id(value: Any) -> int | None:
    """config.json's token id: a number, or the first of a list of them (Llama 3's eos_token_id)."""
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

"""A tiny Llama model made here, and computed here, to check what llama.cpp makes of its GGUF file.

``write_tiny_llama`` writes a Hugging Face folder in the layout ``save_pretrained`` writes for a
``LlamaForCausalLM`` (config.json, model.safetensors, tokenizer.json, tokenizer_config.json with
a ChatML template), with random weights (no torch: the ``safetensors`` package's numpy API) and a
byte-level BPE vocabulary trained by the ``tokenizers`` package on a few sentences.

``TinyLlama`` is the model's forward pass written out in numpy as Hugging Face's Llama computes
it (RMS norm, rotary positions with the two halves of each head rotated against each other,
grouped-query attention, SwiGLU), independent of the converter: the logits llama.cpp gives for the
converted file must be these.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from safetensors.numpy import load_file, save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

Array = NDArray[np.float64]

# The expression Qwen2's tokenizer.json splits text by (as Qwen2-0.5B-Instruct's has it).
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SENTENCES = ["The quick brown fox jumps over the lazy dog.", "A llama is a domesticated South American camelid.",
             "Tokenizers split text into pieces; models read the pieces as numbers 0123456789.",
             "Hello, world! How are you today? I'm fine, thanks.", "Zürich, café, naïve — résumé. 東京"]
CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 96,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
          "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "rope_scaling": None,
          "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32",
          "bos_token_id": 0, "eos_token_id": 2, "transformers_version": "4.46.0"}


def write_tiny_llama(folder: Path, seed: int = 13, digits: bool = False, qwen2: bool = False, **config: Any) -> Path:
    """A Llama folder with random weights at ``folder``; ``digits``: the tokenizer splits digits one
    by one before its byte-level split (as SmolLM2's does); ``qwen2``: a Qwen2 folder instead (biases
    on the query, key and value projections, and Qwen2's tokenizer: NFC, its own split, then bytes);
    ``config`` changes config.json."""
    folder.mkdir(parents=True)
    tokenizer = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(SENTENCES, trainer)
    if digits:  # after training, so that the vocabulary has merges of digits this split never makes
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if qwen2:
        tokenizer.normalizer = normalizers.NFC()
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.save(str(folder / "tokenizer.json"))
    settings = {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>", "add_bos_token": False, "chat_template": CHATML,
                "model_max_length": 256, "tokenizer_class": "GPT2Tokenizer"}
    (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=2))
    settings_config = {**CONFIG, "eos_token_id": SPECIALS.index("<|im_end|>"), **config}
    if qwen2:
        settings_config.update(architectures=["Qwen2ForCausalLM"], model_type="qwen2", use_sliding_window=False)
        del settings_config["attention_bias"], settings_config["mlp_bias"]
    vocab = tokenizer.get_vocab_size() + 5  # padded past the vocabulary, as many models' embeddings are
    settings_config["vocab_size"] = vocab
    (folder / "config.json").write_text(json.dumps(settings_config, indent=2))
    save_file(_random_weights(settings_config, vocab, seed, qwen2), str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    return folder


def _random_weights(config: dict[str, Any], vocab: int, seed: int, biases: bool) -> dict[str, NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    head = hidden // config["num_attention_heads"]
    kv = head * config["num_key_value_heads"]

    def matrix(rows: int, columns: int) -> NDArray[np.float32]:
        return np.asarray(rng.standard_normal((rows, columns)) / np.sqrt(columns), dtype=np.float32)

    def norm() -> NDArray[np.float32]:
        return np.asarray(1.0 + 0.1 * rng.standard_normal(hidden), dtype=np.float32)

    weights = {"model.embed_tokens.weight": rng.standard_normal((vocab, hidden)).astype(np.float32),
               "model.norm.weight": norm()}
    if not config.get("tie_word_embeddings"):
        weights["lm_head.weight"] = matrix(vocab, hidden)
    for index in range(config["num_hidden_layers"]):
        layer = f"model.layers.{index}."
        weights.update({layer + "input_layernorm.weight": norm(), layer + "post_attention_layernorm.weight": norm(),
                        layer + "self_attn.q_proj.weight": matrix(hidden, hidden),
                        layer + "self_attn.k_proj.weight": matrix(kv, hidden),
                        layer + "self_attn.v_proj.weight": matrix(kv, hidden),
                        layer + "self_attn.o_proj.weight": matrix(hidden, hidden),
                        layer + "mlp.gate_proj.weight": matrix(inner, hidden),
                        layer + "mlp.up_proj.weight": matrix(inner, hidden),
                        layer + "mlp.down_proj.weight": matrix(hidden, inner)})
        if biases:
            for name, size in (("q_proj", hidden), ("k_proj", kv), ("v_proj", kv)):
                weights[f"{layer}self_attn.{name}.bias"] = np.asarray(rng.standard_normal(size), dtype=np.float32)
    return weights


class TinyLlama:
    """The folder's model: ``logits(ids)`` for each position, as Hugging Face's Llama computes them."""

    def __init__(self, folder: Path) -> None:
        self.config: dict[str, Any] = json.loads((folder / "config.json").read_text())
        self.weights = {k: v.astype(np.float64) for k, v in load_file(str(folder / "model.safetensors")).items()}
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))

    def ids(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text).ids)

    def logits(self, ids: list[int]) -> Array:
        c, w = self.config, self.weights
        heads, kv_heads = c["num_attention_heads"], c["num_key_value_heads"]
        size = c["hidden_size"] // heads
        n = len(ids)
        cos, sin = _rotation(n, size, float(c["rope_theta"]))
        mask = np.triu(np.full((n, n), -np.inf), 1)
        x = w["model.embed_tokens.weight"][ids]
        for index in range(c["num_hidden_layers"]):
            p = f"model.layers.{index}."
            h = _rms(x, w[p + "input_layernorm.weight"], c["rms_norm_eps"])
            q = self._project(h, p + "self_attn.q_proj").reshape(n, heads, size).transpose(1, 0, 2)
            k = self._project(h, p + "self_attn.k_proj").reshape(n, kv_heads, size).transpose(1, 0, 2)
            v = self._project(h, p + "self_attn.v_proj").reshape(n, kv_heads, size).transpose(1, 0, 2)
            q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
            k, v = np.repeat(k, heads // kv_heads, axis=0), np.repeat(v, heads // kv_heads, axis=0)
            scores = q @ k.transpose(0, 2, 1) / np.sqrt(size) + mask
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            x = x + (scores @ v).transpose(1, 0, 2).reshape(n, heads * size) @ w[p + "self_attn.o_proj.weight"].T
            h = _rms(x, w[p + "post_attention_layernorm.weight"], c["rms_norm_eps"])
            gate = h @ w[p + "mlp.gate_proj.weight"].T
            x = x + (gate / (1 + np.exp(-gate)) * (h @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
        x = _rms(x, w["model.norm.weight"], c["rms_norm_eps"])
        output = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        return np.asarray(x @ output.T)


    def _project(self, h: Array, name: str) -> Array:
        """``h`` through the projection ``name``, with its bias where it has one (Qwen2's)."""
        bias = self.weights.get(name + ".bias")
        out = h @ self.weights[name + ".weight"].T
        return np.asarray(out if bias is None else out + bias)


def _rms(x: Array, scale: Array, eps: float) -> Array:
    return np.asarray(x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * scale)


def _rotation(n: int, size: int, base: float) -> tuple[Array, Array]:
    """cos and sin of each position's angles, each frequency twice (once per half of a head)."""
    frequencies = 1.0 / base ** (np.arange(0, size, 2) / size)
    angles = np.outer(np.arange(n), frequencies)
    angles = np.concatenate([angles, angles], axis=-1)
    return np.cos(angles), np.sin(angles)


def _rotate_half(x: Array) -> Array:
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)

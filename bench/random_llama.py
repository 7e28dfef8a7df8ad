"""A Llama model folder with random weights, for benchmarking an engine that loads Hugging Face folders.

    python bench/random_llama.py FOLDER [--layers 30 --hidden 576 --intermediate 1536 --heads 9 --kv-heads 3]

The defaults are SmolLM2-135M's shape (30 layers of 576, 9 heads of 64, 3 key/value heads), with a
small vocabulary trained here so that the folder is self-contained: config.json, model.safetensors
(float32), tokenizer.json and tokenizer_config.json with a ChatML template, as ``save_pretrained``
lays them out. No download.

Every token the model can pick is printable ASCII text: the vocabulary is trained on ASCII only (no
byte-level alphabet beyond it) and the output rows of the special tokens are zero, so greedy
decoding never picks one (a random row's logit is above zero almost surely). Each decoding step
then streams a non-empty content delta, and no answer ends early on the end-of-turn token, so the
per-token timings of a streamed answer are those of the engine's steps.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
TEXT = ["Once upon a time a knight rode out to find the dragon that burned the valley.",
        "The dragon slept on a hill of gold, and the knight was afraid, but he climbed on.",
        string.ascii_letters + string.digits + string.punctuation + " "]


def write(folder: Path, *, layers: int, hidden: int, intermediate: int, heads: int, kv_heads: int,
          seed: int = 7) -> Path:
    folder.mkdir(parents=True, exist_ok=False)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    ascii_alphabet = sorted({pre_tokenizers.ByteLevel.alphabet()[0]} | set(
        "".join(pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(c)[0][0]
                for c in string.printable if c not in "\t\n\r\x0b\x0c")))
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS, initial_alphabet=ascii_alphabet)
    tokenizer.train_from_iterator(TEXT, trainer)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "add_bos_token": False, "chat_template": CHATML, "model_max_length": 2048,
        "tokenizer_class": "GPT2Tokenizer"}, indent=2))
    vocab = tokenizer.get_vocab_size()
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
              "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": kv_heads, "hidden_act": "silu", "max_position_embeddings": 2048,
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "float32",
              "bos_token_id": 0, "eos_token_id": SPECIALS.index("<|im_end|>"), "vocab_size": vocab}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    rng = np.random.default_rng(seed)
    size = hidden // heads

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float32)

    weights = {"model.embed_tokens.weight": matrix(vocab, hidden), "model.norm.weight": np.ones(hidden, np.float32)}
    head = matrix(vocab, hidden)
    head[[tokenizer.token_to_id(s) for s in SPECIALS]] = 0.0  # never the argmax: see the module's text
    weights["lm_head.weight"] = head
    for i in range(layers):
        p = f"model.layers.{i}."
        weights |= {p + "input_layernorm.weight": np.ones(hidden, np.float32),
                    p + "post_attention_layernorm.weight": np.ones(hidden, np.float32),
                    p + "self_attn.q_proj.weight": matrix(heads * size, hidden),
                    p + "self_attn.k_proj.weight": matrix(kv_heads * size, hidden),
                    p + "self_attn.v_proj.weight": matrix(kv_heads * size, hidden),
                    p + "self_attn.o_proj.weight": matrix(hidden, heads * size),
                    p + "mlp.gate_proj.weight": matrix(intermediate, hidden),
                    p + "mlp.up_proj.weight": matrix(intermediate, hidden),
                    p + "mlp.down_proj.weight": matrix(hidden, intermediate)}
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/random_llama.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--intermediate", type=int, default=1536)
    parser.add_argument("--heads", type=int, default=9)
    parser.add_argument("--kv-heads", type=int, default=3)
    args = parser.parse_args(argv)
    path = write(args.folder, layers=args.layers, hidden=args.hidden, intermediate=args.intermediate,
                 heads=args.heads, kv_heads=args.kv_heads)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

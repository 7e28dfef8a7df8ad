"""A sentence-transformers BERT model computed here, to check what the engine serves against.

Independent of the code under test: the token ids come from Hugging Face's own tokenizer (the
``tokenizers`` package reading the folder's ``tokenizer.json``), the weights from the
``safetensors`` package's numpy API, and the forward pass is BERT's written out in numpy (exact
GELU, post-layer-norm blocks), then mean pooling over the tokens and scaling to length 1, as the
folder's ``modules.json`` says all-MiniLM-L6-v2 does.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from safetensors.numpy import load_file
from tokenizers import Tokenizer

Vector = NDArray[np.float64]


class SentenceBert:
    def __init__(self, folder: Path) -> None:
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()  # the folder's tokenizer.json pads to 128 for training
        self.tokenizer.no_truncation()
        self.weights = {k: v.astype(np.float64) for k, v in load_file(str(folder / "model.safetensors")).items()}
        self.config: dict[str, Any] = json.loads((folder / "config.json").read_text())

    def ids(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text).ids)

    def embed(self, text_or_ids: str | list[int]) -> Vector:
        ids = self.ids(text_or_ids) if isinstance(text_or_ids, str) else text_or_ids
        hidden = self._forward(np.array(ids))
        pooled = hidden.mean(axis=0)
        return np.asarray(pooled / np.linalg.norm(pooled))

    def _forward(self, ids: NDArray[np.int64]) -> NDArray[np.float64]:
        w, eps = self.weights, float(self.config["layer_norm_eps"])
        heads = int(self.config["num_attention_heads"])
        n, width = len(ids), int(self.config["hidden_size"])
        size = width // heads
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        for index in range(int(self.config["num_hidden_layers"])):
            p = f"encoder.layer.{index}."

            def dense(v: NDArray[np.float64], name: str, p: str = p) -> NDArray[np.float64]:
                return np.asarray(v @ w[p + name + ".weight"].T + w[p + name + ".bias"])

            q, k, v = (dense(x, f"attention.self.{n_}").reshape(n, heads, size).transpose(1, 0, 2)
                       for n_ in ("query", "key", "value"))
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(size)
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            attended = (scores @ v).transpose(1, 0, 2).reshape(n, width)
            x = _norm(x + dense(attended, "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"],
                      w[p + "attention.output.LayerNorm.bias"], eps)
            x = _norm(x + dense(_gelu(dense(x, "intermediate.dense")), "output.dense"),
                      w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        return x


def _norm(x: NDArray[np.float64], scale: NDArray[np.float64], shift: NDArray[np.float64],
          eps: float) -> NDArray[np.float64]:
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return np.asarray((x - mean) / np.sqrt(variance + eps) * scale + shift)


def _gelu(x: NDArray[np.float64]) -> NDArray[np.float64]:
    erf = np.vectorize(math.erf)
    return np.asarray(0.5 * x * (1.0 + erf(x / math.sqrt(2.0))))


def cosine(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

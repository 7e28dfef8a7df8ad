"""Sentence embeddings in the gateway's own process: one pass of a llama.cpp embedding model (which
sentence_model.SentenceEncoder runs for the prompt shield and the semantic cache), and a BERT
model's static embeddings (the quality-cost router's)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np


def pooled(llm: Any, batch: list[list[int]], dimensions: int) -> list[np.ndarray[Any, np.dtype[np.float32]]]:
    """One pass of a llama.cpp embedding model over ``batch`` (token sequences that fit its context
    together): each sequence's pooled vector, as it comes (not scaled). The caller holds the
    model's lock: the binding's batch and context are shared."""
    import llama_cpp

    sequences: Any = llm._batch  # the binding's own batch and context, as its Llama.embed uses them
    context: Any = llm._ctx
    sequences.reset()
    for seq, tokens in enumerate(batch):
        sequences.add_sequence(tokens, seq, logits_all=True)
    context.kv_cache_clear()
    context.decode(sequences)
    out = [np.ctypeslib.as_array(llama_cpp.llama_get_embeddings_seq(context.ctx, seq),
                                 shape=(dimensions,)).astype(np.float32) for seq in range(len(batch))]
    sequences.reset()
    return out


class StaticEmbedder:
    """A sentence's vector from a BERT model's own input embeddings: its WordPiece tokens' rows of
    the model's embedding table, averaged and scaled to length 1. No layer runs, so a short text
    costs microseconds rather than the milliseconds of the model's forward pass; texts on the
    same task still land near each other, which is what placing a request among evaluated items
    needs. (all-MiniLM-L6-v2's full pass is ~17 ms of CPU per short text on a 2-core machine.)"""

    def __init__(self, vocab: dict[str, int], table: np.ndarray[Any, np.dtype[np.float32]], lower: bool = True) -> None:
        self.vocab = vocab
        self.table = table
        self.lower = lower
        self.unknown = vocab.get("[UNK]", 0)
        self.dimensions = int(table.shape[1])

    @classmethod
    def from_folder(cls, folder: Path) -> StaticEmbedder:
        """The embedder of a sentence-transformers BERT folder (vocab.txt and the weights)."""
        from modelgate.catalog.weights import Weights

        vocab = {line.rstrip("\n"): i for i, line in enumerate(
            (folder / "vocab.txt").read_text(encoding="utf-8").splitlines(keepends=True))}
        weights = Weights(folder)
        name = next((n for n in weights if n.endswith("word_embeddings.weight")), None)
        if name is None:
            raise ValueError(f"{folder}: no word embeddings in the weights")
        table = np.ascontiguousarray(weights.get(name), dtype=np.float32)
        return cls(vocab, table)

    def tokens(self, text: str) -> list[int]:
        """``text`` as WordPiece ids: lower-cased, accents removed, split at spaces and punctuation,
        each word the longest pieces the vocabulary has (``[UNK]`` for a word it cannot spell)."""
        if self.lower:
            text = "".join(c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn")
        ids: list[int] = []
        for word in _WORDS.findall(text):
            ids.extend(self._pieces(word))
        return ids

    def _pieces(self, word: str) -> list[int]:
        if len(word) > 100:
            return [self.unknown]
        pieces: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = self.vocab.get(piece)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return [self.unknown]
            pieces.append(found)
            start = end
        return pieces

    def embed(self, text: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        ids = self.tokens(text)
        if not ids:
            return np.zeros(self.dimensions, dtype=np.float32)
        vector = self.table[ids].mean(axis=0)
        length = float(np.linalg.norm(vector))
        return np.asarray(vector / length if length > 0 else vector, dtype=np.float32)

    def embed_all(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return np.stack([self.embed(text) for text in texts])


# A word: a run of letters and digits, or one punctuation or symbol character.
_WORDS = re.compile(r"[^\W_]+|[^\w\s]|_", re.UNICODE)

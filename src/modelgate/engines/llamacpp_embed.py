"""One embeddings request on a llama.cpp embedding model: the inputs tokenized, checked against
the context, run in batches, pooled as the GGUF says, and normalised where it asks for that.

Runs inside the engine's child process (``llamacpp_worker.py``), one ``Llama`` per request at a
time, in a thread. The model is loaded in llama.cpp's embedding mode with the pooling its GGUF
states (``<arch>.pooling_type``: mean, CLS or last token); a model that pools nothing (one vector
per token) or ranks (a reranker) is not served here. The context holds as many tokens as the model
has positions (the deployment's ``context_window`` can make it shorter, not longer), and a batch
holds a context's worth of tokens: an encoder sees all of a sequence at once, so no input can be
split across batches.

**Limits, never truncation.** Every input is tokenized and checked before any is run: one that
is longer than the context, empty, or holds a token id outside the vocabulary is a 400 naming its
index, and nothing of the request is computed. The usage is the exact count of tokens the model
ran, the special tokens included.

**Normalisation.** llama.cpp pools but does not scale; the vectors are scaled to length 1 unless
the GGUF says not to (``catalog.gguf.NORMALIZE_KEY``, written by the converter of
sentence-transformers folders from their modules).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import Llama

from modelgate.catalog.gguf import NORMALIZE_KEY
from modelgate.engines.chat_request import BadRequest
from modelgate.engines.embedding_request import EmbeddingJob

POOLING_NAMES = {llama_cpp.LLAMA_POOLING_TYPE_MEAN: "mean", llama_cpp.LLAMA_POOLING_TYPE_CLS: "cls",
                 llama_cpp.LLAMA_POOLING_TYPE_LAST: "last"}


@dataclass(slots=True)
class Embedded:
    """The vectors of one request (floats, or base64 little-endian float32), and its exact token count."""

    vectors: list[list[float] | str]
    prompt_tokens: int


class EmbeddingModel:
    """A model loaded in embedding mode: checks inputs and runs one job at a time."""

    def __init__(self, llm: Llama) -> None:
        pooling = int(llm.pooling_type())  # an int at run time, whatever the binding's annotation says
        if pooling not in POOLING_NAMES:
            what = "pools no vectors (one per token)" if pooling == llama_cpp.LLAMA_POOLING_TYPE_NONE else (
                "is a reranker (rank pooling)" if pooling == llama_cpp.LLAMA_POOLING_TYPE_RANK else
                f"has pooling type {pooling}")
            raise ValueError(f"the GGUF file {what}; an embedding deployment needs a model that pools by mean, CLS or "
                             "last token (<arch>.pooling_type 1, 2 or 3)")
        self.llm = llm
        self.pooling = POOLING_NAMES[pooling]
        self.dimensions = llm.n_embd()
        self.context = llm.n_ctx()
        self.vocabulary = llm.n_vocab()
        said = str(llm.metadata.get(NORMALIZE_KEY, "true")).lower()
        self.normalize = said not in ("false", "0")
        self.max_sequences = max(1, int(llm.context_params.n_seq_max))

    def tokens(self, job: EmbeddingJob) -> list[list[int]]:
        """Each input's tokens, every input checked (a ``BadRequest`` naming the first bad one)."""
        out = []
        for index, item in enumerate(job.inputs):
            param = f"input[{index}]" if len(job.inputs) > 1 else "input"
            if isinstance(item, str):
                tokens = self.llm.tokenize(item.encode("utf-8"), add_bos=True, special=True)
            else:
                tokens = item
                wrong = next((t for t in tokens if not 0 <= t < self.vocabulary), None)
                if wrong is not None:
                    raise BadRequest(f"{param} has token id {wrong}, which is not in this model's vocabulary of "
                                     f"{self.vocabulary} tokens (0 to {self.vocabulary - 1})", param=param,
                                     code="invalid_value")
            if not tokens:
                raise BadRequest(f"{param} is empty: it makes no token for this model to embed; send some text",
                                 param=param, code="invalid_value")
            if len(tokens) > self.context:
                raise BadRequest(f"{param} is {len(tokens)} tokens, more than this model's context of {self.context} "
                                 "tokens; shorten it or split it into several inputs (inputs are never cut)",
                                 param=param, code="context_length_exceeded")
            out.append(tokens)
        return out

    def run(self, job: EmbeddingJob) -> Embedded:
        """The vectors of ``job``'s inputs, in order; ``BadRequest`` before any is run if one cannot be."""
        if job.dimensions is not None and job.dimensions != self.dimensions:
            raise BadRequest(f"this model's vectors have {self.dimensions} dimensions and it cannot shorten them; "
                             f"leave dimensions out (or send {self.dimensions})", param="dimensions",
                             code="dimensions_not_supported")
        sequences = self.tokens(job)
        vectors: list[Any] = []
        batch: list[list[int]] = []
        size = 0
        for tokens in sequences:
            if batch and (size + len(tokens) > self.context or len(batch) >= self.max_sequences):
                if job.cancelled.is_set():
                    break
                vectors += self._decode(batch)
                batch, size = [], 0
            batch.append(tokens)
            size += len(tokens)
        if batch and not job.cancelled.is_set():
            vectors += self._decode(batch)
        encoded = [_base64(v) if job.encoding == "base64" else v.tolist() for v in vectors]
        return Embedded(encoded, sum(len(tokens) for tokens in sequences))

    def _decode(self, batch: list[list[int]]) -> list[np.ndarray[Any, Any]]:
        """One pooled vector per sequence of ``batch``, run together."""
        # The binding's batch and context, as its own Llama.embed drives them: every token an
        # output, each input a sequence of its own.
        sequences: Any = self.llm._batch
        context: Any = self.llm._ctx
        sequences.reset()
        for seq, tokens in enumerate(batch):
            sequences.add_sequence(tokens, seq, logits_all=True)
        context.kv_cache_clear()
        context.decode(sequences)
        out = []
        for seq in range(len(batch)):
            pointer = llama_cpp.llama_get_embeddings_seq(context.ctx, seq)
            vector = np.ctypeslib.as_array(pointer, shape=(self.dimensions,)).astype(np.float32)
            if self.normalize:
                length = float(np.linalg.norm(vector))
                if length > 0:
                    vector /= length
            out.append(vector)
        sequences.reset()
        return out


def _base64(vector: np.ndarray[Any, Any]) -> str:
    return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")

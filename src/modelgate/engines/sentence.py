"""One pass of a sentence-embedding model run in the gateway's own process (the prompt shield's)."""

from __future__ import annotations

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

"""strategy quality-cost: the cheapest target expected to answer within ``max_quality_drop`` of the
best one, for this kind of request, by the evidence of evaluation runs.

At start-up the runs named in ``evidence`` are read: each evaluated item's question is placed in
an embedding space (``engines.sentence.StaticEmbedder``: all-MiniLM-L6-v2's own input embeddings,
averaged), and each target's quality on it is its mean score there (every scorer, every repeat; a
failed answer scores 0). Its price is what its answers were charged on average in those runs
(else its catalog price for a short exchange).

Per request, the last user turn is placed the same way and its ``K`` nearest evaluated items (by
cosine similarity) form its neighbourhood. Each target's expected quality is its mean over those
items, each weighted by how near it is (a weight falls by e for each ``TAU`` of similarity below the
nearest item's, so a few close items outweigh many loose ones); the targets within
``max_quality_drop`` of the best are the candidates, and the cheapest
candidate goes first, the others after it by quality (the router falls back along that order).
``x-modelgate-route-reason`` says why: the neighbourhood, each target's quality there, the price.
A request costs one embedding (tens of microseconds) and a product with the items' matrix.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelgate.engines.sentence import StaticEmbedder
from modelgate.routing.group import Target
from modelgate.storage.evals import EvalResult

log = logging.getLogger("modelgate.routing")

K = 8  # the evaluated items a request is judged by
TAU = 0.05  # similarity: how fast a farther neighbour's say fades
SHORT_EXCHANGE = (500, 200)  # input and output tokens a catalog price is taken for, where no run priced a target


@dataclass(slots=True)
class Evidence:
    """The evaluated items (rows of ``vectors``) and each deployment's quality on each (NaN: not
    evaluated there) and mean price per answer."""

    vectors: np.ndarray[Any, np.dtype[np.float32]]
    quality: dict[str, np.ndarray[Any, np.dtype[np.float64]]]
    price: dict[str, float]

    @classmethod
    def of(cls, results: Sequence[EvalResult], embedder: StaticEmbedder) -> Evidence:
        """From the results of one or more runs: an item is a question (the same question in two
        runs is one item)."""
        questions: dict[str, int] = {}
        scores: dict[tuple[int, str], list[float]] = defaultdict(list)
        charged: dict[str, list[float]] = defaultdict(list)
        for result in results:
            row = questions.setdefault(result.question, len(questions))
            values = [0.0] if result.error else [
                s["score"] for s in result.scores.values() if s.get("score") is not None]
            if values:
                scores[(row, result.deployment)].append(sum(values) / len(values))
            charged[result.deployment].append(result.price)
        vectors = embedder.embed_all(list(questions)) if questions else np.zeros((0, embedder.dimensions), np.float32)
        quality = {name: np.full(len(questions), np.nan) for name in charged}
        for (row, name), values in scores.items():
            quality[name][row] = sum(values) / len(values)
        return cls(vectors=vectors, quality=quality,
                   price={name: sum(values) / len(values) for name, values in charged.items()})


class QualityCost:
    """The order of one quality-cost deployment's targets for a request (see the module docstring)."""

    def __init__(self, embedder: StaticEmbedder, evidence: Evidence, max_drop: float, k: int = K) -> None:
        self.embedder = embedder
        self.evidence = evidence
        self.max_drop = max_drop
        self.k = k

    def order(self, text: str, targets: list[Target]) -> tuple[list[Target], str]:
        """``targets`` (those that may take the request now) best first, and the reason."""
        evidence = self.evidence
        if not len(evidence.vectors):
            return _cheapest(targets, evidence), "quality-cost: no evaluated item; cheapest first"
        similarity = evidence.vectors @ self.embedder.embed(text)
        k = min(self.k, len(similarity))
        near = np.argpartition(-similarity, k - 1)[:k]
        # The nearest count the most: a weight falls by e for each TAU of similarity below the nearest's.
        weights = np.exp((similarity[near] - similarity[near].max()) / TAU)
        expected: dict[int, float] = {}
        for i, target in enumerate(targets):
            scores = evidence.quality.get(target.deployment or "")
            if scores is None:
                continue
            values = scores[near]
            known = ~np.isnan(values)
            if known.any():
                expected[i] = float(np.average(values[known], weights=weights[known]))
        if not expected:
            return _cheapest(targets, evidence), ("quality-cost: no target was evaluated on such requests; "
                                                  "cheapest first")
        best = max(expected.values())
        candidates = [i for i, q in expected.items() if q >= best - self.max_drop]
        pick = min(candidates, key=lambda i: (_price(targets[i], evidence), -expected[i]))
        rest = sorted((i for i in range(len(targets)) if i != pick), key=lambda i: -expected.get(i, -1.0))
        chosen = targets[pick]
        reason = (f"quality-cost: {k} nearest evaluated items (similarity {float(similarity[near].min()):.2f}-"
                  f"{float(similarity[near].max()):.2f}); quality "
                  + ", ".join(f"{targets[i].deployment} {q:.3f}"
                              for i, q in sorted(expected.items(), key=lambda x: -x[1]))
                  + f"; chose {chosen.deployment} (within {self.max_drop:g} of the best, "
                  f"${_price(chosen, evidence):.6f} per answer)")
        return [chosen, *(targets[i] for i in rest)], reason


def _price(target: Target, evidence: Evidence) -> float:
    found = evidence.price.get(target.deployment or "")
    if found is not None:
        return found
    facts = target.facts
    if facts.input_price is None:
        return float("inf")
    tokens_in, tokens_out = SHORT_EXCHANGE
    return (tokens_in * facts.input_price + tokens_out * (facts.output_price or 0.0)) / 1e6


def _cheapest(targets: list[Target], evidence: Evidence) -> list[Target]:
    return sorted(targets, key=lambda t: _price(t, evidence))

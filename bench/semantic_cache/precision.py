"""How often the semantic cache's hit is the right answer: its lookup run over a labelled set of
paraphrases and near-misses, at each threshold.

    PYTHONPATH=src python bench/semantic_cache/precision.py [--smoke] [--out FILE] [--cache-dir DIR]
                                                            [--embedders local,static] [--show N]

The set, ``set.jsonl`` beside this script (written by hand for this bench), one JSON object a line::

    {"id": "support-01", "domain": "support",
     "anchor": "How do I cancel my order?",
     "paraphrases": ["How can I cancel an order I placed?", ...],
     "near_misses": ["How do I cancel my subscription?", ...]}

- ``anchor``: a last user turn whose answer the cache holds (one entry per anchor);
- ``paraphrases``: the same question in other words; the cache should answer them with the
  anchor's answer (a hit on this anchor is right, a hit on another anchor is wrong);
- ``near_misses``: close in words but another question, whose right answer differs (another
  entity, number, direction, negation or action: "cancel my subscription", "5 km to miles"); no
  anchor of the set answers them, so any hit is wrong.

What runs is the cache's rule (``modelgate.cache.semantic``): the anchors' vectors are the entries of
one room (the rest of each conversation being the same), a query's vector is compared with every
entry by cosine similarity (rows of length 1, so a dot product), and the nearest is a hit when its
similarity is at the threshold or above. For each threshold the table gives the hits, the right
hits, the wrong ones (near-misses served an answer, paraphrases served another anchor's), precision
= right / hits (with Wilson's 95% interval: the set is small), recall = right / paraphrases, and
the share of near-misses that were served an answer. "n/a": no hits, so no precision.

Embedders: ``local`` is the cache's (all-MiniLM-L6-v2, the full model run by llama.cpp in this
process: ``engines.sentence_model``); ``static`` is the quality-cost router's
``engines.sentence.StaticEmbedder`` (the same model's word-piece table averaged, no layer run),
shown to say why the cache pays for the full model. ``--smoke`` takes the first 10 anchors
(seconds, once the model is converted).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SET = Path(__file__).with_name("set.jsonl")
THRESHOLDS = (0.80, 0.85, 0.88, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98)
SMOKE_ANCHORS = 10
EMBEDDERS = ("local", "static")

Vectors = np.ndarray[Any, np.dtype[np.float32]]
Encode = Callable[[list[str]], Vectors]


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    domain: str
    anchor: str
    paraphrases: tuple[str, ...]
    near_misses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    anchor: int  # the index of the anchor it was written for
    paraphrase: bool  # False: a near-miss


@dataclass(frozen=True, slots=True)
class Row:
    threshold: float
    hits: int
    right: int
    wrong_near: int  # near-misses that were served an answer
    wrong_other: int  # paraphrases served another anchor's answer
    paraphrases: int
    near_misses: int

    @property
    def wrong(self) -> int:
        return self.wrong_near + self.wrong_other

    @property
    def precision(self) -> float | None:
        return self.right / self.hits if self.hits else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """Wilson's 95% interval of the precision: what the set's size leaves uncertain."""
        if not self.hits:
            return None
        z, n, p = 1.96, self.hits, self.right / self.hits
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return float(centre - half), float(centre + half)

    @property
    def recall(self) -> float:
        return self.right / self.paraphrases if self.paraphrases else 0.0


def read_set(path: Path = SET) -> list[Item]:
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        body = json.loads(line)
        try:
            items.append(Item(str(body["id"]), str(body.get("domain", "")), str(body["anchor"]),
                              tuple(map(str, body["paraphrases"])), tuple(map(str, body["near_misses"]))))
        except KeyError as missing:
            raise SystemExit(f"{path}:{number}: no {missing}") from None
    return items


def queries_of(items: list[Item]) -> list[Query]:
    return [*(Query(text, index, True) for index, item in enumerate(items) for text in item.paraphrases),
            *(Query(text, index, False) for index, item in enumerate(items) for text in item.near_misses)]


def nearest(entries: Vectors, queries: Vectors) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Each query's nearest entry and its cosine similarity (rows of length 1)."""
    similarity = queries @ entries.T
    found = similarity.argmax(axis=1)
    return found, similarity[np.arange(len(queries)), found]


def table_rows(queries: list[Query], found: np.ndarray[Any, Any], similarity: np.ndarray[Any, Any],
               thresholds: tuple[float, ...] = THRESHOLDS) -> list[Row]:
    paraphrase = np.array([q.paraphrase for q in queries], dtype=bool)
    own = np.array([q.anchor for q in queries]) == found
    rows = []
    for threshold in thresholds:
        hit = similarity >= np.float32(threshold)
        rows.append(Row(threshold, int(hit.sum()), int((hit & paraphrase & own).sum()), int((hit & ~paraphrase).sum()),
                        int((hit & paraphrase & ~own).sum()), int(paraphrase.sum()), int((~paraphrase).sum())))
    return rows


def markdown(rows: list[Row]) -> str:
    lines = ["| threshold | hits | right | wrong (near-miss + other anchor) | precision | 95% interval "
             "| recall (paraphrases) | near-misses served |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        precision = "n/a" if row.precision is None else f"{row.precision:.3f}"
        interval = "n/a" if row.interval is None else f"{row.interval[0]:.2f}-{row.interval[1]:.2f}"
        lines.append(f"| {row.threshold:.2f} | {row.hits} | {row.right} | {row.wrong} ({row.wrong_near} + "
                     f"{row.wrong_other}) | {precision} | {interval} | {row.recall:.3f} | "
                     f"{row.wrong_near}/{row.near_misses} ({row.wrong_near / max(1, row.near_misses):.1%}) |")
    return "\n".join(lines)


def embedder(name: str, cache_dir: Path) -> Encode:
    from modelgate.catalog.minilm import model_folder

    if name == "local":
        from modelgate.engines.sentence_model import load_sentence_encoder

        return load_sentence_encoder(cache_dir).encode
    if name == "static":
        from modelgate.engines.sentence import StaticEmbedder

        return StaticEmbedder.from_folder(model_folder()).embed_all
    raise SystemExit(f"--embedders: {name!r} is not one of {', '.join(EMBEDDERS)}")


def distribution(values: np.ndarray[Any, Any]) -> str:
    if not len(values):
        return "none"
    low, median, high = np.percentile(values, [10, 50, 90])
    return f"p10 {low:.3f}, median {median:.3f}, p90 {high:.3f}"


def run(name: str, encode: Encode, items: list[Item], show: int) -> str:
    queries = queries_of(items)
    anchors = encode([item.anchor for item in items])
    started = time.perf_counter()
    vectors = encode([q.text for q in queries])
    per_query_ms = (time.perf_counter() - started) / max(1, len(queries)) * 1000
    found, similarity = nearest(anchors, vectors)
    rows = table_rows(queries, found, similarity)
    paraphrase = np.array([q.paraphrase for q in queries], dtype=bool)
    own_similarity = np.einsum("ij,ij->i", vectors, anchors[[q.anchor for q in queries]])
    out = [f"### `{name}`: {len(items)} anchors, {int(paraphrase.sum())} paraphrases, "
           f"{int((~paraphrase).sum())} near-misses ({per_query_ms:.2f} ms per query, batched)", "",
           markdown(rows), "",
           f"Similarity of a paraphrase to its anchor: {distribution(own_similarity[paraphrase])}; "
           f"of a near-miss to its nearest anchor: {distribution(similarity[~paraphrase])}."]
    if show:
        worst = [i for i in np.argsort(-similarity) if not queries[i].paraphrase or found[i] != queries[i].anchor]
        out += ["", f"The {show} wrong answers nearest to a hit:", "",
                "| similarity | query | served the answer of |", "|---:|---|---|"]
        out += [f"| {similarity[i]:.3f} | {queries[i].text} | {items[found[i]].anchor} |" for i in worst[:show]]
        low = [i for i in np.argsort(own_similarity) if queries[i].paraphrase][:show]
        out += ["", f"The {show} paraphrases least like their anchor:", "",
                "| similarity | paraphrase | its anchor |", "|---:|---|---|"]
        out += [f"| {own_similarity[i]:.3f} | {queries[i].text} | {items[queries[i].anchor].anchor} |" for i in low]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help=f"the first {SMOKE_ANCHORS} anchors only")
    parser.add_argument("--out", type=Path, help="write the tables (Markdown) to this file too")
    parser.add_argument("--set", type=Path, default=SET)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "modelgate-minilm",
                        help="where all-MiniLM-L6-v2 is converted to GGUF (once)")
    parser.add_argument("--embedders", default=",".join(EMBEDDERS), help="local, static or both (default)")
    parser.add_argument("--show", type=int, default=0, help="list the N wrong hits nearest to the threshold")
    args = parser.parse_args(argv)
    items = read_set(args.set)
    if args.smoke:
        items = items[:SMOKE_ANCHORS]
    sections = [run(name, embedder(name, args.cache_dir), items, args.show)
                for name in (n.strip() for n in args.embedders.split(",")) if name]
    text = "\n\n".join(sections) + "\n"
    sys.stdout.write(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

"""CPU time of the prompt shield per 1,000 characters of text, as the gateway scores it (the whole
text in windows of 256 tokens, and each sentence alone), best of seven runs.

    PYTHONPATH=src python bench/prompt_shield/latency.py [--cache-dir DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from modelgate.safety.shield_model import load_shield

PROSE = ("The committee met on Tuesday to review the draft budget for next year. Most departments asked for "
         "the same amount as before, but facilities wants more for the roof repairs that were postponed. The "
         "chair suggested moving part of the travel budget there, since most conferences are now held online. "
         "Finance will prepare two versions of the plan, one with the move and one without, for the next "
         "meeting. Members should send comments on the draft by Friday so that they can be included. ")
TOOL_OUTPUT = ('{"orders": [' + ", ".join(f'{{"id": {4800 + i}, "status": "shipped", "total": {12.5 * i:.2f}}}'
                                           for i in range(20)) + "]}")


def best_ms(run: object, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "modelgate-shield")
    args = parser.parse_args()
    model = load_shield(args.cache_dir)
    texts = {"prose, 1,000 characters": (PROSE * 3)[:1000], "tool result (JSON), 1,000 characters": TOOL_OUTPUT[:1000],
             "prose, 10,000 characters": (PROSE * 25)[:10000]}
    for name, text in texts.items():
        model.score(text)
        ms = best_ms(lambda text=text: model.score(text))
        print(f"{name:40} {ms:7.1f} ms  ({ms * 1000 / len(text):.1f} ms per 1k characters; "
              f"{len(model.windows(text))} window(s) whole, {len(model.segments(text))} piece(s))")
    window = model.windows(PROSE * 10)[0]
    model.embed(window)
    print(f"one pass of the model over {len(window)} tokens: {best_ms(lambda: model.embed(window)):.1f} ms")


if __name__ == "__main__":
    main()

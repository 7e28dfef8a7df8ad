"""Metrics kept in the process and written in Prometheus' text format.

A ``Registry`` holds families of counters, histograms and gauges, each sample keyed by the values
of the family's labels. Counters and histograms are updated as things happen (a few dict
operations); gauges are read when the metrics are written, from a function the owner gives.

With several worker processes each keeps its own registry and writes a ``snapshot`` of it to a
folder they share (``SnapshotFolder``); whichever worker answers a scrape adds up every worker's
snapshot and its own live figures, so each request is counted once whichever worker served it.
Counters and histograms of a worker that has exited stay counted (its file stays); its gauges,
which describe a process that is gone, are left out.

Exposition: https://prometheus.io/docs/instrumenting/exposition_formats/ (text format 0.0.4).
"""

from __future__ import annotations

import json
import math
import os
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Kind = Literal["counter", "histogram", "gauge"]
Labels = tuple[str, ...]


@dataclass(slots=True)
class Family:
    """One metric: its name, help, label names, and its samples by label values. A histogram's
    sample is its bucket counts (one per bound, then +Inf), its sum and its count."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    samples: dict[Labels, Any] = field(default_factory=dict)
    read: Callable[[], Mapping[Labels, float]] | None = None  # a gauge's current values
    merge: Literal["sum", "max"] = "sum"  # how workers' gauges combine

    def inc(self, values: Labels, amount: float = 1.0) -> None:
        self.samples[values] = self.samples.get(values, 0.0) + amount

    def observe(self, values: Labels, value: float) -> None:
        sample = self.samples.get(values)
        if sample is None:
            sample = self.samples[values] = [[0] * (len(self.buckets) + 1), 0.0, 0]
        sample[0][bisect_left(self.buckets, value)] += 1  # the first bound >= value; past them all: +Inf
        sample[1] += value
        sample[2] += 1

    def current(self) -> dict[Labels, Any]:
        """The samples as they stand (a gauge's read now)."""
        if self.read is not None:
            return dict(self.read())
        return self.samples


class Registry:
    """The families of one process, in the order they were made."""

    def __init__(self) -> None:
        self.families: dict[str, Family] = {}

    def _add(self, family: Family) -> Family:
        if family.name in self.families:
            raise ValueError(f"metric {family.name} is defined twice")
        self.families[family.name] = family
        return family

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Family:
        return self._add(Family(name, "counter", help, tuple(labels)))

    def histogram(self, name: str, help: str, labels: Sequence[str], buckets: Sequence[float]) -> Family:
        return self._add(Family(name, "histogram", help, tuple(labels), tuple(buckets)))

    def gauge(self, name: str, help: str, labels: Sequence[str], read: Callable[[], Mapping[Labels, float]],
              merge: Literal["sum", "max"] = "sum") -> Family:
        return self._add(Family(name, "gauge", help, tuple(labels), read=read, merge=merge))

    def snapshot(self) -> dict[str, Any]:
        """Every family's samples as JSON-able data (what a worker writes for the others)."""
        return {"pid": os.getpid(), "families": {
            name: [[list(values), sample] for values, sample in family.current().items()]
            for name, family in self.families.items()}}

    def merged(self, others: Iterable[dict[str, Any]]) -> dict[str, dict[Labels, Any]]:
        """This registry's samples plus those of other workers' snapshots, family by family."""
        out: dict[str, dict[Labels, Any]] = {name: _copy(family.current()) for name, family in self.families.items()}
        for snapshot in others:
            alive = _alive(snapshot.get("pid"))
            for name, rows in snapshot.get("families", {}).items():
                family = self.families.get(name)
                if family is None or (family.kind == "gauge" and not alive):
                    continue
                into = out[name]
                for values, sample in rows:
                    key = tuple(str(v) for v in values)
                    into[key] = _combined(family, into.get(key), sample)
        return out

    def render(self, others: Iterable[dict[str, Any]] = ()) -> str:
        """The text exposition of every family (with other workers' snapshots added)."""
        merged = self.merged(others)
        lines: list[str] = []
        for name, family in self.families.items():
            lines.append(f"# HELP {name} {_escape_help(family.help)}")
            lines.append(f"# TYPE {name} {family.kind}")
            for values, sample in sorted(merged[name].items()):
                labels = list(zip(family.labels, values, strict=True))
                if family.kind != "histogram":
                    lines.append(f"{name}{_labels(labels)} {_number(sample)}")
                    continue
                counts, total, count = sample
                running = 0
                for bound, bucket in zip((*family.buckets, math.inf), counts, strict=True):
                    running += bucket
                    lines.append(f"{name}_bucket{_labels([*labels, ('le', _bound(bound))])} {running}")
                lines.append(f"{name}_sum{_labels(labels)} {_number(total)}")
                lines.append(f"{name}_count{_labels(labels)} {count}")
        return "\n".join(lines) + "\n"


class SnapshotFolder:
    """The folder where the workers of one server write their snapshots, one file each."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def write(self, registry: Registry) -> None:
        """This worker's snapshot, replaced whole (written beside, then renamed)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{os.getpid()}.json"
        partial = target.with_suffix(".part")
        partial.write_text(json.dumps(registry.snapshot()), encoding="utf-8")
        os.replace(partial, target)

    def others(self) -> Iterator[dict[str, Any]]:
        """The snapshots of the other workers (any this process cannot read is skipped)."""
        own = f"{os.getpid()}.json"
        for path in sorted(self.folder.glob("*.json")):
            if path.name == own:
                continue
            try:
                yield json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue


def _copy(samples: Mapping[Labels, Any]) -> dict[Labels, Any]:
    return {values: ([list(s[0]), s[1], s[2]] if isinstance(s, list) else s) for values, s in samples.items()}


def _combined(family: Family, mine: Any, theirs: Any) -> Any:
    if mine is None:
        return [list(theirs[0]), theirs[1], theirs[2]] if family.kind == "histogram" else theirs
    if family.kind == "histogram":
        return [[a + b for a, b in zip(mine[0], theirs[0], strict=True)], mine[1] + theirs[1], mine[2] + theirs[2]]
    if family.kind == "gauge" and family.merge == "max":
        return max(mine, theirs)
    return mine + theirs


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{_escape_value(value)}"' for name, value in pairs) + "}"


def _escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _bound(bound: float) -> str:
    """A bucket's ``le``, written as Prometheus' own clients write it (``1.0``, ``+Inf``)."""
    return "+Inf" if bound == math.inf else repr(float(bound))


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))

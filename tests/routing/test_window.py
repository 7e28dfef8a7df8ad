"""The sliding window behind max_share and the error rate."""

from __future__ import annotations

from modelgate.routing.window import SlidingCounts


def test_counts_expire_bucket_by_bucket() -> None:
    window = SlidingCounts(span=10.0, buckets=5)  # 2 s buckets
    window.add("a", 100.0)
    window.add("a", 101.9)
    window.add("b", 104.0)
    assert window.counts(105.0) == {"a": 2, "b": 1}
    assert window.counts(109.9) == {"a": 2, "b": 1}  # the bucket of 100-102 is still in the window
    assert window.counts(110.0) == {"b": 1}
    assert window.counts(114.0) == {}


def test_a_long_silence_empties_the_window() -> None:
    window = SlidingCounts(span=60.0, buckets=12)
    for t in range(60):
        window.add("a" if t % 3 else "b", 1000.0 + t)
    assert window.counts(1059.0) == {"a": 40, "b": 20}
    assert window.counts(5000.0) == {}
    window.add("a", 5000.0)
    assert window.counts(5000.0) == {"a": 1}

"""Counts over a sliding window of time, at a constant cost per event.

The window is a ring of buckets; running totals are kept as events arrive and as buckets expire,
so reading a count never sums the ring. Used for each group's traffic per provider (``max_share``)
and for each target's recent outcomes (the error rate ``/health/deployments`` shows).
"""

from __future__ import annotations


class SlidingCounts:
    """Counts per key over roughly the last ``span`` seconds, in ``buckets`` steps."""

    __slots__ = ("_epoch", "_ring", "_width", "totals")

    def __init__(self, span: float = 60.0, buckets: int = 12) -> None:
        self._width = span / buckets
        self._ring: list[dict[str, int]] = [{} for _ in range(buckets)]
        self._epoch = 0  # the bucket number (time // width) the newest bucket holds
        self.totals: dict[str, int] = {}

    def _advance(self, now: float) -> None:
        epoch = int(now / self._width)
        if epoch == self._epoch:
            return
        size = len(self._ring)
        # Expire every bucket the clock has moved past, at most the whole ring.
        for stale in range(max(self._epoch + 1, epoch - size + 1), epoch + 1):
            bucket = self._ring[stale % size]
            for key, count in bucket.items():
                left = self.totals[key] - count
                if left:
                    self.totals[key] = left
                else:
                    del self.totals[key]
            bucket.clear()
        self._epoch = epoch

    def add(self, key: str, now: float) -> None:
        self._advance(now)
        bucket = self._ring[self._epoch % len(self._ring)]
        bucket[key] = bucket.get(key, 0) + 1
        self.totals[key] = self.totals.get(key, 0) + 1

    def counts(self, now: float) -> dict[str, int]:
        """The counts per key in the window ending at ``now`` (a live view: do not modify)."""
        self._advance(now)
        return self.totals

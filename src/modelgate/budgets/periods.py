"""Budget periods: the UTC day or the UTC calendar month."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def period_start(period: str, now: datetime) -> datetime:
    """The start of the ``"day"`` or ``"month"`` that ``now`` (UTC) falls in."""
    now = now.astimezone(UTC)
    if period == "day":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def period_end(period: str, start: datetime) -> datetime:
    if period == "day":
        return start + timedelta(days=1)
    return (start + timedelta(days=32)).replace(day=1)


def period_id(period: str, start: datetime) -> str:
    """``2026-11-24`` for a day, ``2026-11`` for a month."""
    return start.strftime("%Y-%m-%d" if period == "day" else "%Y-%m")

"""The portal's overview figures: requests, errors, tokens and money per time bucket, by deployment
or provider, and latency percentiles, over the last hour, day or month.

The hour and the day are read from the request log (a bucket per minute, per hour); the month
from the usage records' day totals (a bucket per day), which outlive the log. Percentiles come
from the newest ``SAMPLE`` requests of the window that the log still holds, and say how many.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from modelgate.schema.errors import InvalidRequest
from modelgate.storage import Storage, UsageFilters

WINDOWS = {"hour": (timedelta(hours=1), 60), "day": (timedelta(days=1), 3600), "month": (timedelta(days=30), 86_400)}
SAMPLE = 20_000


async def overview(storage: Storage, window: str, by: str, now: datetime | None = None) -> dict[str, Any]:
    if window not in WINDOWS:
        raise InvalidRequest(f"'window' must be one of {', '.join(WINDOWS)}, got {window!r}", param="window")
    if by not in ("deployment", "provider"):
        raise InvalidRequest(f"'by' must be deployment or provider, got {by!r}", param="by")
    moment = now or datetime.now(UTC)
    span, bucket_s = WINDOWS[window]
    since = moment - span
    if window == "month":
        start = since.replace(hour=0, minute=0, second=0, microsecond=0)
        rows = await storage.query_usage(UsageFilters(since=start), ["day", by])
        series = [{"bucket": int(datetime.fromisoformat(row.day or "1970-01-01").replace(tzinfo=UTC).timestamp()),
                   "group": getattr(row, by), "requests": row.requests, "errors": row.errors,
                   "input_tokens": row.input_tokens, "output_tokens": row.output_tokens, "cost": row.cost,
                   "price": row.revenue} for row in rows]
    else:
        series = await storage.request_log.series(since, bucket_s, by)
    found = await storage.request_log.latencies(since, SAMPLE)
    latencies = sorted(latency for latency, _ in found)
    ttfts = sorted(ttft for _, ttft in found if ttft is not None)
    return {"window": window, "by": by, "since": since.isoformat().replace("+00:00", "Z"), "bucket_s": bucket_s,
            "series": series,
            "latency": {"p50": quantile(latencies, 0.5), "p95": quantile(latencies, 0.95),
                        "ttft_p50": quantile(ttfts, 0.5), "ttft_p95": quantile(ttfts, 0.95),
                        "sample": len(latencies), "streamed": len(ttfts)}}


def quantile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile of sorted ``values`` (nearest rank); None for none."""
    if not values:
        return None
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


PROJECT_GROUPS = ("key", "deployment", "model", "day")


async def project_usage(storage: Storage, project: str, period: str | None, group_by: str) -> dict[str, Any]:
    """One project's usage for a month (2030-01) or a day (2030-01-31), UTC, grouped by one of
    ``PROJECT_GROUPS``: what a project key's session sees of the usage report."""
    if group_by not in PROJECT_GROUPS:
        raise InvalidRequest(f"'group_by' must be one of {', '.join(PROJECT_GROUPS)}, got {group_by!r}",
                             param="group_by")
    since, until = _period(period or datetime.now(UTC).strftime("%Y-%m"))
    rows = await storage.query_usage(UsageFilters(project=project, since=since, until=until), [group_by])
    return {"project": project, "since": since.isoformat().replace("+00:00", "Z"),
            "until": until.isoformat().replace("+00:00", "Z"), "group_by": group_by,
            "data": [{group_by: row.key_id if group_by == "key" else getattr(row, group_by),
                      "requests": row.requests, "errors": row.errors, "input_tokens": row.input_tokens,
                      "output_tokens": row.output_tokens, "charged": round(row.revenue, 8)} for row in rows]}


def _period(value: str) -> tuple[datetime, datetime]:
    try:
        if len(value) == 7:
            start = datetime.strptime(value, "%Y-%m").replace(tzinfo=UTC)
            return start, (start + timedelta(days=32)).replace(day=1)
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        return day, day + timedelta(days=1)
    except ValueError:
        raise InvalidRequest(f"'period' must be a month (2030-01) or a day (2030-01-31), got {value!r}",
                             param="period") from None

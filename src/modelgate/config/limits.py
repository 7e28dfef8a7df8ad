"""The ``limits:`` section: what rate limits do while Redis, where they are counted, is unreachable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OnRedisOutage = Literal["allow", "refuse"]
"""``allow``: a request passes unchecked, marked with ``x-modelgate-degraded``; ``refuse``: 503
with ``Retry-After``. Requests that no limit or budget applies to never ask Redis, so pass either way."""


@dataclass(slots=True, kw_only=True)
class LimitsSettings:
    """Rate limits (limits/); the rpm and tpm themselves are set per key, project and deployment."""

    # While Redis is unreachable: rate limits protect capacity, which the upstreams guard too
    # (they answer 429 themselves); refusing every limited request would turn a Redis outage into
    # a gateway outage. So requests pass, and say so in a header.
    redis_outage: OnRedisOutage = "allow"

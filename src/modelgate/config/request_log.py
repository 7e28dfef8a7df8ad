"""The ``request_log:`` section: whether each request is logged, and for how long (storage/request_log.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from modelgate.config.fields import Key, at_least

MAX_RETENTION_DAYS = 3650


def _retention(days: int) -> str | None:
    if not 1 <= days <= MAX_RETENTION_DAYS:
        return f"must be a whole number of days from 1 to {MAX_RETENTION_DAYS} (set enabled: false for no log)"
    return None


@dataclass(slots=True, kw_only=True)
class RequestLogSettings:
    """The request log: every request that reached a deployment, searchable through
    ``GET /admin/requests`` and ``modelgate logs``."""

    enabled: Annotated[bool, Key("true or false")] = True
    # Days an entry is kept after its request; then a background task deletes it (the usage
    # records, which the bill is made of, stay).
    retention_days: Annotated[int, Key("a whole number of days", _retention)] = 7
    # The most of each body (request, response) an entry keeps where a deployment logs payloads,
    # in KiB; what is cut says so at its end.
    max_body_kb: Annotated[int, Key("a whole number of KiB", at_least(1, "must be 1 or more"))] = 256

    @property
    def retention_s(self) -> int:
        return self.retention_days * 86_400

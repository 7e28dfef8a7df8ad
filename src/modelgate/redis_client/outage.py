"""What a check kept in Redis tells the client when it could not be made.

Limits and budgets ask Redis on the request path. While it cannot be asked (the circuit around it
is open, or the request that found it gone), each does what its ``redis_outage`` setting says:
refuse (503, ``Retry-After``), or let the request pass and say so in the response header
``x-modelgate-degraded``, a comma-separated list of the checks skipped (``limits``, ``budgets``).
"""

from __future__ import annotations

DEGRADED_HEADER = "x-modelgate-degraded"


def mark_degraded(headers: dict[str, str], check: str) -> None:
    """Add ``check`` to the response's list of checks that were skipped."""
    skipped = headers.get(DEGRADED_HEADER)
    headers[DEGRADED_HEADER] = f"{skipped}, {check}" if skipped else check

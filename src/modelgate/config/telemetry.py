"""The ``telemetry:`` section: where the gateway's metrics can be read besides ``GET /metrics``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from modelgate.config.fields import Key


def _port(port: int | None) -> str | None:
    if port is not None and not 0 <= port <= 65535:
        return "must be a TCP port, 1 to 65535 (0: one the system picks, which the log names)"
    return None


@dataclass(slots=True, kw_only=True)
class TelemetrySettings:
    """Metrics (telemetry/)."""

    # A port on which GET /metrics answers without a key (for a Prometheus scraper inside the
    # network), on the host the gateway listens on; None: only GET /metrics with the master key.
    metrics_port: Annotated[int | None, Key("a port number", _port)] = None

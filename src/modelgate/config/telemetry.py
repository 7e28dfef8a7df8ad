"""The ``telemetry:`` section: where traces go (OTLP/HTTP) and where metrics can be read besides
``GET /metrics``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from modelgate.config.fields import Key


def _port(port: int | None) -> str | None:
    if port is not None and not 0 <= port <= 65535:
        return "must be a TCP port, 1 to 65535 (0: one the system picks, which the log names)"
    return None


def _ratio(ratio: float) -> str | None:
    if not 0.0 <= ratio <= 1.0:
        return "must be between 0 (no trace) and 1 (every trace)"
    return None


def _endpoint(url: str | None) -> str | None:
    if url is not None and not url.startswith(("http://", "https://")):
        return "must be an http:// or https:// URL (the collector's OTLP/HTTP endpoint, e.g. http://collector:4318)"
    return None


@dataclass(slots=True, kw_only=True)
class TelemetrySettings:
    """Traces and metrics (telemetry/)."""

    # The OpenTelemetry collector's OTLP/HTTP endpoint; spans go to {endpoint}/v1/traces. Unset:
    # OTEL_EXPORTER_OTLP_ENDPOINT from the environment, else no traces at all.
    otlp_endpoint: Annotated[str | None, Key("a URL", _endpoint)] = None
    service_name: Annotated[str, Key("a string")] = "modelgate"
    # The share of new traces recorded; a trace a client started is recorded as the client chose.
    sample_ratio: Annotated[float, Key("a number between 0 and 1", _ratio)] = 1.0

    # A port on which GET /metrics answers without a key (for a Prometheus scraper inside the
    # network), on the host the gateway listens on; None: only GET /metrics with the master key.
    metrics_port: Annotated[int | None, Key("a port number", _port)] = None

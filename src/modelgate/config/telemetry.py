"""The ``telemetry:`` section: where traces and metrics go (OTLP/HTTP), how often metrics are sent,
and where they can be read besides ``GET /metrics``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from modelgate.config.fields import Key, positive


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

    # The OpenTelemetry collector's OTLP/HTTP endpoint; spans go to {endpoint}/v1/traces and metrics
    # to {endpoint}/v1/metrics. Unset: OTEL_EXPORTER_OTLP_ENDPOINT from the environment, else no
    # traces and no metrics sent at all.
    otlp_endpoint: Annotated[str | None, Key("a URL", _endpoint)] = None
    service_name: Annotated[str, Key("a string")] = "modelgate"
    # The share of new traces recorded; a trace a client started is recorded as the client chose.
    sample_ratio: Annotated[float, Key("a number between 0 and 1", _ratio)] = 1.0
    # Seconds between two exports of the metrics to the endpoint. Unset: OTEL_METRIC_EXPORT_INTERVAL
    # (milliseconds) from the environment, else 60 (server/telemetry.py).
    metrics_interval_s: Annotated[float | None, Key("seconds as a number", positive(
        "must be more than 0 seconds"))] = None

    # Whether spans carry the messages of requests and answers (gen_ai.input.messages,
    # gen_ai.output.messages), secrets and personal data redacted; a deployment's capture_content
    # says it for itself.
    capture_content: Annotated[bool, Key("true or false")] = False

    # A port on which GET /metrics answers without a key (for a Prometheus scraper inside the
    # network), on the host the gateway listens on; None: only GET /metrics with the master key.
    metrics_port: Annotated[int | None, Key("a port number", _port)] = None

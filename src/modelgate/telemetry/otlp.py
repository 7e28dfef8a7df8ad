"""Spans to an OTLP/HTTP collector: the protobuf of ``ExportTraceServiceRequest`` written directly,
and POSTed to ``{endpoint}/v1/traces``.

The SDK's own OTLP exporter builds a message object per span, attribute and value before it
serialises them, which costs about 100 µs of CPU per span of the gateway (two per request): more
than the rest of the gateway's work on a request. Writing the wire format straight from the
finished spans costs a fraction of that. The field numbers are those of opentelemetry-proto
(``opentelemetry/proto/trace/v1/trace.proto``; ``common/v1/common.proto``'s messages are written by
otlp_wire.py, which the metrics share); the tests decode what this writes with opentelemetry-proto
itself.
"""

from __future__ import annotations

import http.client
import logging
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from modelgate.telemetry.otlp_wire import FIXED32, FIXED64, Collector, attributes, field, text, varint

log = logging.getLogger("modelgate.telemetry")

RETRY_STATUSES = frozenset({429, 502, 503, 504})


def _span(span: ReadableSpan) -> bytes:
    context = span.context
    assert context is not None
    parts = [field(1, context.trace_id.to_bytes(16, "big")), field(2, context.span_id.to_bytes(8, "big"))]
    if context.trace_state:
        parts.append(text(3, context.trace_state.to_header()))
    if span.parent is not None:
        parts.append(field(4, span.parent.span_id.to_bytes(8, "big")))
    parts.append(text(5, span.name))
    parts.append(b"\x30" + varint(span.kind.value + 1))  # kind = 6: the API's enum is OTLP's less one
    parts.append(b"\x39" + FIXED64.pack(span.start_time or 0))  # start_time_unix_nano = 7
    parts.append(b"\x41" + FIXED64.pack(span.end_time or 0))  # end_time_unix_nano = 8
    parts.append(attributes(9, span.attributes))
    if span.dropped_attributes:
        parts.append(b"\x50" + varint(span.dropped_attributes))
    for event in span.events:  # events = 11: time_unix_nano = 1, name = 2, attributes = 3
        parts.append(field(11, b"\x09" + FIXED64.pack(event.timestamp) + text(2, event.name)
                           + attributes(3, event.attributes)))
    status = span.status
    if status.status_code.value:  # status = 15: message = 2, code = 3
        parts.append(field(15, text(2, status.description or "") + b"\x18" + varint(status.status_code.value)))
    # flags = 16: the W3C trace flags, and whether the parent is known to be remote (bits 8, 9).
    remote = 0x300 if span.parent is not None and span.parent.is_remote else 0x100
    parts.append(b"\x85\x01" + FIXED32.pack((int(context.trace_flags) & 0xFF) | remote))
    return b"".join(parts)


def encode(spans: Sequence[ReadableSpan]) -> bytes:
    """The ``ExportTraceServiceRequest`` of ``spans``, grouped by resource and instrumentation scope."""
    groups: dict[int, tuple[Any, dict[tuple[str, str], list[bytes]]]] = {}
    for span in spans:
        resource, scopes = groups.setdefault(id(span.resource), (span.resource, {}))
        scope = span.instrumentation_scope
        key = (scope.name, scope.version or "") if scope is not None else ("", "")
        scopes.setdefault(key, []).append(field(2, _span(span)))
    out = []
    for resource, scopes in groups.values():
        body = [field(1, attributes(1, resource.attributes))]
        for (name, version), encoded in scopes.items():
            body.append(field(2, field(1, text(1, name) + text(2, version)) + b"".join(encoded)))
        out.append(field(1, b"".join(body)))
    return b"".join(out)


class OTLPSpanExporter(SpanExporter):
    """POSTs each batch to ``{endpoint}/v1/traces`` as ``application/x-protobuf`` over one kept
    connection (from the SDK's batch processor thread, never the event loop). A collector that
    answers 429 or 5xx gets the batch once more after a second; what it still refuses is dropped
    and logged, as a trace must never hold up the gateway."""

    def __init__(self, endpoint: str) -> None:
        self._collector = Collector(endpoint, "traces")
        self.url = self._collector.url
        self._warned_at = 0.0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        body = encode(spans)
        for attempt in (1, 2):
            try:
                status = self._collector.post(body)
            except (OSError, http.client.HTTPException) as error:
                status, why = 0, str(error)
            else:
                why = f"status {status}"
            if 200 <= status < 300:
                return SpanExportResult.SUCCESS
            if attempt == 1 and (status == 0 or status in RETRY_STATUSES):
                time.sleep(1.0)
                continue
            self._warn(f"{len(spans)} spans not taken by {self.url} ({why})")
            return SpanExportResult.FAILURE
        return SpanExportResult.FAILURE

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned_at > 60:  # once a minute at most
            log.warning("traces: %s", message)
            self._warned_at = now

    def shutdown(self) -> None:
        self._collector.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

"""Spans to an OTLP/HTTP collector: the protobuf of ``ExportTraceServiceRequest`` written directly,
and POSTed to ``{endpoint}/v1/traces``.

The SDK's own OTLP exporter builds a message object per span, attribute and value before it
serialises them, which costs about 100 µs of CPU per span of the gateway (two per request): more
than the rest of the gateway's work on a request. Writing the wire format straight from the
finished spans costs a fraction of that. The field numbers are those of opentelemetry-proto
(``opentelemetry/proto/trace/v1/trace.proto``, ``common/v1/common.proto``); the tests decode what
this writes with opentelemetry-proto itself.
"""

from __future__ import annotations

import http.client
import logging
import struct
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

log = logging.getLogger("modelgate.telemetry")

TIMEOUT_S = 10.0
RETRY_STATUSES = frozenset({429, 502, 503, 504})
_FIXED64 = struct.Struct("<Q")
_DOUBLE = struct.Struct("<d")
_FIXED32 = struct.Struct("<I")


_SMALL = [bytes([n]) for n in range(128)]
_KEYS: dict[str, bytes] = {}  # an attribute key's field, written once (the keys are few)
_STRINGS: dict[str, bytes] = {}  # a string value's AnyValue field (model and deployment names repeat)
_REMEMBERED = 4096


def _varint(value: int) -> bytes:
    if 0 <= value < 128:
        return _SMALL[value]
    value &= 0xFFFFFFFFFFFFFFFF  # negative int64: two's complement, ten bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (strings, bytes, messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _text(number: int, text: str) -> bytes:
    return _field(number, text.encode("utf-8", "surrogatepass")) if text else b""


def _any_value(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")  # bool_value = 2
    if isinstance(value, int):
        return b"\x18" + _varint(value)  # int_value = 3
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)  # double_value = 4
    if isinstance(value, str):
        return _field(1, value.encode("utf-8", "surrogatepass"))  # string_value = 1
    if isinstance(value, Sequence):
        return _field(5, b"".join(_field(1, _any_value(item)) for item in value))  # array_value = 5
    return _field(1, str(value).encode("utf-8", "surrogatepass"))


def _attributes(number: int, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    tag = _varint(number << 3 | 2)
    parts = []
    for key, value in attributes.items():
        name = _KEYS.get(key)
        if name is None:
            name = _field(1, key.encode("utf-8", "surrogatepass"))
            if len(_KEYS) < _REMEMBERED:
                _KEYS[key] = name
        if type(value) is str:
            encoded = _STRINGS.get(value)
            if encoded is None:
                encoded = _field(2, _any_value(value))
                if len(_STRINGS) < _REMEMBERED and len(value) <= 200:
                    _STRINGS[value] = encoded
        else:
            encoded = _field(2, _any_value(value))
        pair = name + encoded
        parts.append(tag + _varint(len(pair)) + pair)
    return b"".join(parts)


def _span(span: ReadableSpan) -> bytes:
    context = span.context
    assert context is not None
    parts = [_field(1, context.trace_id.to_bytes(16, "big")), _field(2, context.span_id.to_bytes(8, "big"))]
    if context.trace_state:
        parts.append(_text(3, context.trace_state.to_header()))
    if span.parent is not None:
        parts.append(_field(4, span.parent.span_id.to_bytes(8, "big")))
    parts.append(_text(5, span.name))
    parts.append(b"\x30" + _varint(span.kind.value + 1))  # kind = 6: the API's enum is OTLP's less one
    parts.append(b"\x39" + _FIXED64.pack(span.start_time or 0))  # start_time_unix_nano = 7
    parts.append(b"\x41" + _FIXED64.pack(span.end_time or 0))  # end_time_unix_nano = 8
    parts.append(_attributes(9, span.attributes))
    if span.dropped_attributes:
        parts.append(b"\x50" + _varint(span.dropped_attributes))
    for event in span.events:  # events = 11: time_unix_nano = 1, name = 2, attributes = 3
        parts.append(_field(11, b"\x09" + _FIXED64.pack(event.timestamp) + _text(2, event.name)
                            + _attributes(3, event.attributes)))
    status = span.status
    if status.status_code.value:  # status = 15: message = 2, code = 3
        parts.append(_field(15, _text(2, status.description or "") + b"\x18" + _varint(status.status_code.value)))
    # flags = 16: the W3C trace flags, and whether the parent is known to be remote (bits 8, 9).
    remote = 0x300 if span.parent is not None and span.parent.is_remote else 0x100
    parts.append(b"\x85\x01" + _FIXED32.pack((int(context.trace_flags) & 0xFF) | remote))
    return b"".join(parts)


def encode(spans: Sequence[ReadableSpan]) -> bytes:
    """The ``ExportTraceServiceRequest`` of ``spans``, grouped by resource and instrumentation scope."""
    groups: dict[int, tuple[Any, dict[tuple[str, str], list[bytes]]]] = {}
    for span in spans:
        resource, scopes = groups.setdefault(id(span.resource), (span.resource, {}))
        scope = span.instrumentation_scope
        key = (scope.name, scope.version or "") if scope is not None else ("", "")
        scopes.setdefault(key, []).append(_field(2, _span(span)))
    out = []
    for resource, scopes in groups.values():
        body = [_field(1, _attributes(1, resource.attributes))]
        for (name, version), encoded in scopes.items():
            body.append(_field(2, _field(1, _text(1, name) + _text(2, version)) + b"".join(encoded)))
        out.append(_field(1, b"".join(body)))
    return b"".join(out)


class OTLPSpanExporter(SpanExporter):
    """POSTs each batch to ``{endpoint}/v1/traces`` as ``application/x-protobuf`` over one kept
    connection (from the SDK's batch processor thread, never the event loop). A collector that
    answers 429 or 5xx gets the batch once more after a second; what it still refuses is dropped
    and logged, as a trace must never hold up the gateway."""

    def __init__(self, endpoint: str) -> None:
        url = urlsplit(f"{endpoint.rstrip('/')}/v1/traces")
        self.https = url.scheme == "https"
        self.host = url.hostname or "localhost"
        self.port = url.port or (443 if self.https else 80)
        self.path = url.path or "/v1/traces"
        self.url = url.geturl()
        self._connection: http.client.HTTPConnection | None = None
        self._warned_at = 0.0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        body = encode(spans)
        for attempt in (1, 2):
            try:
                status = self._post(body)
            except (OSError, http.client.HTTPException) as error:
                self._close()
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

    def _post(self, body: bytes) -> int:
        if self._connection is None:
            kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self._connection = kind(self.host, self.port, timeout=TIMEOUT_S)
        self._connection.request("POST", self.path, body, {"content-type": "application/x-protobuf"})
        response = self._connection.getresponse()
        response.read()
        return response.status

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned_at > 60:  # once a minute at most
            log.warning("traces: %s", message)
            self._warned_at = now

    def shutdown(self) -> None:
        self._close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

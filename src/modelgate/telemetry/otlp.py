"""Spans to an OTLP/HTTP collector: the gateway's spans (spans.py) written as the protobuf of
``ExportTraceServiceRequest`` and POSTed to ``{endpoint}/v1/traces`` from a thread of their own.

Field numbers: ``opentelemetry/proto/trace/v1/trace.proto`` and
``collector/trace/v1/trace_service.proto`` (``common/v1/common.proto``'s messages are written by
otlp_wire.py, which the metrics share); the tests decode what this writes with
opentelemetry-proto. A request's spans repeat most of their attributes (names of models,
providers, operations, statuses), so the encoder keeps the bytes of each attribute with a str,
bool or int value it has written, and writes ids and times with one ``struct`` call each.
Nothing here needs the OpenTelemetry SDK.
"""

from __future__ import annotations

import http.client
import logging
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.trace import SpanKind, StatusCode

from modelgate.telemetry.otlp_wire import (
    DOUBLE,
    FIXED32,
    FIXED64,
    Collector,
    any_value,
    attributes,
    field,
    text,
    varint,
)
from modelgate.telemetry.spans import NO_STATE, GatewaySpan

log = logging.getLogger("modelgate.telemetry")

SCOPE = "modelgate"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_QUEUED = 8192  # spans waiting for the thread; past that the oldest are dropped
BATCH = 512  # spans waiting that wake the thread before its interval is up
MAX_PER_REQUEST = 2048  # spans in one POST
INTERVAL_S = 1.0
REMEMBERED = 10_000  # encoded attributes (of each kind) and names kept; all forgotten past that
CACHED_LENGTH = 200  # longer strings are not kept (content, JSON)
# Attributes whose value is new on every request: never worth keeping.
UNIQUE = frozenset({"modelgate.request_id", "gen_ai.response.id"})

_IDS = struct.Struct(">BBQQBBQ")  # trace_id = 1 (16 bytes), span_id = 2 (8 bytes)
_IDS_PARENT = struct.Struct(">BBQQBBQBBQ")  # and parent_span_id = 4
_TIMES = struct.Struct("<BQBQ")  # start_time_unix_nano = 7, end_time_unix_nano = 8 (fixed64)
_MASK64 = (1 << 64) - 1
_BYTE = [bytes((n,)) for n in range(256)]
_KINDS = {kind: b"\x30" + varint(kind.value + 1) for kind in SpanKind}  # kind = 6: the API's enum is OTLP's less one
# flags = 16, by sampled and by whether the parent is remote: the W3C flags, and bits 8 and 9
# (whether the parent is remote is known; it is).
_FLAGS = [[b"\x85\x01" + FIXED32.pack(int(sampled) | (0x300 if remote else 0x100)) for remote in (False, True)]
          for sampled in (False, True)]


class SpanEncoder:
    """Writes spans as ``ExportTraceServiceRequest`` bodies, remembering the bytes of what repeats.
    One thread at a time."""

    def __init__(self, resource: Mapping[str, Any], scope: str = SCOPE, scope_version: str = "") -> None:
        # ResourceSpans: resource = 1 (Resource.attributes = 1); ScopeSpans.scope = 1 (name = 1, version = 2).
        self._resource = field(1, attributes(1, resource))
        self._scope = field(1, text(1, scope) + text(2, scope_version))
        # Encoded attributes by (key, value, type of the value): 1 == True == 1.0 as keys.
        self._known: dict[tuple[str, Any, type], bytes] = {}
        self._keys: dict[str, bytes] = {}
        self._names: dict[str, bytes] = {}

    def request(self, spans: Iterable[GatewaySpan]) -> bytes:
        """One ``ExportTraceServiceRequest``: one resource, one scope, ``spans``."""
        scope_spans = self._scope + b"".join(map(self.span, spans))  # ScopeSpans.spans = 2, in span()
        resource_spans = self._resource + b"\x12" + varint(len(scope_spans)) + scope_spans  # scope_spans = 2
        return b"\x0a" + varint(len(resource_spans)) + resource_spans  # resource_spans = 1

    def span(self, span: GatewaySpan) -> bytes:
        """``span`` as field 2 of a ``ScopeSpans``."""
        trace_id = span.trace_id
        if span.parent_id:
            head = _IDS_PARENT.pack(0x0A, 16, trace_id >> 64, trace_id & _MASK64, 0x12, 8, span.span_id,
                                    0x22, 8, span.parent_id)
        else:
            head = _IDS.pack(0x0A, 16, trace_id >> 64, trace_id & _MASK64, 0x12, 8, span.span_id)
        if span.trace_state is not NO_STATE and span.trace_state:
            head += text(3, span.trace_state.to_header())
        # attributes = 9, looked up as they were written before, by key, value and type (1 == True
        # == 1.0 as keys); a list as a value cannot be looked up.
        known, miss = self._known.get, self._miss
        try:
            pairs = [known((key, value, type(value))) or miss(key, value) for key, value in span.attributes.items()]
        except TypeError:
            pairs = [miss(key, value) for key, value in span.attributes.items()]
        parts = [head, self._names.get(span.name) or self._name(span.name), _KINDS[span.kind],
                 _TIMES.pack(0x39, span.start_ns, 0x41, span.end_ns), *pairs]
        if span.events or span.links or span.status_code is not StatusCode.UNSET:
            parts.append(self._rest(span))
        parts.append(_FLAGS[span.sampled][span.remote_parent])
        body = b"".join(parts)
        size = len(body)
        if 128 <= size < 16384:
            return b"".join((b"\x12", _BYTE[size & 0x7F | 0x80], _BYTE[size >> 7], body))
        return b"\x12" + varint(size) + body

    def _rest(self, span: GatewaySpan) -> bytes:
        """What few spans have: events, links, a status."""
        parts = []
        for event_name, at, said in span.events or ():  # events = 11: time_unix_nano = 1, name = 2, attributes = 3
            parts.append(field(11, b"\x09" + FIXED64.pack(at) + text(2, event_name) + attributes(3, said)))
        for context, said in span.links or ():  # links = 13: trace_id = 1, span_id = 2, trace_state = 3,
            link = [field(1, context.trace_id.to_bytes(16, "big")),  # attributes = 4, flags = 6
                    field(2, context.span_id.to_bytes(8, "big"))]
            if context.trace_state:
                link.append(text(3, context.trace_state.to_header()))
            link.append(attributes(4, said))
            link.append(b"\x35" + FIXED32.pack((int(context.trace_flags) & 0xFF)
                                               | (0x300 if context.is_remote else 0x100)))
            parts.append(field(13, b"".join(link)))
        code = span.status_code.value
        if code:  # status = 15: message = 2, code = 3
            parts.append(field(15, text(2, span.status_message) + b"\x18" + varint(code)))
        return b"".join(parts)

    def _name(self, name: str) -> bytes:
        """A span's name = 5."""
        if len(self._names) >= REMEMBERED:
            self._names.clear()
        encoded = self._names[name] = text(5, name)
        return encoded

    def _miss(self, key: str, value: Any) -> bytes:
        """An attribute not found among those kept: written, and kept where it may come again."""
        kind = type(value)
        if kind is float:  # the most common value never kept (costs, prices)
            name = self._keys.get(key) or self._key(key)
            if len(name) < 110:
                return b"".join((_BYTE[0x4A], _BYTE[len(name) + 11], name, b"\x12\x09\x21", DOUBLE.pack(value)))
        if value is None:
            return b""
        pair = self._pair(key, value)
        if (kind is int or kind is bool or (kind is str and len(value) <= CACHED_LENGTH and key not in UNIQUE)
                or (kind is tuple and len(value) <= 8 and all(type(part) is str for part in value))):
            if len(self._known) >= REMEMBERED:
                self._known.clear()
            self._known[key, value, kind] = pair
        return pair

    def _key(self, key: str) -> bytes:
        """A ``KeyValue``'s key = 1."""
        name = field(1, key.encode("utf-8", "surrogatepass"))
        if len(self._keys) < REMEMBERED:
            self._keys[key] = name
        return name

    def _pair(self, key: str, value: Any) -> bytes:
        """A ``KeyValue`` as field 9 of a ``Span``: key = 1, value = 2 (an ``AnyValue``)."""
        name = self._keys.get(key) or self._key(key)
        kind = type(value)
        encoded: bytes
        if kind is str:
            data: bytes = value.encode("utf-8", "surrogatepass")
            size = len(data)
            if size < 120 and len(name) < 120:  # every length one byte: written at once
                return b"".join((_BYTE[0x4A], _BYTE[len(name) + size + 4], name, _BYTE[0x12], _BYTE[size + 2],
                                 _BYTE[0x0A], _BYTE[size], data))
            encoded = b"\x0a" + varint(size) + data  # string_value = 1
        elif kind is float:
            if len(name) < 110:
                return b"".join((_BYTE[0x4A], _BYTE[len(name) + 11], name, b"\x12\x09\x21", DOUBLE.pack(value)))
            encoded = b"\x21" + DOUBLE.pack(value)  # double_value = 4
        else:
            encoded = any_value(value)
        pair = name + b"\x12" + varint(len(encoded)) + encoded
        return b"\x4a" + varint(len(pair)) + pair


def encode(spans: Sequence[GatewaySpan], resource: Mapping[str, Any], scope: str = SCOPE) -> bytes:
    """The ``ExportTraceServiceRequest`` of ``spans`` (a new encoder: nothing remembered)."""
    return SpanEncoder(resource, scope).request(spans)


class SpanExporter:
    """The spans' way out: ``add`` (a tracer's sink, on the event loop) queues an ended span, and
    a daemon thread sends what waits every ``INTERVAL_S`` or as soon as ``BATCH`` spans wait, as
    ``application/x-protobuf`` over one kept connection. The queue keeps ``MAX_QUEUED`` spans: past
    that the oldest are dropped, counted in ``dropped`` and logged once while it lasts. A
    collector that answers 429, 502, 503 or 504 (or cannot be reached) gets the batch once more a
    second later; what it still refuses is dropped and logged once until it takes spans again, and
    nothing is raised into the gateway: a trace must never hold it up."""

    def __init__(self, endpoint: str, resource: Mapping[str, Any], interval_s: float = INTERVAL_S) -> None:
        self._collector = Collector(endpoint, "traces")
        self.url = self._collector.url
        self.interval_s = interval_s
        self.dropped = 0  # spans dropped from the queue since start
        self._encoder = SpanEncoder(resource)
        self._queue: deque[GatewaySpan] = deque(maxlen=MAX_QUEUED)
        self._wake = threading.Event()
        self._stopping = False
        self._failing = False
        self._dropping = False
        self._dropped_seen = 0
        self._thread = threading.Thread(target=self._run, name="modelgate-traces", daemon=True)

    def add(self, span: GatewaySpan) -> None:
        queue = self._queue
        waiting = len(queue)
        if waiting >= MAX_QUEUED:
            self.dropped += 1  # the deque drops the oldest as this one comes in
        elif waiting == BATCH - 1:
            self._wake.set()
        queue.append(span)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Send what waits, then nothing more (at most ``timeout_s`` waited for)."""
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        else:
            self._send_waiting()
        if not self._thread.is_alive():  # else it is still posting: its connection is left to it
            self._collector.close()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            stopping = self._stopping  # read first: what was queued before stop() goes out below
            try:
                self._send_waiting()
            except Exception:  # the thread must outlive whatever went wrong with one batch
                log.exception("traces: export failed")
            if stopping:
                return

    def _send_waiting(self) -> None:
        queue = self._queue
        while queue:
            batch = [queue.popleft() for _ in range(min(len(queue), MAX_PER_REQUEST))]
            self._send(batch)
        dropped = self.dropped
        if dropped != self._dropped_seen:  # spans dropped since the last round
            if not self._dropping:
                log.warning("traces: more than %d spans waiting, the oldest dropped (%d so far); not said again "
                            "until the export keeps up", MAX_QUEUED, dropped)
            self._dropping = True
        elif self._dropping:
            log.info("traces: the export keeps up again (%d spans dropped since start)", dropped)
            self._dropping = False
        self._dropped_seen = dropped

    def _send(self, spans: list[GatewaySpan]) -> None:
        try:
            body = self._encoder.request(spans)
        except Exception as error:  # a span that cannot be written: logged, the gateway goes on
            self._taken(False, f"{len(spans)} spans could not be encoded ({type(error).__name__}: {error})")
            return
        why = ""
        for attempt in (1, 2):
            try:
                status = self._collector.post(body)
            except (OSError, http.client.HTTPException) as error:
                status, why = 0, str(error) or type(error).__name__
            else:
                why = f"status {status}"
            if 200 <= status < 300:
                self._taken(True, "")
                return
            if attempt == 1 and (status == 0 or status in RETRY_STATUSES):
                time.sleep(1.0)
                continue
            break
        self._taken(False, f"{len(spans)} spans not taken by {self.url} ({why})")

    def _taken(self, taken: bool, why: str) -> None:
        if taken and self._failing:
            log.info("traces: %s takes spans again", self.url)
        elif not taken and not self._failing:
            log.warning("traces: %s; not said again until spans are taken", why)
        self._failing = not taken

"""The gateway's own spans: what the OpenTelemetry SDK would record of a request, at a small part
of its cost.

A ``GatewaySpan`` implements the API's ``opentelemetry.trace.Span``, so ``trace.get_current_span()``,
``context.attach(trace.set_span_in_context(span))``, the JSON logs' ids and the ``traceparent`` sent
upstream work through the API as with the SDK's spans. It is a slotted object: ids from
``random.getrandbits``, times from ``time.time_ns()``, attributes in a plain dict taken as given
(str, bool, int, float, lists of those; otlp.py writes them out). Once ended, a sampled span goes
to its tracer's sink, the exporter's queue; one that is not sampled (a client's trace it said not
to record) only lends its ids to the context it propagates, and is dropped.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping
from random import getrandbits
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util import types

SAMPLED = TraceFlags(TraceFlags.SAMPLED)
NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
NO_STATE = TraceState()

Sink = Callable[["GatewaySpan"], None]
"""Where a tracer's ended, sampled spans go."""

Event = tuple[str, int, Mapping[str, Any]]
"""A span event: its name, time (ns since the epoch) and attributes."""


class GatewaySpan(trace.Span):
    """One span: its ids, parent, name, kind, times, attributes, status, events and links."""

    __slots__ = (
        "_context",
        "_sink",
        "attributes",
        "end_ns",
        "events",
        "kind",
        "links",
        "name",
        "parent_id",
        "remote_parent",
        "sampled",
        "span_id",
        "start_ns",
        "status_code",
        "status_message",
        "trace_id",
        "trace_state",
    )

    def __init__(self, name: str, kind: SpanKind, trace_id: int, span_id: int, parent_id: int, remote_parent: bool,
                 sampled: bool, trace_state: TraceState, sink: Sink, attributes: dict[str, Any] | None) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id  # 0: a root
        self.remote_parent = remote_parent
        self.sampled = sampled
        self.trace_state = trace_state
        self.name = name
        self.kind = kind
        self.start_ns = time.time_ns()
        self.end_ns = 0  # 0: not ended
        self.attributes: dict[str, Any] = attributes if attributes is not None else {}
        self.status_code = StatusCode.UNSET
        self.status_message = ""
        self.events: list[Event] | None = None
        self.links: list[tuple[SpanContext, Mapping[str, Any]]] | None = None
        self._sink = sink
        self._context: SpanContext | None = None

    def __repr__(self) -> str:
        return f"GatewaySpan({self.name!r}, trace_id={self.trace_id:032x}, span_id={self.span_id:016x})"

    def get_span_context(self) -> SpanContext:
        found = self._context
        if found is None:  # made once asked for: the logs, the traceparent sent upstream
            found = self._context = SpanContext(self.trace_id, self.span_id, False,
                                                SAMPLED if self.sampled else NOT_SAMPLED, self.trace_state)
        return found

    @property
    def trace_headers(self) -> dict[str, str]:
        """The W3C headers that carry this span's context (``traceparent``, and ``tracestate``
        where there is one): what providers/tracecontext.py sends upstream, written here without
        a ``SpanContext`` in between."""
        flags = "01" if self.sampled else "00"
        said = {"traceparent": f"00-{self.trace_id:032x}-{self.span_id:016x}-{flags}"}
        if self.trace_state is not NO_STATE and self.trace_state:
            said["tracestate"] = self.trace_state.to_header()
        return said

    def is_recording(self) -> bool:
        return self.sampled and not self.end_ns

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        # An ended span may be read by the exporter's thread at any moment: it is not changed.
        if not self.end_ns:
            self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        if not self.end_ns:
            self.attributes.update(attributes)

    def update_name(self, name: str) -> None:
        if not self.end_ns:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self.end_ns:
            return
        if isinstance(status, Status):
            code, description = status.status_code, status.description
        else:
            code = status
        # OK is final, and UNSET changes nothing (the API's rules); only an error has a message.
        if self.status_code is StatusCode.OK or code is StatusCode.UNSET:
            return
        self.status_code = code
        self.status_message = (description or "") if code is StatusCode.ERROR else ""

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        if self.end_ns:
            return
        if self.events is None:
            self.events = []
        self.events.append((name, timestamp or time.time_ns(), dict(attributes) if attributes else {}))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self.end_ns or (not context.is_valid and not attributes and not context.trace_state):
            return
        if self.links is None:
            self.links = []
        self.links.append((context, dict(attributes) if attributes else {}))

    def record_exception(self, exception: BaseException, attributes: types.Attributes = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        said: dict[str, Any] = {"exception.type": type(exception).__qualname__, "exception.message": str(exception),
                                "exception.stacktrace": "".join(traceback.format_exception(exception)),
                                "exception.escaped": str(escaped)}
        if attributes:
            said.update(attributes)
        self.add_event("exception", said, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self.end_ns:
            return
        self.end_ns = end_time or time.time_ns()
        if self.sampled:
            self._sink(self)


class Tracer:
    """Makes spans that go to ``sink`` once ended and sampled."""

    __slots__ = ("sink",)

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def root(self, name: str, kind: SpanKind, sampled: bool = True,
             attributes: dict[str, Any] | None = None) -> GatewaySpan:
        """The first span of a new trace; it owns ``attributes`` from here on."""
        return GatewaySpan(name, kind, getrandbits(128) or 1, getrandbits(64) or 1, 0, False, sampled, NO_STATE,
                           self.sink, attributes)

    def remote_child(self, parent: SpanContext, name: str, kind: SpanKind,
                     attributes: dict[str, Any] | None = None) -> GatewaySpan:
        """A span continuing the trace of ``parent``, a valid context from elsewhere (a client's
        ``traceparent``): sampled where its flags say so."""
        return GatewaySpan(name, kind, parent.trace_id, getrandbits(64) or 1, parent.span_id, parent.is_remote,
                           parent.trace_flags.sampled, parent.trace_state, self.sink, attributes)

    def child(self, parent: trace.Span, name: str, kind: SpanKind,
              attributes: dict[str, Any] | None = None) -> GatewaySpan:
        """A span under ``parent``, sampled where it is; a new trace where ``parent`` has no valid context."""
        if isinstance(parent, GatewaySpan):
            return GatewaySpan(name, kind, parent.trace_id, getrandbits(64) or 1, parent.span_id, False,
                               parent.sampled, parent.trace_state, self.sink, attributes)
        context = parent.get_span_context()
        if not context.is_valid:
            return self.root(name, kind, True, attributes)
        return self.remote_child(context, name, kind, attributes)

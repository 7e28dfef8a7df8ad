"""The W3C ``traceparent`` each upstream request carries when the gateway traces: the span of
the attempt that sends it (telemetry/tracing.py makes it current), so the upstream's own traces
join the gateway's. Off (and free) until ``enable()`` is called at start-up by a gateway that
exports traces."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_enabled = False


def enable(on: bool = True) -> None:
    global _enabled
    _enabled = on


def with_trace_context(headers: Mapping[str, str]) -> Mapping[str, str]:
    """``headers`` with the current span's ``traceparent`` (and ``tracestate``) added, where
    tracing is on and a span is current; else ``headers`` itself."""
    if not _enabled or not trace.get_current_span().get_span_context().is_valid:
        return headers
    out = dict(headers)
    _PROPAGATOR.inject(out)
    return out

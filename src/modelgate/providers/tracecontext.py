"""The W3C ``traceparent`` each upstream request carries when the gateway traces: the span of
the attempt that sends it (telemetry/tracing.py makes it current), so the upstream's own traces
join the gateway's. Off (and free) until ``enable()`` is called at start-up by a gateway that
exports traces."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace

_enabled = False


def enable(on: bool = True) -> None:
    global _enabled
    _enabled = on


def with_trace_context(headers: Mapping[str, str]) -> Mapping[str, str]:
    """``headers`` with the current span's ``traceparent`` (and ``tracestate``) added, where
    tracing is on and a span is current; else ``headers`` itself."""
    if not _enabled:
        return headers
    span = trace.get_current_span()
    # The gateway's own spans (telemetry/spans.py) write their headers themselves, without a
    # SpanContext built to be read back (an eighth of the tracing's instructions per request);
    # any other span is read through the API.
    given: Mapping[str, str] | None = getattr(span, "trace_headers", None)
    if given is not None:
        return {**headers, **given}
    current = span.get_span_context()
    if not current.is_valid:
        return headers
    # The W3C header as the API's propagator writes it, without its getter and setter objects.
    out = dict(headers)
    out["traceparent"] = f"00-{current.trace_id:032x}-{current.span_id:016x}-{current.trace_flags:02x}"
    if current.trace_state:
        out["tracestate"] = current.trace_state.to_header()
    return out

"""The OTLP protobuf the gateway writes itself, decoded with opentelemetry-proto: the same message
as the OpenTelemetry SDK's own encoder makes of the same spans (all value types, events, status,
parents local and remote), the span flags as OTLP defines them."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation import set_span_in_context

from modelgate.telemetry.otlp import encode


class Kept(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: object) -> SpanExportResult:
        self.spans.extend(spans)  # type: ignore[arg-type]
        return SpanExportResult.SUCCESS


def spans() -> list[ReadableSpan]:
    kept = Kept()
    provider = TracerProvider(resource=Resource.create({"service.name": "t", "deployment.count": 3}))
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer("modelgate", "1.2")
    remote = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
                         trace_flags=TraceFlags(1))
    with tracer.start_as_current_span("chat gpt-4o", context=set_span_in_context(trace.NonRecordingSpan(remote)),
                                      kind=SpanKind.SERVER) as server:
        server.set_attributes({"s": "text ünïcode", "i": -7, "big": 2**40, "f": 0.25, "b": True,
                               "list": ["a", "b"], "ints": [1, 2]})
        server.add_event("cut", {"at": 3})
        child = tracer.start_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes={"server.address": "h"})
        child.set_status(Status(StatusCode.ERROR, "upstream said 500"))
        child.end()
    provider.shutdown()
    return kept.spans


def test_the_same_message_as_the_sdks_encoder() -> None:
    made = spans()
    ours = ExportTraceServiceRequest.FromString(encode(made))
    theirs = ExportTraceServiceRequest.FromString(encode_spans(made).SerializeToString())
    assert len(ours.resource_spans[0].scope_spans[0].spans) == 2
    for message in (ours, theirs):  # flags: compared on their own below
        for span in message.resource_spans[0].scope_spans[0].spans:
            span.ClearField("flags")
            if span.status.code == 0:
                span.ClearField("status")
    assert ours == theirs


def test_flags_carry_the_trace_flags_and_whether_the_parent_is_remote() -> None:
    decoded = ExportTraceServiceRequest.FromString(encode(spans()))
    by_kind = {span.kind: span for span in decoded.resource_spans[0].scope_spans[0].spans}
    server, client = by_kind[2], by_kind[3]  # OTLP's SPAN_KIND_SERVER, SPAN_KIND_CLIENT
    assert server.flags == 0x301  # sampled; the parent's remoteness is known, and it is remote
    assert client.flags == 0x101  # sampled; its parent (the server span) is local
    assert server.trace_id.hex() == "0af7651916cd43dd8448eb211c80319c"
    assert server.parent_span_id.hex() == "b7ad6b7169203331"
    assert client.status.code == 2 and client.status.message == "upstream said 500"

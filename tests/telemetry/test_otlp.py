"""The OTLP protobuf the gateway writes for its own spans, decoded with opentelemetry-proto and
checked field by field: ids, parents local and remote, trace state, names, kinds, times,
attributes of every value type, events, links, status, flags, resource and scope; and what the
encoder remembers never changes what it writes (the same bytes again, ``1``, ``True`` and ``1.0``
kept apart, its memory forgotten past its bound)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags, TraceState

from modelgate.telemetry import otlp
from modelgate.telemetry.otlp import SpanEncoder, encode
from modelgate.telemetry.spans import GatewaySpan, Tracer

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
CLIENT_SPAN = 0xB7AD6B7169203331
RESOURCE = {"service.name": "t", "deployment.count": 3}
START = 1_700_000_000_123_456_789


def value(given: AnyValue) -> Any:
    kind = given.WhichOneof("value")
    if kind == "array_value":
        return [value(item) for item in given.array_value.values]
    return getattr(given, kind) if kind else None


def said(span: Span) -> dict[str, Any]:
    return {pair.key: value(pair.value) for pair in span.attributes}


def made() -> list[GatewaySpan]:
    """A SERVER span continuing a remote parent (with trace state), with attributes of every
    type, an event, a link and an exception; its CLIENT child, failed; a new trace's root."""
    kept: list[GatewaySpan] = []
    tracer = Tracer(kept.append)
    remote = SpanContext(TRACE_ID, CLIENT_SPAN, is_remote=True, trace_flags=TraceFlags(1),
                         trace_state=TraceState([("vendor", "a1")]))
    server = tracer.remote_child(remote, "/v1/chat/completions", SpanKind.SERVER)
    server.start_ns = START
    server.update_name("chat gpt-4o")
    server.set_attributes({"s": "text ünïcode", "i": -7, "big": 2**40, "f": 0.25, "b": True, "no": False,
                           "list": ["a", "b"], "tuple": ("stop",), "ints": [1, 2], "floats": (0.5, 1.5),
                           "bools": [True, False], "long": "x" * 300, "modelgate.request_id": "req-1"})
    server.set_attribute("none", None)
    server.add_event("cut", {"at": 3}, timestamp=START + 5)
    server.add_link(SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1)), {"why": "retry of"})
    server.record_exception(ValueError("bad"), timestamp=START + 6)
    client = tracer.child(server, "chat gpt-4o-2024", SpanKind.CLIENT, {"server.address": "h", "modelgate.attempt": 1})
    client.start_ns = START + 10
    client.set_status(StatusCode.ERROR, "upstream said 500")
    client.end(START + 20)
    server.end(START + 30)
    root = tracer.root("chat x", SpanKind.INTERNAL)
    root.set_status(StatusCode.OK)
    root.end()
    return kept


def decoded(body: bytes) -> tuple[ExportTraceServiceRequest, dict[int, Span]]:
    message = ExportTraceServiceRequest.FromString(body)
    return message, {span.kind: span for span in message.resource_spans[0].scope_spans[0].spans}


def test_every_field_as_opentelemetry_proto_reads_it() -> None:
    spans = made()
    message, by_kind = decoded(encode(spans, RESOURCE))
    (resource_spans,) = message.resource_spans
    assert {pair.key: value(pair.value) for pair in resource_spans.resource.attributes} == RESOURCE
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.scope.name == "modelgate" and scope_spans.scope.version == ""
    assert [span.name for span in scope_spans.spans] == ["chat gpt-4o-2024", "chat gpt-4o", "chat x"]
    server, client = by_kind[Span.SPAN_KIND_SERVER], by_kind[Span.SPAN_KIND_CLIENT]
    root = by_kind[Span.SPAN_KIND_INTERNAL]

    assert server.trace_id.hex() == f"{TRACE_ID:032x}" and server.parent_span_id.hex() == f"{CLIENT_SPAN:016x}"
    assert server.span_id.hex() == f"{spans[1].span_id:016x}" and len(server.span_id) == 8
    assert server.trace_state == "vendor=a1"
    assert (server.start_time_unix_nano, server.end_time_unix_nano) == (START, START + 30)
    assert server.flags == 0x301  # sampled; the parent's remoteness is known, and it is remote
    assert said(server) == {"s": "text ünïcode", "i": -7, "big": 2**40, "f": 0.25, "b": True, "no": False,
                            "list": ["a", "b"], "tuple": ["stop"], "ints": [1, 2], "floats": [0.5, 1.5],
                            "bools": [True, False], "long": "x" * 300, "modelgate.request_id": "req-1"}
    assert [pair.value.WhichOneof("value") for pair in server.attributes][:5] == [
        "string_value", "int_value", "int_value", "double_value", "bool_value"]
    cut, exception = server.events
    assert (cut.name, cut.time_unix_nano, said(cut)) == ("cut", START + 5, {"at": 3})
    assert exception.name == "exception" and exception.time_unix_nano == START + 6
    thrown = said(exception)
    assert thrown["exception.type"] == "ValueError" and thrown["exception.message"] == "bad"
    assert "ValueError: bad" in thrown["exception.stacktrace"] and thrown["exception.escaped"] == "False"
    (link,) = server.links
    assert (link.trace_id.hex(), link.span_id.hex()) == (f"{0x1234:032x}", f"{0x5678:016x}")
    assert said(link) == {"why": "retry of"} and link.flags == 0x301
    assert server.status.code == Status.STATUS_CODE_UNSET and not server.HasField("status")

    assert client.trace_id == server.trace_id and client.parent_span_id == server.span_id
    assert client.trace_state == "vendor=a1"
    assert client.flags == 0x101  # sampled; its parent (the server span) is local
    assert (client.start_time_unix_nano, client.end_time_unix_nano) == (START + 10, START + 20)
    assert said(client) == {"server.address": "h", "modelgate.attempt": 1}
    assert client.status.code == Status.STATUS_CODE_ERROR and client.status.message == "upstream said 500"
    assert not client.events and not client.links

    assert root.trace_id not in (server.trace_id, b"\0" * 16) and len(root.trace_id) == 16
    assert root.parent_span_id == b"" and root.flags == 0x101 and root.trace_state == ""
    assert root.status.code == Status.STATUS_CODE_OK and root.status.message == ""
    assert root.end_time_unix_nano >= root.start_time_unix_nano > START


def test_what_the_encoder_remembers_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    spans = made()
    encoder = SpanEncoder(RESOURCE)
    first = encoder.request(spans)
    assert encoder.request(spans) == first == encode(spans, RESOURCE)
    # Equal keys and values of other types: 1 == True == 1.0, yet each keeps its own type.
    tracer = Tracer(lambda span: None)
    typed = []
    for given in (1, True, 1.0, "1", 1, True, 1.0, "1"):
        span = tracer.root("typed", SpanKind.INTERNAL, attributes={"v": given})
        span.end()
        typed.append(span)
    spans_out = ExportTraceServiceRequest.FromString(encoder.request(typed)).resource_spans[0].scope_spans[0].spans
    assert [span.attributes[0].value.WhichOneof("value") for span in spans_out] == [
        "int_value", "bool_value", "double_value", "string_value"] * 2
    # Past its bound the encoder forgets, and writes the same.
    monkeypatch.setattr(otlp, "REMEMBERED", 3)
    small = SpanEncoder(RESOURCE)
    assert small.request(spans) == first and small.request(spans) == first


def test_ids_of_every_size_and_unsampled_spans() -> None:
    kept: list[GatewaySpan] = []
    tracer = Tracer(kept.append)
    remote = SpanContext((1 << 128) - 1, (1 << 64) - 1, is_remote=True, trace_flags=TraceFlags(0))
    unsampled = tracer.remote_child(remote, "not kept", SpanKind.SERVER)
    child = tracer.child(unsampled, "nor this", SpanKind.CLIENT)
    assert not unsampled.is_recording() and not child.is_recording()
    assert child.get_span_context().trace_flags == TraceFlags(0) and child.get_span_context().is_valid
    child.end()
    unsampled.end()
    assert kept == []  # never exported, though their context propagates
    small = tracer.root("small", SpanKind.INTERNAL)
    small.trace_id, small.span_id = 1, 1
    small.end()
    big = tracer.child(unsampled, "x", SpanKind.INTERNAL)
    big.sampled = True
    big.end()
    spans = ExportTraceServiceRequest.FromString(encode(kept, RESOURCE)).resource_spans[0].scope_spans[0].spans
    assert spans[0].trace_id.hex() == "0" * 31 + "1" and spans[0].span_id.hex() == "0" * 15 + "1"
    assert spans[1].trace_id.hex() == "f" * 32 and spans[1].parent_span_id.hex() == f"{unsampled.span_id:016x}"
    assert unsampled.parent_id == (1 << 64) - 1

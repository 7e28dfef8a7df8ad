"""The gateway's own spans and their way out: spans work through the OpenTelemetry API (current
span, log lines' ids, the ``traceparent`` sent upstream), follow its rules once ended, sample as
the gateway says (a client's flag, a new trace's ratio), and the exporter sends them in batches,
drops the oldest past its bound, retries a refusing collector once and logs each streak once.
No SDK is needed, checked in a process where it cannot be imported."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from opentelemetry import context, trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags, TraceState

from modelgate.providers import tracecontext
from modelgate.schema.errors import GatewayError, RateLimited
from modelgate.telemetry import otlp
from modelgate.telemetry.logs import JsonFormatter
from modelgate.telemetry.otlp import SpanExporter
from modelgate.telemetry.spans import GatewaySpan, Tracer
from modelgate.telemetry.tracing import Tracing, resource
from tests.server.otlp import Receiver
from tests.support import eventually

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"


@pytest.fixture
def injecting() -> Iterator[None]:
    tracecontext.enable()
    yield
    tracecontext.enable(False)


def tracing(kept: list[GatewaySpan], ratio: float = 1.0) -> Tracing:
    made = Tracing(kept.append, {"p": "openai"}, {"p": "upstream.example"})
    made.sample_ratio = ratio
    return made


def sent_upstream() -> str:
    return tracecontext.with_trace_context({"content-type": "application/json"}).get("traceparent", "")


def test_a_span_is_current_through_the_api_for_logs_and_upstream_requests(injecting: None) -> None:
    kept: list[GatewaySpan] = []
    made = tracing(kept)
    assert sent_upstream() == ""  # no span current: nothing sent
    with made.server("/v1/chat/completions", {}) as span:
        assert trace.get_current_span() is span and span.is_recording()
        record = logging.LogRecord("modelgate", logging.INFO, __file__, 1, "served", (), None)
        line = json.loads(JsonFormatter().format(record))
        assert (line["trace_id"], line["span_id"]) == (f"{span.trace_id:032x}", f"{span.span_id:016x}")
        attempt = made.attempt(span, "chat", "p", "m", 1)
        attempt.enter()
        assert sent_upstream() == f"00-{span.trace_id:032x}-{attempt.span.get_span_context().span_id:016x}-01"
        attempt.leave()
        assert trace.get_current_span() is span
        attempt.committed("m-2024")
        attempt.end()
    assert not trace.get_current_span().get_span_context().is_valid
    client, server = kept
    assert client.parent_id == server.span_id and client.trace_id == server.trace_id
    assert client.name == "chat m" and client.kind is SpanKind.CLIENT and server.kind is SpanKind.SERVER
    assert client.attributes == {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                 "gen_ai.request.model": "m", "modelgate.provider": "p", "modelgate.attempt": 1,
                                 "server.address": "upstream.example", "gen_ai.response.model": "m-2024"}
    assert server.end_ns >= client.end_ns >= client.start_ns >= server.start_ns > 0


def test_a_clients_trace_is_continued_and_its_choice_followed(injecting: None) -> None:
    kept: list[GatewaySpan] = []
    made = tracing(kept, ratio=0)
    headers = {"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01", "tracestate": "vendor=v1"}
    assert made.keeps(headers)
    with made.server("/v1/chat/completions", headers) as span:
        assert f"{span.trace_id:032x}" == TRACE_ID and f"{span.parent_id:016x}" == CLIENT_SPAN
        assert span.remote_parent and span.is_recording()
        attempt = made.attempt(span, "chat", "p", "m", 1)
        attempt.enter()
        out = tracecontext.with_trace_context({})
        assert out["tracestate"] == "vendor=v1" and out["traceparent"].startswith(f"00-{TRACE_ID}-")
        attempt.end()
    assert [s.kind for s in kept] == [SpanKind.CLIENT, SpanKind.SERVER]
    kept.clear()
    # Sampled 00: nothing recorded, but the trace goes on upstream with the client's choice.
    with made.server("/v1/chat/completions", {"traceparent": f"00-{'1' * 32}-{CLIENT_SPAN}-00"}) as span:
        assert not span.is_recording()
        attempt = made.attempt(span, "chat", "p", "m", 1)
        attempt.enter()
        assert sent_upstream() == f"00-{'1' * 32}-{attempt.span.get_span_context().span_id:016x}-00"
        attempt.end()
    assert kept == []


def test_any_other_current_span_is_sent_upstream_through_the_api(injecting: None) -> None:
    other = trace.NonRecordingSpan(SpanContext(int(TRACE_ID, 16), int(CLIENT_SPAN, 16), is_remote=False,
                                               trace_flags=TraceFlags(1), trace_state=TraceState([("v", "1")])))
    token = context.attach(trace.set_span_in_context(other))
    try:
        assert tracecontext.with_trace_context({"a": "b"}) == {
            "a": "b", "traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01", "tracestate": "v=1"}
    finally:
        context.detach(token)
    token = context.attach(trace.set_span_in_context(trace.INVALID_SPAN))
    try:
        assert tracecontext.with_trace_context({"a": "b"}) == {"a": "b"}
    finally:
        context.detach(token)


@pytest.mark.parametrize("given", [f"00-{'0' * 32}-{CLIENT_SPAN}-01", f"00-{TRACE_ID}-{'0' * 16}-01",
                                   f"ff-{TRACE_ID}-{CLIENT_SPAN}-01", "00-xyz", f"00-{TRACE_ID}-{CLIENT_SPAN}"])
def test_a_traceparent_that_cannot_be_continued_starts_a_new_trace(given: str) -> None:
    kept: list[GatewaySpan] = []
    for ratio, recorded in ((1.0, 1), (0.0, 0)):
        with tracing(kept, ratio).server("/v1/chat/completions", {"traceparent": given}) as span:
            assert span.parent_id == 0 and f"{span.trace_id:032x}" != TRACE_ID
        assert len(kept) == recorded
        kept.clear()


def test_new_traces_are_kept_at_the_ratio() -> None:
    assert tracing([], 1.0).keeps({}) and not tracing([], 0.0).keeps({})
    tenth = tracing([], 0.1)
    kept = sum(tenth.keeps({}) for _ in range(20_000))
    assert 1_500 < kept < 2_500


def test_how_a_request_ended_is_its_status() -> None:
    kept: list[GatewaySpan] = []
    made = tracing(kept)
    with pytest.raises(GatewayError), made.server("/r", {}):
        raise RateLimited("too many requests " + "x" * 300, code="rate_limit_exceeded")
    with pytest.raises(KeyError), made.server("/r", {}):
        raise KeyError("k")
    limited, broken = kept
    assert limited.status_code is StatusCode.ERROR and limited.status_message.startswith("too many requests")
    assert len(limited.status_message) == 200
    assert limited.attributes == {"http.response.status_code": 429, "error.type": "rate_limit_exceeded"}
    assert broken.status_code is StatusCode.ERROR and broken.attributes == {"error.type": "KeyError"}
    assert not trace.get_current_span().get_span_context().is_valid


def test_an_ended_span_changes_no_more_and_goes_out_once() -> None:
    kept: list[GatewaySpan] = []
    span = Tracer(kept.append).root("a", SpanKind.INTERNAL)
    span.set_status(StatusCode.OK)
    span.set_status(StatusCode.ERROR, "after OK")  # OK is final
    span.set_status(StatusCode.UNSET)
    assert (span.status_code, span.status_message) == (StatusCode.OK, "")
    span.end(123)
    span.end(456)
    span.set_attribute("late", 1)
    span.set_attributes({"later": 2})
    span.update_name("renamed")
    span.add_event("late")
    assert kept == [span] and span.end_ns == 123 and span.attributes == {} and span.name == "a"
    assert span.events is None and not span.is_recording()
    other = Tracer(kept.append).root("b", SpanKind.INTERNAL)
    other.set_status(StatusCode.ERROR)
    other.set_status(StatusCode.ERROR, "why")
    assert other.status_message == "why"
    token = context.attach(trace.set_span_in_context(other))
    try:
        assert trace.get_current_span() is other
    finally:
        context.detach(token)


def test_the_resource_takes_otel_resource_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod, team=a%20b,service.name=x,bad")
    assert resource("gw") == {"deployment.environment": "prod", "team": "a b", "service.name": "gw"}


def spans(count: int, start: int = 0) -> list[GatewaySpan]:
    tracer = Tracer(lambda span: None)
    out = []
    for n in range(start, start + count):
        span = tracer.root(f"span {n}", SpanKind.SERVER, attributes={"n": n})
        span.end()
        out.append(span)
    return out


def taken(posted: list[bytes]) -> Callable[[bytes], int]:
    """A collector's post that keeps each body and answers 200."""
    def post(body: bytes) -> int:
        posted.append(body)
        return 200
    return post


def exported_numbers(receiver: Receiver) -> list[int]:
    return [span.attributes[0].value.int_value for span in receiver.spans]


async def test_the_exporter_sends_a_batch_at_once_and_the_rest_when_stopped() -> None:
    receiver = Receiver()
    try:
        exporter = SpanExporter(receiver.url + "/", {"service.name": "svc"}, interval_s=60)
        exporter.start()
        for span in spans(otlp.BATCH):
            exporter.add(span)
        await eventually(lambda: len(receiver.spans) == otlp.BATCH, 10, "a batch before the interval")
        for span in spans(3, otlp.BATCH):
            exporter.add(span)
        exporter.stop()
        assert exported_numbers(receiver) == list(range(otlp.BATCH + 3))
        assert receiver.paths == ["/v1/traces", "/v1/traces"] and receiver.services == {"svc"}
    finally:
        receiver.close()


async def test_the_exporter_sends_what_waits_every_interval() -> None:
    receiver = Receiver()
    try:
        exporter = SpanExporter(receiver.url, {"service.name": "svc"}, interval_s=0.05)
        exporter.start()
        for span in spans(2):
            exporter.add(span)
        await eventually(lambda: len(receiver.spans) == 2, 10, "the spans, once the interval is up")
        exporter.stop()
    finally:
        receiver.close()


def test_past_its_bound_the_queue_drops_the_oldest_and_says_so_once(monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(otlp, "MAX_QUEUED", 10)
    posted: list[bytes] = []
    exporter = SpanExporter("http://127.0.0.1:9", {"service.name": "svc"})
    monkeypatch.setattr(exporter._collector, "post", taken(posted))
    caplog.set_level(logging.INFO, "modelgate.telemetry")
    for span in spans(15):
        exporter.add(span)
    assert exporter.dropped == 5
    exporter._send_waiting()
    for span in spans(12, 100):
        exporter.add(span)
    exporter._send_waiting()  # still dropping: not said again
    exporter._send_waiting()  # kept up
    for span in spans(11, 200):
        exporter.add(span)
    exporter.stop()
    said = [record.getMessage() for record in caplog.records]
    assert [line.split(";")[0] for line in said if "dropped" in line] == [
        "traces: more than 10 spans waiting, the oldest dropped (5 so far)",
        "traces: the export keeps up again (7 spans dropped since start)",
        "traces: more than 10 spans waiting, the oldest dropped (8 so far)"]
    assert len(posted) == 3
    names = [[span.name for span in ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans]
             for body in posted]
    assert names[0] == [f"span {n}" for n in range(5, 15)] and names[2][0] == "span 201"


def test_a_refusing_collector_gets_a_batch_twice_and_is_logged_once_a_streak(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    answers: list[int | OSError] = [503, 503, 400, OSError("refused"), 200, 200]
    posts: list[int] = []

    def post(body: bytes) -> int:
        posts.append(len(body))
        answer = answers.pop(0)
        if isinstance(answer, OSError):
            raise answer
        return answer

    exporter = SpanExporter("http://127.0.0.1:9", {"service.name": "svc"})
    monkeypatch.setattr(exporter._collector, "post", post)
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    caplog.set_level(logging.INFO, "modelgate.telemetry")
    for posted in (2, 3, 5, 6):  # 503 twice; 400, not retried; unreachable, then taken; taken
        exporter.add(spans(1)[0])
        exporter._send_waiting()
        assert len(posts) == posted
    assert answers == []
    said = [record.getMessage() for record in caplog.records]
    assert said == ["traces: 1 spans not taken by http://127.0.0.1:9/v1/traces (status 503); "
                    "not said again until spans are taken",
                    "traces: http://127.0.0.1:9/v1/traces takes spans again"]


def test_a_span_that_cannot_be_written_is_logged_and_the_export_goes_on(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    class Unwritable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    posted: list[bytes] = []
    exporter = SpanExporter("http://127.0.0.1:9", {"service.name": "svc"})
    monkeypatch.setattr(exporter._collector, "post", taken(posted))
    bad = spans(1)[0]
    bad.attributes["x"] = Unwritable()
    exporter.add(bad)
    exporter._send_waiting()
    exporter.add(spans(1)[0])
    exporter._send_waiting()
    assert len(posted) == 1 and "could not be encoded (RuntimeError: no)" in caplog.text


def test_tracing_needs_no_opentelemetry_sdk() -> None:
    code = """
import sys
sys.modules['opentelemetry.sdk'] = None  # any import of the SDK now fails
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
import modelgate.server.telemetry
from modelgate.telemetry.tracing import Tracing

bodies = []
class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        bodies.append((self.path, self.rfile.read(int(self.headers['content-length']))))
        self.send_response(200)
        self.send_header('content-length', '0')
        self.end_headers()
    def log_message(self, *args):
        pass
server = HTTPServer(('127.0.0.1', 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
tracing = Tracing.start(f'http://127.0.0.1:{server.server_address[1]}', 'sdk-free', 1.0, {'p': 'openai'},
                        {'p': 'http://upstream:1/v1'})
with tracing.server('/v1/chat/completions', {}) as span:
    tracing.attempt(span, 'chat', 'p', 'm', 1).end()
tracing.stop()
(path, body), = bodies
spans = ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans
print(path, sorted(span.name for span in spans), 'opentelemetry.sdk.trace' in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["/v1/traces", "['/v1/chat/completions',", "'chat", "m']", "False"]
    blocked = subprocess.run([sys.executable, "-c", "import sys; sys.modules['opentelemetry.sdk'] = None\n"
                              "import opentelemetry.sdk.trace"], capture_output=True, text=True, timeout=60)
    assert blocked.returncode != 0  # the check above can fail: an import of the SDK does fail there

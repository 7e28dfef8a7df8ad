"""The OTLP metrics the gateway writes itself, decoded with opentelemetry-proto and compared field
by field with the message they should be; the GenAI families under their conventions' names; no
SDK needed; and the exporter against a real OTLP/HTTP receiver: posted as protobuf, once more when
stopped, a failure streak logged once, the event loop never waiting on the collector."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from modelgate.telemetry.gateway import DURATION_BUCKETS, TOKEN_BUCKETS, GatewayMetrics
from modelgate.telemetry.metrics import Registry
from modelgate.telemetry.otlp_metrics import OTLPMetricExporter, encode, instance_id, read
from tests.server.otlp import Receiver
from tests.support import eventually

START = 1_700_000_000_123_456_789
NOW = START + 5_000_000_007


def kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def registry(in_flight: float = 3.0) -> Registry:
    made = Registry()
    requests = made.counter("demo_requests_total", "Requests", ("deployment", "project"))
    requests.inc(("a", "p"), 2)
    requests.inc(("b", ""), 1.5)  # an empty label value: no attribute
    requests.inc(("ünï", "p"), 1)
    made.counter("demo_unused_total", "Never counted", ("deployment",))
    seconds = made.histogram("demo_seconds", "Durations", ("deployment",), (0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 0.7, 30.0):
        seconds.observe(("a",), value)
    made.gauge("demo_in_flight", "In flight", (), lambda: {(): in_flight})
    return made


def decoded(made: Registry, start: int = START, now: int = NOW) -> ExportMetricsServiceRequest:
    got = ExportMetricsServiceRequest()
    got.ParseFromString(encode(read(made), {"service.name": "svc", "service.instance.id": "host:1"}, start, now, "9.9"))
    return got


def test_every_field_as_opentelemetry_proto_reads_it() -> None:
    got = decoded(registry())
    cumulative = AGGREGATION_TEMPORALITY_CUMULATIVE
    expected = ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics(
        resource=Resource(attributes=[kv("service.name", "svc"), kv("service.instance.id", "host:1")]),
        scope_metrics=[ScopeMetrics(scope=InstrumentationScope(name="modelgate", version="9.9"), metrics=[
            Metric(name="demo_requests_total", description="Requests", sum=Sum(
                aggregation_temporality=cumulative, is_monotonic=True, data_points=[
                    NumberDataPoint(attributes=[kv("deployment", "a"), kv("project", "p")],
                                    start_time_unix_nano=START, time_unix_nano=NOW, as_double=2.0),
                    NumberDataPoint(attributes=[kv("deployment", "b")],
                                    start_time_unix_nano=START, time_unix_nano=NOW, as_double=1.5),
                    NumberDataPoint(attributes=[kv("deployment", "ünï"), kv("project", "p")],
                                    start_time_unix_nano=START, time_unix_nano=NOW, as_double=1.0)])),
            # demo_unused_total has no sample: no metric.
            Metric(name="demo_seconds", description="Durations", histogram=Histogram(
                aggregation_temporality=cumulative, data_points=[
                    HistogramDataPoint(attributes=[kv("deployment", "a")], start_time_unix_nano=START,
                                       time_unix_nano=NOW, count=5, sum=0.05 + 0.1 + 0.5 + 0.7 + 30.0,
                                       bucket_counts=[2, 2, 1], explicit_bounds=[0.1, 1.0])])),
            Metric(name="demo_in_flight", description="In flight", gauge=Gauge(data_points=[
                NumberDataPoint(time_unix_nano=NOW, as_double=3.0)])),
        ])])])
    assert got == expected
    point = got.resource_metrics[0].scope_metrics[0].metrics[1].histogram.data_points[0]
    assert point.HasField("sum")  # proto3 optional: present, not just zero


def test_the_genai_families_take_the_conventions_names_units_and_attributes() -> None:
    made = Registry()
    gateway = GatewayMetrics(made, {"openai": "openai"})
    genai = ("chat", "openai", "gpt-4o", "gpt-4o-2024")
    gateway.duration.observe((*genai, ""), 0.3)
    gateway.duration.observe((*genai, "5xx"), 1.0)
    gateway.token_usage.observe((*genai, "input"), 12)
    gateway.first_chunk.observe(genai, 0.02)
    gateway.requests.inc(("gpt-4o", "openai", "gpt-4o", "chat", "2xx", ""))
    metrics = {m.name: m for m in decoded(made).resource_metrics[0].scope_metrics[0].metrics}
    assert set(metrics) == {"gen_ai.client.operation.duration", "gen_ai.client.token.usage",
                            "gen_ai.client.operation.time_to_first_chunk", "modelgate_requests_total"}
    duration = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s" and metrics["gen_ai.client.operation.time_to_first_chunk"].unit == "s"
    assert metrics["gen_ai.client.token.usage"].unit == "{token}" and metrics["modelgate_requests_total"].unit == ""
    ok, failed = ({a.key: a.value.string_value for a in p.attributes} for p in duration.histogram.data_points)
    assert ok == {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                  "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024"}  # no error.type
    assert failed == {**ok, "error.type": "5xx"}
    assert list(duration.histogram.data_points[0].explicit_bounds) == list(DURATION_BUCKETS)
    (tokens,) = metrics["gen_ai.client.token.usage"].histogram.data_points
    assert {a.key: a.value.string_value for a in tokens.attributes}["gen_ai.token.type"] == "input"
    assert list(tokens.explicit_bounds) == [float(b) for b in TOKEN_BUCKETS] and tokens.sum == 12
    assert list(tokens.bucket_counts) == [0, 0, 1] + [0] * (len(TOKEN_BUCKETS) - 2)  # 4 < 12 <= 16
    (counted,) = metrics["modelgate_requests_total"].sum.data_points
    assert {a.key for a in counted.attributes} == {"deployment", "provider", "model", "surface", "status_class"}


def test_counts_are_cumulative_from_the_same_start() -> None:
    made = registry()
    first = decoded(made)
    made.families["demo_requests_total"].inc(("a", "p"), 5)
    made.families["demo_seconds"].observe(("a",), 0.01)
    second = decoded(made, now=NOW + 60_000_000_000)
    one, two = (m.resource_metrics[0].scope_metrics[0].metrics for m in (first, second))
    assert one[0].sum.data_points[0].as_double == 2 and two[0].sum.data_points[0].as_double == 7
    assert two[0].sum.data_points[0].start_time_unix_nano == START
    assert two[0].sum.data_points[0].time_unix_nano == NOW + 60_000_000_000
    assert (one[1].histogram.data_points[0].count, two[1].histogram.data_points[0].count) == (5, 6)
    assert list(two[1].histogram.data_points[0].bucket_counts) == [3, 2, 1]


def test_read_copies_what_the_event_loop_moves_on() -> None:
    made = registry()
    reading = read(made)
    made.families["demo_requests_total"].inc(("a", "p"), 100)
    made.families["demo_seconds"].observe(("a",), 0.5)
    body = encode(reading, {}, START, NOW)
    metrics = ExportMetricsServiceRequest.FromString(body).resource_metrics[0].scope_metrics[0].metrics
    assert metrics[0].sum.data_points[0].as_double == 2 and metrics[1].histogram.data_points[0].count == 5


def test_the_metrics_need_no_opentelemetry_sdk() -> None:
    code = (
        "import sys\n"
        "sys.modules['opentelemetry.sdk'] = None  # any import of the SDK now fails\n"
        "from modelgate.telemetry.metrics import Registry\n"
        "from modelgate.telemetry.otlp_metrics import OTLPMetricExporter, encode, read\n"
        "import modelgate.server.telemetry\n"
        "made = Registry()\n"
        "made.counter('c_total', 'C', ()).inc(())\n"
        "print(len(encode(read(made), {'service.name': 's'}, 1, 2)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0
    blocked = subprocess.run([sys.executable, "-c", "import sys; sys.modules['opentelemetry.sdk'] = None\n"
                              "import opentelemetry.sdk.metrics"], capture_output=True, text=True, timeout=60)
    assert blocked.returncode != 0  # the check above can fail: an import of the SDK does fail there


async def test_the_exporter_posts_protobuf_every_interval_and_once_more_when_stopped() -> None:
    receiver = Receiver()
    try:
        made = registry()
        exporter = OTLPMetricExporter(made, receiver.url + "/", "svc", 0.05, START, "1.0")
        exporter.start()
        await eventually(lambda: len(receiver.exported()) >= 2, 10, "two exports")
        assert receiver.metrics_types == {"application/x-protobuf"}
        first = receiver.exported()[0].resource_metrics[0]
        assert {a.key: a.value.string_value for a in first.resource.attributes} == {
            "service.name": "svc", "service.instance.id": instance_id()}
        made.families["demo_requests_total"].inc(("a", "p"), 40)
        await exporter.stop()
        sent = len(receiver.exported())
        last = receiver.exported()[-1].resource_metrics[0].scope_metrics[0].metrics[0]
        assert last.name == "demo_requests_total" and last.sum.data_points[0].as_double == 42
        await asyncio.sleep(0.2)
        assert len(receiver.exported()) == sent  # stopped: nothing more
    finally:
        receiver.close()


async def test_a_failure_streak_is_logged_once_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "modelgate.telemetry")

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "modelgate.telemetry"]

    receiver = Receiver()
    try:
        exporter = OTLPMetricExporter(registry(), receiver.url, "svc", 60, START)
        exporter.start()
        receiver.metrics_status = 503
        assert [await exporter.export() for _ in range(3)] == [False, False, False]
        assert len(said()) == 1 and "not taken by" in said()[0] and "status 503" in said()[0]
        receiver.metrics_status = 200
        assert await exporter.export() is True
        assert "takes them again" in said()[1]
        receiver.metrics_status = 500
        assert await exporter.export() is False and await exporter.export() is False
        assert len(said()) == 3 and "status 500" in said()[2]
        await exporter.stop()  # the last export is refused too: logged no more, raised never
        assert len(said()) == 3
    finally:
        receiver.close()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    nobody = OTLPMetricExporter(registry(), f"http://127.0.0.1:{port}", "svc", 60, START)
    nobody.start()
    assert await nobody.export() is False
    await nobody.stop()
    assert len(said()) == 4 and "refused" in said()[3].lower()


async def test_the_event_loop_goes_on_while_the_collector_keeps_it_waiting() -> None:
    silent = socket.socket()  # takes connections (the backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    exporter = OTLPMetricExporter(registry(), f"http://127.0.0.1:{silent.getsockname()[1]}", "svc", 60, START)
    pending = asyncio.get_running_loop().create_task(exporter.export())
    ticks = 0
    for _ in range(10):
        await asyncio.sleep(0.02)
        ticks += 1
    assert ticks == 10 and not pending.done()  # the loop ran on while the post waited
    silent.close()  # the waiting connection is reset: the post fails, and says so
    assert await asyncio.wait_for(pending, 15) is False


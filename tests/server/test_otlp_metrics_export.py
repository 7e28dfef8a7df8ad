"""Metrics over OTLP/HTTP: a real gateway sends its metrics to a receiver in the test, which
decodes them with opentelemetry-proto. After a known load the exported figures are the requests
made (and what ``GET /metrics`` says), every ``telemetry.metrics_interval_s`` and once more when
the gateway stops; with two workers each is an instance of its own whose counts add up to the
requests made; without an endpoint nothing is exported."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import openai
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AGGREGATION_TEMPORALITY_CUMULATIVE, Metric
from prometheus_client.parser import text_string_to_metric_families

from modelgate.config import ConfigError, parse_settings
from modelgate.server.telemetry import METRICS_INTERVAL_S, Metrics, metrics_interval
from modelgate.simulator import SimConfig, SimulatorThread
from modelgate.telemetry.gateway import DURATION_BUCKETS, FIRST_CHUNK_BUCKETS
from tests.server.otlp import Receiver
from tests.support import gateway_in_thread, gateway_process, wait_until

MASTER = "mk-otlp-metrics"
Points = dict[frozenset[tuple[str, str]], Any]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    config = SimConfig.from_dict({"api_key": "sk-sim", "models": {"broken": {"fault": "status=500"}}})
    with SimulatorThread(config) as simulator:
        yield simulator


def config(sim: SimulatorThread, **telemetry: Any) -> dict[str, Any]:
    return {
        "master_key": MASTER,
        "telemetry": {"service_name": "gateway-under-test", **telemetry},
        "providers": {"openai": {"type": "openai", "base_url": f"{sim.base_url}/v1", "api_key": "sk-sim",
                                 "flavor": "openai"}},
        "deployments": [{"name": "gpt-4o", "provider": "openai", "model": "gpt-4o"},
                        {"name": "broken", "provider": "openai", "model": "broken"}],
    }


def metrics(export: ExportMetricsServiceRequest) -> dict[str, Metric]:
    (resource,) = export.resource_metrics
    (scope,) = resource.scope_metrics
    assert scope.scope.name == "modelgate"
    return {metric.name: metric for metric in scope.metrics}


def resource(export: ExportMetricsServiceRequest) -> dict[str, str]:
    return {a.key: a.value.string_value for a in export.resource_metrics[0].resource.attributes}


def points(metric: Metric) -> Points:
    """The metric's data points by their attributes (a number's value; a histogram's point)."""
    kind = str(metric.WhichOneof("data"))
    found = getattr(metric, kind).data_points
    out: Points = {}
    for point in found:
        key = frozenset((a.key, a.value.string_value) for a in point.attributes)
        assert key not in out, f"{metric.name}: two points with the same attributes"
        out[key] = point if kind == "histogram" else point.as_double
    return out


def found_points(export: ExportMetricsServiceRequest, name: str) -> list[Any]:
    metric = metrics(export).get(name)
    return list(getattr(metric, str(metric.WhichOneof("data"))).data_points) if metric is not None else []


def requests_counted(export: ExportMetricsServiceRequest) -> float:
    found = metrics(export).get("modelgate_requests_total")
    return sum(points(found).values()) if found is not None else 0.0


def load(v1: str) -> None:
    """Three plain requests, one stream and one the upstream fails: five requests."""
    client = openai.OpenAI(base_url=v1, api_key=MASTER, max_retries=0)
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hello"}])
    for _ in client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "s"}],
                                            stream=True, stream_options={"include_usage": True}):
        pass
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="broken", messages=[{"role": "user", "content": "Hi"}])


def test_a_known_load_is_exported_every_interval(sim: SimulatorThread) -> None:
    receiver = Receiver()
    try:
        with gateway_in_thread(config(sim, otlp_endpoint=receiver.url, metrics_interval_s=0.2)) as gateway:
            load(gateway.v1)
            # Sent while the gateway runs, not only when it stops.
            wait_until(lambda: receiver.exported() and requests_counted(receiver.exported()[-1]) == 5, 10,
                       "the five requests exported")
            scraped = httpx.get(f"{gateway.base_url}/metrics", headers={"authorization": f"Bearer {MASTER}"},
                                timeout=30).text
            running = len(receiver.exported())
        exports = receiver.exported()
    finally:
        receiver.close()
    assert receiver.metrics_types == {"application/x-protobuf"}
    assert len(exports) > running >= 1  # and once more as it stopped
    last = exports[-1]
    assert resource(last) == {"service.name": "gateway-under-test",
                              "service.instance.id": f"{socket.gethostname()}:{os.getpid()}"}
    found = metrics(last)

    requests = found["modelgate_requests_total"]
    assert requests.sum.is_monotonic and requests.sum.aggregation_temporality == AGGREGATION_TEMPORALITY_CUMULATIVE
    plain = {("deployment", "gpt-4o"), ("provider", "openai"), ("model", "gpt-4o"), ("surface", "chat")}
    assert points(requests) == {frozenset({*plain, ("status_class", "2xx")}): 4.0,
                                frozenset({("deployment", "broken"), ("provider", "openai"), ("model", "broken"),
                                           ("surface", "chat"), ("status_class", "5xx")}): 1.0}

    duration = found["gen_ai.client.operation.duration"]
    assert duration.unit == "s" and duration.histogram.aggregation_temporality == AGGREGATION_TEMPORALITY_CUMULATIVE
    by_model = {dict(key)["gen_ai.request.model"]: (dict(key), point) for key, point in points(duration).items()}
    said, ok = by_model["gpt-4o"]
    assert said == {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o"}
    assert ok.count == 4 and sum(ok.bucket_counts) == 4 and ok.sum > 0
    assert list(ok.explicit_bounds) == list(DURATION_BUCKETS) and len(ok.bucket_counts) == len(DURATION_BUCKETS) + 1
    said, failed = by_model["broken"]
    assert said["error.type"] == "5xx" and failed.count == 1

    (first_chunk,) = points(found["gen_ai.client.operation.time_to_first_chunk"]).values()
    assert first_chunk.count == 1 and list(first_chunk.explicit_bounds) == list(FIRST_CHUNK_BUCKETS)
    assert found["gen_ai.client.token.usage"].unit == "{token}"
    assert points(found["modelgate_requests_in_flight"]) == {frozenset(): 0.0}
    assert not found["modelgate_requests_in_flight"].gauge.data_points[0].start_time_unix_nano

    # The same figures as GET /metrics: tokens by deployment and kind.
    tokens = {(s.labels["deployment"], s.labels["kind"]): s.value
              for family in text_string_to_metric_families(scraped) for s in family.samples
              if s.name == "modelgate_tokens_total"}
    assert tokens and {(dict(k)["deployment"], dict(k)["kind"]): v
                       for k, v in points(found["modelgate_tokens_total"]).items()} == tokens

    # Cumulative from one start, later and later.
    starts = {p.start_time_unix_nano for e in exports for p in found_points(e, "modelgate_requests_total")}
    assert len(starts) == 1
    times = [found_points(e, "modelgate_requests_in_flight")[0].time_unix_nano for e in exports]
    assert times == sorted(times) and times[0] > next(iter(starts)) and len(set(times)) == len(times)


def test_the_last_figures_go_out_when_the_gateway_stops(sim: SimulatorThread) -> None:
    receiver = Receiver()
    try:
        with gateway_in_thread(config(sim, otlp_endpoint=receiver.url, metrics_interval_s=3600)) as gateway:
            load(gateway.v1)
            assert receiver.exported() == []  # an hour between exports: none yet
        exports = receiver.exported()
    finally:
        receiver.close()
    (last,) = exports
    assert requests_counted(last) == 5


def test_two_workers_are_two_instances_whose_counts_add_up(sim: SimulatorThread, tmp_path: Path) -> None:
    receiver = Receiver()
    settings = {**config(sim, otlp_endpoint=receiver.url, metrics_interval_s=0.2),
                "database_url": f"sqlite:///{tmp_path / 'w.db'}", "journal_dir": str(tmp_path / "j")}
    sent = 30
    try:
        with gateway_process(settings, args=["--workers", "2"]) as gateway:
            for _ in range(sent):  # a new connection each: the kernel spreads them over the workers
                with httpx.Client(timeout=30) as fresh:
                    answer = fresh.post(f"{gateway.v1}/chat/completions",
                                        headers={"authorization": f"Bearer {MASTER}"},
                                        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
                    assert answer.status_code == 200, answer.text

            def latest() -> dict[str, ExportMetricsServiceRequest]:
                return {resource(e)["service.instance.id"]: e for e in receiver.exported()}

            # Each worker sends its own counts only: they add up to the requests sent (the
            # merged figures of GET /metrics, sent by both, would count each request twice).
            wait_until(lambda: len(latest()) == 2 and sum(map(requests_counted, latest().values())) == sent, 30,
                       f"{sent} requests exported by two instances")
            assert gateway.process is not None
            supervisor = gateway.process.pid
            instances = set(latest())
    finally:
        receiver.close()
    pids = {int(instance.rsplit(":", 1)[1]) for instance in instances}
    assert len(pids) == 2 and supervisor not in pids
    assert {instance.rsplit(":", 1)[0] for instance in instances} == {socket.gethostname()}


def test_the_interval_and_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    def settings(**telemetry: Any) -> Any:
        return parse_settings({"telemetry": telemetry, "providers": {}, "deployments": []}, {})

    def exporter(**telemetry: Any) -> Any:
        nothing = cast(Any, None)  # the gauges' sources, not read here
        return Metrics(settings(**telemetry), nothing, nothing, nothing).exporter

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_METRIC_EXPORT_INTERVAL", raising=False)
    assert exporter() is None  # no endpoint: nothing is made to run
    assert exporter(otlp_endpoint="http://collector:4318").url == "http://collector:4318/v1/metrics"
    assert metrics_interval(settings()) == METRICS_INTERVAL_S == 60
    assert metrics_interval(settings(metrics_interval_s=0.2)) == 0.2
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "5000")
    assert metrics_interval(settings()) == 5.0
    assert metrics_interval(settings(metrics_interval_s=2)) == 2  # the config's key wins
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "soon")
    assert metrics_interval(settings()) == 60
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env-collector:4318")
    assert exporter().url == "http://env-collector:4318/v1/metrics"
    for wrong in (0, -1):
        with pytest.raises(ConfigError, match="metrics_interval_s: must be more than 0 seconds"):
            settings(metrics_interval_s=wrong)

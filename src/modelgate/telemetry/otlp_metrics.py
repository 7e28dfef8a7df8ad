"""Metrics to an OTLP/HTTP collector: the registry's figures as the protobuf of
``ExportMetricsServiceRequest``, written directly (otlp_wire.py) and POSTed to
``{endpoint}/v1/metrics``. The OpenTelemetry SDK is not needed.

One ``ResourceMetrics`` with ``service.name`` and ``service.instance.id`` (``host:pid``), one
``ScopeMetrics`` (scope ``modelgate``). Each process sends only its own figures: with
``--workers N`` every worker is an instance of its own, and a backend adds them up (the snapshots
of the other workers, which ``GET /metrics`` adds, are never sent). Counters are monotonic
``Sum``s and histograms ``Histogram``s, both CUMULATIVE since the registry was made, so an export
that is lost is made good by the next; gauges are ``Gauge``s. A data point's attributes are its
labels, those with an empty value left out (as Prometheus reads them).

Names: the GenAI families take the semantic conventions' own names, units and attribute names
(``gen_ai.client.operation.duration`` in ``s``, ``gen_ai.client.token.usage`` in ``{token}``,
``gen_ai.client.operation.time_to_first_chunk`` in ``s``; ``gen_ai.request.model``,
``error.type``, ...). modelgate's own families keep the names and labels ``GET /metrics`` shows
(``modelgate_requests_total``, ``deployment``, ...), without a unit: a backend that writes OTLP
metrics in Prometheus' spelling (``_total`` for a monotonic sum, ``_seconds`` for ``s``, braced
units dropped) then shows every family under the very name ``GET /metrics`` gives it.

Field numbers: ``opentelemetry/proto/metrics/v1/metrics.proto`` and
``collector/metrics/v1/metrics_service.proto``; the tests decode what this writes with
opentelemetry-proto.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from modelgate.telemetry.metrics import Family, Labels, Registry
from modelgate.telemetry.otlp_wire import DOUBLE, FIXED64, TIMEOUT_S, Collector, attributes, field, text

log = logging.getLogger("modelgate.telemetry")

SCOPE = "modelgate"
# The GenAI families the registry spells as Prometheus does (telemetry/gateway.py): their
# conventions' name and unit, and the attribute each label stands for.
OTEL_NAMES: dict[str, tuple[str, str]] = {
    "gen_ai_client_operation_duration_seconds": ("gen_ai.client.operation.duration", "s"),
    "gen_ai_client_token_usage": ("gen_ai.client.token.usage", "{token}"),
    "gen_ai_client_operation_time_to_first_chunk_seconds": ("gen_ai.client.operation.time_to_first_chunk", "s"),
}
OTEL_ATTRIBUTES = {
    "gen_ai_operation_name": "gen_ai.operation.name", "gen_ai_provider_name": "gen_ai.provider.name",
    "gen_ai_request_model": "gen_ai.request.model", "gen_ai_response_model": "gen_ai.response.model",
    "gen_ai_token_type": "gen_ai.token.type", "error_type": "error.type",
}
CUMULATIVE = b"\x10\x02"  # aggregation_temporality = 2: AGGREGATION_TEMPORALITY_CUMULATIVE
MONOTONIC = b"\x18\x01"  # is_monotonic = 3

Reading = list[tuple[Family, dict[Labels, Any]]]
"""Each family with its samples, copied at one moment."""


def read(registry: Registry) -> Reading:
    """The registry's samples as they stand (gauges read now), copied: read on the event loop,
    which moves them, to be encoded elsewhere."""
    out: Reading = []
    for family in registry.families.values():
        samples = family.current()
        if family.kind == "histogram":
            out.append((family, {values: [list(s[0]), s[1], s[2]] for values, s in samples.items()}))
        else:
            out.append((family, dict(samples)))
    return out


def instance_id() -> str:
    """``service.instance.id`` of this process: its host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def encode(reading: Reading, resource: Mapping[str, Any], start_ns: int, time_ns: int,
           scope_version: str = "") -> bytes:
    """The ``ExportMetricsServiceRequest`` of ``reading``: cumulative since ``start_ns``, as of
    ``time_ns``. Families without samples are left out."""
    metrics = b"".join(field(2, _metric(family, samples, start_ns, time_ns))  # ScopeMetrics.metrics = 2
                       for family, samples in reading if samples)
    scope = field(1, text(1, SCOPE) + text(2, scope_version))  # InstrumentationScope: name = 1, version = 2
    # ResourceMetrics: resource = 1 (Resource.attributes = 1), scope_metrics = 2.
    resource_metrics = field(1, attributes(1, resource)) + field(2, scope + metrics)
    return field(1, resource_metrics)  # ExportMetricsServiceRequest.resource_metrics = 1


def _metric(family: Family, samples: Mapping[Labels, Any], start_ns: int, time_ns: int) -> bytes:
    name, unit = OTEL_NAMES.get(family.name, (family.name, ""))
    genai = family.name in OTEL_NAMES
    keys = [OTEL_ATTRIBUTES.get(label, label) for label in family.labels] if genai else family.labels
    head = text(1, name) + text(2, family.help) + text(3, unit)  # Metric: name = 1, description = 2, unit = 3
    since = b"\x11" + FIXED64.pack(start_ns)  # start_time_unix_nano = 2 (both point kinds)
    now = b"\x19" + FIXED64.pack(time_ns)  # time_unix_nano = 3
    points = []
    for values, sample in sorted(samples.items()):
        pairs = {key: value for key, value in zip(keys, values, strict=True) if value != ""}
        if family.kind == "histogram":
            counts, total, count = sample
            # HistogramDataPoint: attributes = 9, count = 4, sum = 5, bucket_counts = 6 and
            # explicit_bounds = 7 (packed); the counts are per bucket, as the registry keeps them.
            point = (attributes(9, pairs) + since + now + b"\x21" + FIXED64.pack(count) + b"\x29" + DOUBLE.pack(total)
                     + field(6, b"".join(FIXED64.pack(n) for n in counts))
                     + field(7, b"".join(DOUBLE.pack(float(bound)) for bound in family.buckets)))
        else:
            # NumberDataPoint: attributes = 7, as_double = 4; a gauge has no start.
            point = (attributes(7, pairs) + (since if family.kind == "counter" else b"") + now
                     + b"\x21" + DOUBLE.pack(float(sample)))
        points.append(field(1, point))  # data_points = 1
    body = b"".join(points)
    if family.kind == "counter":
        return head + field(7, body + CUMULATIVE + MONOTONIC)  # sum = 7
    if family.kind == "histogram":
        return head + field(9, body + CUMULATIVE)  # histogram = 9
    return head + field(5, body)  # gauge = 5


class OTLPMetricExporter:
    """Sends a registry's figures to ``{endpoint}/v1/metrics`` every ``interval_s`` and once more
    when stopped, from a task of the event loop. The figures are read on the loop and encoded and
    POSTed from a thread, so the loop never waits on the network. A collector that does not take
    them is logged once until it takes them again, and nothing is raised into the gateway; what it
    refused is not sent again, as the next export carries the same cumulative figures."""

    def __init__(self, registry: Registry, endpoint: str, service_name: str, interval_s: float, start_ns: int,
                 scope_version: str = "") -> None:
        self.registry = registry
        self.service_name = service_name
        self.interval_s = interval_s
        self.start_ns = start_ns
        self.scope_version = scope_version
        self.resource: dict[str, str] = {}
        self._collector = Collector(endpoint, "metrics")
        self.url = self._collector.url
        self._stopping: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def start(self) -> None:
        # The instance is named here, in the process that runs the loop (a worker, after the fork).
        self.resource = {"service.name": self.service_name, "service.instance.id": instance_id()}
        self._stopping = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """The last figures sent, then nothing more."""
        if self._task is None or self._stopping is None:
            return
        self._stopping.set()
        await self._task
        self._task = None
        self._collector.close()

    async def _run(self) -> None:
        assert self._stopping is not None
        stopping = self._stopping
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval_s)
            await self.export()

    async def export(self) -> bool:
        """Send the figures as they stand; whether the collector took them."""
        try:
            reading = read(self.registry)
            return await asyncio.to_thread(self._send, reading, time.time_ns())
        except Exception as error:  # a figure that cannot be read or written: logged, the gateway goes on
            self._taken(False, f"{type(error).__name__}: {error}")
            return False

    def _send(self, reading: Reading, time_ns: int) -> bool:
        body = encode(reading, self.resource, self.start_ns, time_ns, self.scope_version)
        why = ""
        for _ in range(2):
            try:
                status = self._collector.post(body)
            except TimeoutError:  # a collector that does not answer is not waited for twice
                why = f"no answer in {TIMEOUT_S:g} s"
                break
            except (OSError, http.client.HTTPException) as error:
                # Likely a kept connection the collector has closed since: once more on a new one.
                why = str(error) or type(error).__name__
                continue
            return self._taken(200 <= status < 300, f"status {status}")
        return self._taken(False, why)

    def _taken(self, taken: bool, why: str) -> bool:
        if taken and self._failing:
            log.info("metrics: %s takes them again", self.url)
        elif not taken and not self._failing:
            log.warning("metrics: not taken by %s (%s); not said again until it takes them", self.url, why)
        self._failing = not taken
        return taken

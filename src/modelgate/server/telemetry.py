"""The gateway's telemetry put together: traces where an OTLP endpoint is configured, and its
metrics: the families counted from usage records (telemetry/),
the gauges read from the parts that know them, the workers' shared snapshots, the
``telemetry.metrics_port`` listener, and their export to the OTLP endpoint where one is configured.

With ``--workers N`` the supervisor names a folder in ``MODELGATE_METRICS_DIR`` before it
forks; each worker writes its snapshot there every ``SNAPSHOT_INTERVAL_S`` and when it stops,
and the worker that answers a scrape adds the others' to its own live figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path

from modelgate import __version__
from modelgate.config.settings import Settings
from modelgate.metering import Metering, UsageRecorder
from modelgate.providers.tracecontext import enable as enable_trace_context
from modelgate.routing import Health
from modelgate.routing.health import CLOSED, HALF_OPEN, OPEN
from modelgate.server.engines import LocalEngines
from modelgate.server.experiments import Experiments
from modelgate.telemetry.gateway import GatewayMetrics
from modelgate.telemetry.metrics import CONTENT_TYPE, Labels, Registry, SnapshotFolder
from modelgate.telemetry.otlp_metrics import OTLPMetricExporter
from modelgate.telemetry.requestlog import RequestLog
from modelgate.telemetry.tracing import Tracing

log = logging.getLogger("modelgate.telemetry")

FOLDER_ENV = "MODELGATE_METRICS_DIR"
SNAPSHOT_INTERVAL_S = 1.0
METRICS_INTERVAL_S = 60.0  # between two OTLP exports, where neither the config nor the environment says
BREAKER_STATES = {CLOSED: 0.0, HALF_OPEN: 1.0, OPEN: 2.0}
# The GenAI conventions' gen_ai.provider.name for a provider's type or flavour.
GENAI_PROVIDERS = {"openai": "openai", "azure": "azure.ai.openai", "anthropic": "anthropic", "gemini": "gcp.gemini",
                   "xai": "x_ai", "deepseek": "deepseek", "mistral": "mistral_ai", "groq": "groq",
                   "perplexity": "perplexity"}


def start_tracing(settings: Settings) -> Tracing | None:
    """The gateway's tracing where ``telemetry.otlp_endpoint`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT``)
    names a collector; None (and nothing on the request path) where nothing does."""
    telemetry = settings.telemetry
    endpoint = otlp_endpoint(settings)
    if not endpoint:
        return None
    tracing = Tracing.start(endpoint, telemetry.service_name, telemetry.sample_ratio, genai_provider_names(settings),
                            {name: p.base_url for name, p in settings.providers.items()})
    enable_trace_context()
    log.info("traces to %s/v1/traces as %s", endpoint.rstrip("/"), telemetry.service_name)
    return tracing


def otlp_endpoint(settings: Settings) -> str | None:
    """The collector traces and metrics go to: ``telemetry.otlp_endpoint``, else
    ``OTEL_EXPORTER_OTLP_ENDPOINT``; None where neither names one."""
    return settings.telemetry.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None


def metrics_interval(settings: Settings) -> float:
    """Seconds between two metrics exports: ``telemetry.metrics_interval_s``, else
    ``OTEL_METRIC_EXPORT_INTERVAL`` (milliseconds, as the OpenTelemetry SDKs read it), else 60."""
    if settings.telemetry.metrics_interval_s is not None:
        return settings.telemetry.metrics_interval_s
    given = os.environ.get("OTEL_METRIC_EXPORT_INTERVAL")
    if given:
        try:
            interval = float(given) / 1000
        except ValueError:
            interval = 0.0
        if math.isfinite(interval) and interval > 0:
            return interval
        log.warning("OTEL_METRIC_EXPORT_INTERVAL=%r is not a number of milliseconds above 0: metrics every %g s",
                    given, METRICS_INTERVAL_S)
    return METRICS_INTERVAL_S


def genai_provider_names(settings: Settings) -> dict[str, str]:
    out = {}
    for name, provider in settings.providers.items():
        kind = provider.flavor if provider.type == "openai" else provider.type
        out[name] = GENAI_PROVIDERS.get(kind, kind)
    return out


class Metrics:
    """The process's registry, what feeds it, and where other workers' figures are found."""

    def __init__(self, settings: Settings, metering: Metering, recorder: UsageRecorder, health: Health,
                 engines: LocalEngines | None = None, request_log: RequestLog | None = None) -> None:
        self.registry = Registry()
        self.started_ns = time.time_ns()  # where the cumulative figures sent over OTLP start
        self.gateway = GatewayMetrics(self.registry, genai_provider_names(settings))
        folder = os.environ.get(FOLDER_ENV)
        self.folder = SnapshotFolder(Path(folder)) if folder else None
        self.port = settings.telemetry.metrics_port
        self._task: asyncio.Task[None] | None = None
        self._server: asyncio.Server | None = None
        self.exporter: OTLPMetricExporter | None = None  # without an endpoint nothing is read, encoded or sent
        endpoint = otlp_endpoint(settings)
        if endpoint:
            self.exporter = OTLPMetricExporter(self.registry, endpoint, settings.telemetry.service_name,
                                               metrics_interval(settings), self.started_ns, __version__)
        registry = self.registry
        registry.gauge("modelgate_requests_in_flight", "Requests being answered now", (),
                       lambda: {(): float(metering.in_flight)})
        registry.gauge("modelgate_usage_queue_records", "Usage records taken and not yet in the database", (),
                       lambda: {(): float(recorder.queued)})
        registry.gauge("modelgate_usage_journal_backlog_segments",
                       "Journal segments kept while the database cannot take them", (),
                       lambda: {(): float(recorder.backlog)})
        registry.gauge("modelgate_usage_quarantined_records", "Usage records the database refused, set aside", (),
                       lambda: {(): float(recorder.quarantined)})
        registry.gauge("modelgate_breaker_state", "Breaker of each target: 0 closed, 1 half-open, 2 open",
                       ("provider", "model"), lambda: _breakers(health), merge="max")
        registry.gauge("modelgate_target_requests_in_flight", "Attempts in flight to each target",
                       ("provider", "model"),
                       lambda: {(t.provider, t.model): float(t.in_flight) for t in health.targets.values()})
        if engines is not None and engines.providers:
            registry.gauge("modelgate_local_replicas", "Replicas of each local model, by state",
                           ("provider", "model", "state"),
                           lambda: {(p, m, state): float(n) for p, m, states, _, _ in engines.figures()
                                    for state, n in states.items()})
            registry.gauge("modelgate_local_requests_running", "Requests a local model's replicas are answering",
                           ("provider", "model"),
                           lambda: {(p, m): float(running) for p, m, _, running, _ in engines.figures()})
            registry.gauge("modelgate_local_queue_length", "Requests waiting for a local model's replica",
                           ("provider", "model"),
                           lambda: {(p, m): float(waiting) for p, m, _, _, waiting in engines.figures()})
        if request_log is not None:
            registry.gauge("modelgate_request_log_pending_entries", "Request log entries not yet in the database",
                           (), lambda: {(): float(request_log.pending)})
            registry.gauge("modelgate_request_log_dropped_entries",
                           "Request log entries dropped since start, the database away too long", (),
                           lambda: {(): float(request_log.dropped)})

    def watch_experiments(self, experiments: Experiments) -> None:
        """What the deployments' experiments could not keep up with (server/experiments.py)."""
        self.registry.gauge("modelgate_experiment_dropped_shadows",
                            "Shadow copies not sent since start: max_in_flight were in flight", (),
                            lambda: {(): float(experiments.dropped_shadows)})
        self.registry.gauge("modelgate_experiment_dropped_results",
                            "Experiment results not stored since start: their write queue was full", (),
                            lambda: {(): float(experiments.dropped_results)})

    def text(self) -> str:
        """Every figure of every worker, in Prometheus' text format."""
        return self.registry.render(self.folder.others() if self.folder is not None else ())

    async def start(self) -> None:
        if self.folder is not None:
            self._task = asyncio.get_running_loop().create_task(self._snapshots())
        if self.port is not None:
            self._server = await serve_metrics(self, self.port)
            bound = self._server.sockets[0].getsockname()[1]
            log.info("metrics without a key on http://0.0.0.0:%d/metrics (pid %d)", bound, os.getpid())
        if self.exporter is not None:
            self.exporter.start()
            log.info("metrics to %s every %g s as %s", self.exporter.url, self.exporter.interval_s,
                     self.exporter.resource["service.instance.id"])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self.exporter is not None:
            await self.exporter.stop()  # the last figures go out
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._write()

    async def _snapshots(self) -> None:
        while True:
            self._write()
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)

    def _write(self) -> None:
        assert self.folder is not None
        try:
            self.folder.write(self.registry)
        except OSError as error:
            log.warning("metrics: this worker's figures cannot be written to %s (%s)", self.folder.folder, error)


def _breakers(health: Health) -> Mapping[Labels, float]:
    return {(t.provider, t.model): BREAKER_STATES.get(t.state, 0.0) for t in health.targets.values()}


async def serve_metrics(metrics: Metrics, port: int) -> asyncio.Server:
    """``GET /metrics`` without a key on ``port`` (every worker listens, the kernel picks one);
    any other request gets 404."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, path = ([*head.split(b"\r\n", 1)[0].split(b" "), b"", b""])[:2]
            if method == b"GET" and path.split(b"?", 1)[0] in (b"/metrics", b"/metrics/"):
                status, body, kind = "200 OK", metrics.text().encode(), CONTENT_TYPE
            else:
                status, body, kind = "404 Not Found", b"GET /metrics\n", "text/plain; charset=utf-8"
            writer.write(f"HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {len(body)}\r\n"
                         "connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass  # a scraper that went away or sent no request: nothing to answer
        finally:
            writer.close()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("0.0.0.0", port))
    return await asyncio.start_server(answer, sock=sock)

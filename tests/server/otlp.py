"""An OTLP/HTTP collector for tests: it keeps the spans and the metrics posted to it, decoded with
opentelemetry-proto."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span


class Receiver:
    """An OTLP/HTTP endpoint: keeps every span posted to it, with its service name, and the path
    spans were posted to (``paths``); every request posted to /v1/metrics is kept apart, whole,
    in ``metrics``, with its content type in ``metrics_types``, and answered ``metrics_status``."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.services: set[str] = set()
        self.paths: list[str] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.metrics_types: set[str] = set()
        self.metrics_status = 200
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.path == "/v1/metrics":
                    with receiver.lock:
                        receiver.metrics.append(ExportMetricsServiceRequest.FromString(body))
                        receiver.metrics_types.add(self.headers.get("content-type", ""))
                    self.answer(receiver.metrics_status)
                    return
                receiver.paths.append(self.path)
                export = ExportTraceServiceRequest.FromString(body)
                for resource in export.resource_spans:
                    for attribute in resource.resource.attributes:
                        if attribute.key == "service.name":
                            receiver.services.add(attribute.value.string_value)
                    for scope in resource.scope_spans:
                        receiver.spans.extend(scope.spans)
                self.answer()

            def answer(self, status: int = 200) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def exported(self) -> list[ExportMetricsServiceRequest]:
        """The metrics requests taken so far, in the order they came."""
        with self.lock:
            return list(self.metrics)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

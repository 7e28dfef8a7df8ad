"""Traces under the OpenTelemetry GenAI semantic conventions, exported over OTLP/HTTP.

One SERVER span per request that calls a model (from the moment it arrives to the last byte of its
answer) and one CLIENT span per upstream attempt, its child, so retries and fallbacks show as
siblings. A client's W3C ``traceparent`` continues its trace, and each attempt sends its own
``traceparent`` to the upstream (providers/tracecontext.py). Attributes follow the conventions
(``gen_ai.*``, ``server.address``, ``error.type``); what the gateway knows that they have no name
for goes under ``modelgate.*``: deployment, project, key id, attempt number, cost, the content
policy's verdict. Message content only where ``telemetry.capture_content`` or the deployment's
``capture_content`` asks for it (``gen_ai.system_instructions``, ``gen_ai.input.messages``,
``gen_ai.output.messages`` as JSON text), with secrets and personal data redacted.

Without an endpoint (``telemetry.otlp_endpoint`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``) there is no
``Tracing`` at all and the request path does not look for one twice. The spans are the gateway's
own (spans.py), sent by otlp.py: the OpenTelemetry API is all they need, not its SDK.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
from opentelemetry import context, trace
from opentelemetry.trace import Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from modelgate.pipeline.contract import Call
from modelgate.schema.errors import GatewayError
from modelgate.schema.events import TextDelta, ToolCallDelta
from modelgate.schema.request import ChatRequest, ImagePart, TextPart, ToolCallPart
from modelgate.storage.records import UsageRecord
from modelgate.telemetry.otlp import SpanExporter
from modelgate.telemetry.spans import GatewaySpan, Sink, Tracer

PROPAGATOR = TraceContextTextMapPropagator()


class Tracing:
    """Makes the gateway's spans, handing each one ended to ``sink``; ``provider_names`` gives
    each configured provider's GenAI name and ``addresses`` its host."""

    def __init__(self, sink: Sink, provider_names: Mapping[str, str], addresses: Mapping[str, str],
                 exporter: SpanExporter | None = None) -> None:
        self.tracer = Tracer(sink)
        self.exporter = exporter
        self.provider_names = dict(provider_names)
        self.addresses = dict(addresses)
        # Whether spans carry messages (telemetry.capture_content; a deployment may say otherwise
        # for itself), and what takes secrets and personal data out of them first.
        self.capture_content = False
        self.redact: Callable[[str], str] | None = None
        # The share of new traces kept. A request that starts a trace is decided on before any
        # span exists (keeps()), so one not kept makes no span at all; one that continues a
        # client's trace follows the client's sampled flag.
        self.sample_ratio = 1.0
        self._targets: dict[tuple[str, str, str], dict[str, Any]] = {}  # an attempt's attributes, but its number

    @classmethod
    def start(cls, endpoint: str, service_name: str, sample_ratio: float, provider_names: Mapping[str, str],
              base_urls: Mapping[str, str]) -> Tracing:
        """Tracing whose spans go to ``{endpoint}/v1/traces`` from the exporter's thread, started here."""
        exporter = SpanExporter(endpoint, resource(service_name))
        addresses = {name: urlsplit(url).hostname or "" for name, url in base_urls.items()}
        tracing = cls(exporter.add, provider_names, addresses, exporter)
        tracing.sample_ratio = sample_ratio
        exporter.start()
        return tracing

    def stop(self) -> None:
        """Send what is left and stop exporting."""
        if self.exporter is not None:
            self.exporter.stop()

    def keeps(self, headers: Mapping[str, str]) -> bool:
        """Whether a request's trace may be recorded: one that continues a client's trace is
        for its sampled flag to decide; a new one is kept with the probability ``sample_ratio``."""
        return "traceparent" in headers or self.sample_ratio >= 1.0 or random.random() < self.sample_ratio

    def server(self, route: str, headers: Mapping[str, str]) -> Serving:
        """The SERVER span of one request (current while it is served), continuing the client's
        ``traceparent`` if it sent a valid one; a ``GatewayError`` that ends it sets its status
        and ``error.type``."""
        if "traceparent" in headers:
            parent = trace.get_current_span(PROPAGATOR.extract(headers)).get_span_context()
            if parent.is_valid:
                return Serving(self.tracer.remote_child(parent, route, SpanKind.SERVER))
            # Not one that can be continued: a new trace, which keeps() has not decided on yet.
            sampled = self.sample_ratio >= 1.0 or random.random() < self.sample_ratio
            return Serving(self.tracer.root(route, SpanKind.SERVER, sampled))
        return Serving(self.tracer.root(route, SpanKind.SERVER))

    def started(self, span: Span, call: Call, surface: str) -> None:
        """What is known once the request is read: its operation, deployment and parameters, and
        where content is captured, its messages (the call then keeps its answer's deltas)."""
        operation, deployment, request = call.kind, call.deployment, call.request
        span.update_name(f"{operation} {deployment.name}")
        known: dict[str, Any] = {"gen_ai.operation.name": operation, "gen_ai.request.model": deployment.name,
                                 "modelgate.deployment": deployment.name, "modelgate.request_id": call.request_id,
                                 "modelgate.surface": surface}
        if isinstance(request, ChatRequest):
            for name, value in (("max_tokens", request.max_tokens), ("temperature", request.temperature),
                                ("top_p", request.top_p)):
                if value is not None:
                    known[f"gen_ai.request.{name}"] = value
            known["gen_ai.request.stream"] = bool(request.stream)
            wanted = deployment.capture_content
            if wanted or (wanted is None and self.capture_content):
                system, messages = input_messages(request)
                if system:
                    known["gen_ai.system_instructions"] = self._content(system)
                known["gen_ai.input.messages"] = self._content(messages)
                call.output = []
        span.set_attributes(known)

    def _content(self, value: object) -> str:
        text = orjson.dumps(value).decode()
        return self.redact(text) if self.redact is not None else text

    def recorded(self, call: Call, record: UsageRecord) -> None:
        """The request's outcome, from its usage record (token details only where there are some)
        and what the metering stage saw of the answer."""
        span = call.trace
        if span is None:
            return
        known: dict[str, Any] = {
            "gen_ai.usage.input_tokens": record.input_tokens, "gen_ai.usage.output_tokens": record.output_tokens,
            "http.response.status_code": record.status, "modelgate.attempts": record.attempts,
            "modelgate.cost": record.cost, "modelgate.price": record.price}
        provider = record.provider
        if provider is not None:
            known["gen_ai.provider.name"] = self.provider_names.get(provider, provider)
            known["modelgate.provider"] = provider
        if record.model:
            known["gen_ai.response.model"] = record.model
        for name, value in (("cache_read.input_tokens", record.cached_input_tokens),
                            ("cache_creation.input_tokens", record.cache_write_tokens),
                            ("reasoning.output_tokens", record.reasoning_tokens)):
            if value:
                known[f"gen_ai.usage.{name}"] = value
        if record.ttft_ms is not None:
            known["gen_ai.response.time_to_first_chunk"] = record.ttft_ms / 1000
        if record.project is not None:
            known["modelgate.project"] = record.project
        if record.key_id is not None:
            known["modelgate.key_id"] = record.key_id
        if record.verdict is not None:
            known["modelgate.safety.verdict"] = record.verdict
        headers = call.response_headers
        cache = headers.get("x-modelgate-cache")
        if cache is not None:
            known["modelgate.cache"] = cache  # hit | miss | bypass; a hit has no CLIENT span
        reason = headers.get("x-modelgate-route-reason")
        if reason is not None:
            known["modelgate.route_reason"] = reason  # strategy quality-cost: why its target
        experiment = headers.get("x-modelgate-experiment")
        if experiment is not None:
            known["modelgate.experiment"] = experiment
        if record.status >= 400 and record.error:
            known["error.type"] = record.error.split(":", 1)[0].strip()[:100]
            span.set_status(StatusCode.ERROR)
        if call.response_id:
            known["gen_ai.response.id"] = call.response_id
        if call.finish_reasons:
            known["gen_ai.response.finish_reasons"] = call.finish_reasons
        if call.output is not None and record.status < 400:
            known["gen_ai.output.messages"] = self._content(output_messages(call.output, call.finish_reasons))
        span.set_attributes(known)

    def attempt(self, parent: Span | None, operation: str, provider: str, model: str, number: int) -> Attempt:
        """The CLIENT span of one upstream attempt, a child of the request's span."""
        target = (operation, provider, model)
        known = self._targets.get(target)
        if known is None:
            known = {"gen_ai.operation.name": operation,
                     "gen_ai.provider.name": self.provider_names.get(provider, provider),
                     "gen_ai.request.model": model, "modelgate.provider": provider}
            address = self.addresses.get(provider)
            if address:
                known["server.address"] = address
            if len(self._targets) < 10_000:
                self._targets[target] = known
        said = dict(known)
        said["modelgate.attempt"] = number
        name = f"{operation} {model}"
        if parent is None:
            return Attempt(self.tracer.root(name, SpanKind.CLIENT, True, said))
        return Attempt(self.tracer.child(parent, name, SpanKind.CLIENT, said))


def resource(service_name: str) -> dict[str, str]:
    """The spans' resource: ``OTEL_RESOURCE_ATTRIBUTES`` (``key=value,...``, percent-encoded), as
    the OpenTelemetry SDKs read it, and ``service.name``."""
    out: dict[str, str] = {}
    for pair in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, equals, value = pair.partition("=")
        if equals and key.strip():
            out[unquote(key.strip())] = unquote(value.strip())
    out["service.name"] = service_name
    return out


class Serving:
    """The SERVER span of a request as a context manager: current inside, ended on the way out
    with how the request ended."""

    __slots__ = ("_token", "span")

    def __init__(self, span: GatewaySpan) -> None:
        self.span = span
        self._token: object | None = None

    def __enter__(self) -> GatewaySpan:
        self._token = context.attach(trace.set_span_in_context(self.span))
        return self.span

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        span = self.span
        if error is not None:
            if isinstance(error, GatewayError):
                span.set_attribute("http.response.status_code", error.status)
                span.set_attribute("error.type", error.code or type(error).__name__)
                span.set_status(StatusCode.ERROR, error.message[:200])
            else:
                span.set_attribute("error.type", type(error).__name__)
                span.set_status(StatusCode.ERROR)
        if self._token is not None:
            context.detach(self._token)  # type: ignore[arg-type]
            self._token = None
        span.end()


def input_messages(request: ChatRequest) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The request's system instructions and messages as the GenAI conventions write them:
    ``{"role", "parts": [{"type": "text", "content"}, {"type": "tool_call", ...}, ...]}``."""
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        parts: list[dict[str, Any]] = []
        for part in message.content:
            if isinstance(part, TextPart):
                parts.append({"type": "text", "content": part.text})
            elif isinstance(part, ToolCallPart):
                parts.append({"type": "tool_call", "id": part.id, "name": part.name, "arguments": part.arguments})
            elif isinstance(part, ImagePart):
                parts.append({"type": "uri", "modality": "image",
                              "uri": part.url if not part.url.startswith("data:") else "data:..."})
        if message.role in ("system", "developer"):
            system += parts
        elif message.role == "tool":
            messages.append({"role": "tool", "parts": [{"type": "tool_call_response", "id": message.tool_call_id,
                                                        "response": " ".join(p.get("content", "") for p in parts)}]})
        else:
            messages.append({"role": message.role, "parts": parts})
    return system, messages


def output_messages(deltas: list[TextDelta | ToolCallDelta], finish_reasons: tuple[str, ...]) -> list[dict[str, Any]]:
    """The answer as the conventions write output messages: one per choice, its text and tool calls."""
    choices: dict[int, tuple[list[str], dict[int, dict[str, Any]]]] = {}
    for delta in deltas:
        text, calls = choices.setdefault(delta.choice, ([], {}))
        if isinstance(delta, TextDelta):
            text.append(delta.text)
            continue
        found = calls.setdefault(delta.index, {"type": "tool_call", "id": delta.id, "name": delta.name,
                                               "arguments": ""})
        found["id"] = found["id"] or delta.id
        found["name"] = found["name"] or delta.name
        found["arguments"] += delta.arguments
    messages = []
    for choice, (text, calls) in sorted(choices.items()):
        parts: list[dict[str, Any]] = [{"type": "text", "content": "".join(text)}] if text else []
        parts += calls.values()
        # One finish reason per choice, in order; where fewer came, the last stands for the rest.
        reason = finish_reasons[min(choice, len(finish_reasons) - 1)] if finish_reasons else ""
        messages.append({"role": "assistant", "parts": parts, "finish_reason": reason})
    return messages


class Attempt:
    """One attempt's span: current while the request is sent (so its ``traceparent`` goes
    upstream), ended with how the attempt ended."""

    __slots__ = ("_token", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self._token: object | None = None

    def enter(self) -> None:
        self._token = context.attach(trace.set_span_in_context(self.span))

    def leave(self) -> None:
        if self._token is not None:
            context.detach(self._token)  # type: ignore[arg-type]
            self._token = None

    def committed(self, model: str | None) -> None:
        if model:
            self.span.set_attribute("gen_ai.response.model", model)

    def end(self, error: BaseException | None = None) -> None:
        self.leave()
        if error is None:
            self.span.end()
            return
        if isinstance(error, GatewayError):
            self.span.set_attribute("error.type", error.code or type(error).__name__)
            if error.status:
                self.span.set_attribute("http.response.status_code", error.status)
            self.span.set_status(StatusCode.ERROR, error.message[:200])
        else:
            self.span.set_attribute("error.type", type(error).__name__)
            self.span.set_status(StatusCode.ERROR)
        self.span.end()

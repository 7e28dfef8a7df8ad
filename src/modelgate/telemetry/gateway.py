"""The gateway's metrics: the OpenTelemetry GenAI client metrics and modelgate's own, counted from
the usage record of each request (so they agree with the bill), and gauges read at scrape time.

Every label is a bounded set: deployment, provider, model, status class, surface, project, and
error types from a fixed list; never a key id, a request id or anything a client wrote.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelgate.storage.records import UsageRecord
from modelgate.telemetry.metrics import Labels, Registry

# Bucket bounds the GenAI semantic conventions advise (gen_ai.client.* metrics).
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
FIRST_CHUNK_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# The error codes a request can end with that name their cause; any other is its status class.
KNOWN_ERRORS = frozenset({
    "rate_limit_exceeded", "insufficient_quota", "content_filter", "upstream_timeout", "upstream_unreachable",
    "upstream_malformed", "service_unavailable", "internal_error", "invalid_request_error", "model_not_found",
    "context_length_exceeded", "overloaded_error",
})
REFUSALS = {"rate_limit_exceeded": "rate_limit", "insufficient_quota": "budget", "content_filter": "content_filter"}
CLIENT_CLOSED = 499
GENAI = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model")


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


def error_type(record: UsageRecord) -> str:
    """The record's error as a bounded label: its code where it is a known one, else its status
    class; "" where the request succeeded."""
    if record.status < 400 and record.error is None:
        return ""
    if record.status == CLIENT_CLOSED:
        return "client_closed"
    code = (record.error or "").split(":", 1)[0].strip()
    return code if code in KNOWN_ERRORS else status_class(record.status)


class GatewayMetrics:
    """The families of the gateway and how a usage record moves them. ``provider_names`` gives
    the GenAI convention's name of each configured provider (``openai``, ``anthropic``,
    ``gcp.gemini``, ...)."""

    def __init__(self, registry: Registry, provider_names: Mapping[str, str]) -> None:
        self.registry = registry
        self.provider_names = dict(provider_names)
        self.requests = registry.counter(
            "modelgate_requests_total", "Requests that reached a deployment, by how they ended",
            ("deployment", "provider", "model", "surface", "status_class", "project"))
        self.cost = registry.counter(
            "modelgate_cost_usd_total", "What providers charge for the requests (USD)", ("deployment", "provider",
                                                                                         "project"))
        self.charged = registry.counter(
            "modelgate_charged_usd_total", "What the requests are charged to projects (USD, customer prices)",
            ("deployment", "project"))
        self.tokens = registry.counter(
            "modelgate_tokens_total", "Tokens of the requests by kind (input, output, cached_input, reasoning)",
            ("deployment", "provider", "kind"))
        self.refusals = registry.counter(
            "modelgate_refusals_total", "Requests refused by a rate limit, a budget or a content policy",
            ("deployment", "reason", "project"))
        self.cache_hits = registry.counter(
            "modelgate_cache_hits_total", "Requests answered from the response cache (no upstream was called)",
            ("deployment", "project"))
        self.cache_saved = registry.counter(
            "modelgate_cache_saved_usd_total", "What the cache's answers would have cost from the providers (USD)",
            ("deployment", "project"))
        self.duration = registry.histogram(
            "gen_ai_client_operation_duration_seconds", "GenAI operation duration",
            (*GENAI, "error_type"), DURATION_BUCKETS)
        self.token_usage = registry.histogram(
            "gen_ai_client_token_usage", "Number of input and output tokens used", (*GENAI, "gen_ai_token_type"),
            TOKEN_BUCKETS)
        self.overhead = registry.histogram(
            "modelgate_gateway_overhead_seconds",
            "Time a request spent in the gateway's pipeline apart from waiting on upstreams: limits, budgets, "
            "content checks, routing, waits between attempts", ("deployment", "surface"), OVERHEAD_BUCKETS)
        self.first_chunk = registry.histogram(
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "Time to receive the first chunk of a streamed answer", GENAI, FIRST_CHUNK_BUCKETS)

    def observe(self, record: UsageRecord, upstream_s: float = 0.0) -> None:
        """Count one request, from its usage record and the seconds it waited on upstreams."""
        provider = record.provider or ""
        project = record.project or ""
        deployment = record.deployment
        status = status_class(record.status)
        self.requests.inc((deployment, provider, record.model or "", record.route, status, project))
        if record.cost:
            self.cost.inc((deployment, provider, project), record.cost)
        if record.price:
            self.charged.inc((deployment, project), record.price)
        error = error_type(record)
        reason = REFUSALS.get(error)
        if reason is not None:
            self.refusals.inc((deployment, reason, project))
        if record.cache_hit:  # answered by the gateway itself: all of it overhead, no GenAI operation
            self.cache_hits.inc((deployment, project))
            if record.saved:
                self.cache_saved.inc((deployment, project), record.saved)
            self.overhead.observe((deployment, record.route), record.latency_ms / 1000)
            return
        if record.provider is None:  # refused before any upstream was asked: no GenAI operation
            return
        self.overhead.observe((deployment, record.route), max(record.latency_ms / 1000 - upstream_s, 0.0))
        genai: Labels = ("embeddings" if record.route == "embeddings" else "chat",
                         self.provider_names.get(provider, provider), deployment, record.model or "")
        self.duration.observe((*genai, error), record.latency_ms / 1000)
        if record.ttft_ms is not None:
            self.first_chunk.observe(genai, record.ttft_ms / 1000)
        for kind, count in (("input", record.input_tokens), ("output", record.output_tokens),
                            ("cached_input", record.cached_input_tokens), ("reasoning", record.reasoning_tokens)):
            if count:
                self.tokens.inc((deployment, provider, kind), count)
        if record.input_tokens or record.output_tokens:
            self.token_usage.observe((*genai, "input"), record.input_tokens)
            if record.route != "embeddings":
                self.token_usage.observe((*genai, "output"), record.output_tokens)

"""The pipeline's contract: one call, the handlers that answer it, and the stages that wrap them.

A ``Handler`` takes a ``Call`` and yields canonical events; a ``Stage`` wraps the next handler, in
the manner of ASGI middleware. Every stage package (auth, limits, budgets, metering, routing)
and every surface speaks this module, so that none
of them needs the package that puts the chain together (the server does that), and it imports
only the schema, the settings and the storage's record of a call.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelgate.config.settings import DeploymentSettings
from modelgate.schema.events import Event, TextDelta, ToolCallDelta
from modelgate.schema.request import ChatRequest, EmbeddingRequest, ModerationRequest
from modelgate.schema.verdicts import SafetyReport
from modelgate.storage.records import UsageRecord


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits of a key or a project; None means no limit."""

    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens per minute
    budget: float | None = None  # USD per budget_period
    budget_period: str = "month"  # "day" | "month"


NO_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request and what it may use."""

    key_id: str  # "master" for the master key
    project: str | None = None
    # None: every deployment; otherwise the names this key may call.
    deployments: frozenset[str] | None = None
    key_limits: Limits = NO_LIMITS
    project_limits: Limits = NO_LIMITS
    # The project's content policy (safety.policies), run besides its deployment's; None: none.
    safety: str | None = None

    def may_use(self, deployment: str) -> bool:
        return self.deployments is None or deployment in self.deployments


@dataclass(slots=True, kw_only=True)
class Call:
    """One call through the pipeline: the request and everything the stages learn about it."""

    request_id: str
    request: ChatRequest | EmbeddingRequest | ModerationRequest
    deployment: DeploymentSettings
    principal: Principal
    # The operation of the surface that made the call ("chat", "messages", "embeddings"); None:
    # named by the request's kind.
    route: str | None = None
    started: float = field(default_factory=time.monotonic)
    # Headers the stages want on the response (rate limits, what answered).
    response_headers: dict[str, str] = field(default_factory=dict)
    attempts: int = 0
    provider: str | None = None  # the provider that answered
    upstream_model: str | None = None
    # What the deployment's content policy found (safety/stage.py); None: no policy applies.
    safety: SafetyReport | None = None
    # The request's span where the gateway traces (telemetry/tracing.py); None: it does not.
    trace: Any = None
    # Seconds spent waiting on upstreams, every attempt's (the rest of the latency is the gateway's).
    upstream_s: float = 0.0
    # Each upstream attempt as the request log keeps it (routing/router.py); None: not kept.
    history: list[dict[str, Any]] | None = None
    # What the metering stage saw once the call ended: its usage record, the upstream's response
    # id and finish reasons (one per choice).
    record: UsageRecord | None = None
    response_id: str | None = None
    finish_reasons: tuple[str, ...] = ()
    # The answer's text and tool-call deltas as they went by, where its span records content
    # (telemetry.capture_content); None: not kept.
    output: list[TextDelta | ToolCallDelta] | None = None
    # The client's Cache-Control header (no-cache, no-store), which the response cache heeds.
    cache_control: str | None = None
    # Answered from the response cache (cache/stage.py): no upstream was called.
    cache_hit: bool = False
    experiment: Any = None  # its arm of the deployment's experiment (routing/experiment.py Assignment); None: none

    @property
    def kind(self) -> str:
        if isinstance(self.request, EmbeddingRequest):
            return "embeddings"
        return "moderations" if isinstance(self.request, ModerationRequest) else "chat"


Handler = Callable[[Call], AsyncGenerator[Event, None]]


class Stage(Protocol):
    """A pipeline stage: sees the call, calls ``next`` (or not), and passes events through.

    A stage may raise a ``GatewayError`` before calling ``next`` (a limit), watch events go by
    (metering), or call ``next`` again on failure (fallback). It must re-raise what it does not
    handle and never swallow ``CancelledError``.
    """

    def __call__(self, call: Call, next: Handler) -> AsyncGenerator[Event, None]: ...


def build_chain(stages: Sequence[Stage], terminal: Handler) -> Handler:
    """``stages`` in order, outermost first, ending at ``terminal``."""
    handler = terminal
    for stage in reversed(stages):
        handler = _bind(stage, handler)
    return handler


def _bind(stage: Stage, next: Handler) -> Handler:
    def handler(call: Call) -> AsyncGenerator[Event, None]:
        return stage(call, next)
    return handler

"""The settings object: built once at start-up from the config file and passed down.

Nothing reads the environment after start-up; everything configurable is here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelgate.catalog.facts import ModelFacts
from modelgate.providers.settings import ProviderSettings

STRATEGIES = ("weighted", "priority", "latency", "least-busy", "cost")
CAPABILITIES = ("chat", "tools", "vision", "reasoning", "json", "embeddings", "streaming")


@dataclass(slots=True, kw_only=True)
class TargetSettings:
    provider: str
    model: str
    weight: float = 1.0
    facts: ModelFacts = field(default_factory=ModelFacts)


@dataclass(slots=True, kw_only=True)
class ReasoningSettings:
    show: bool = True  # pass reasoning text on to clients
    split_think_tags: bool = False  # open models that write <think>...</think> into the content


@dataclass(slots=True, kw_only=True)
class PriceSettings:
    """What the customer pays, USD per million tokens; None: the provider's cost of that kind."""

    input: float | None = None
    output: float | None = None
    cached_input: float | None = None
    cache_write: float | None = None


@dataclass(slots=True, kw_only=True)
class DeploymentSettings:
    name: str
    targets: list[TargetSettings]
    strategy: str = "weighted"
    fallbacks: list[str] = field(default_factory=list)
    timeout: float = 60.0  # seconds to the first byte from the upstream
    retries: int = 0
    max_share: dict[str, float] = field(default_factory=dict)
    reasoning: ReasoningSettings = field(default_factory=ReasoningSettings)
    # Request fields merged into every request to this deployment (e.g. a thinking setting).
    params: dict[str, Any] = field(default_factory=dict)
    # The customer price; the targets' facts (catalog prices) are the provider's cost.
    price: PriceSettings | None = None
    # Requests and tokens per minute for the whole deployment, every caller together; None: no limit.
    rpm: int | None = None
    tpm: int | None = None


@dataclass(slots=True, kw_only=True)
class RoutingSettings:
    """How targets are judged healthy (routing/health.py)."""

    failures: int = 3  # consecutive retryable failures that open a target's breaker
    cooldown: float = 5.0  # seconds an open breaker waits before it lets one probe through
    # Prefix of the Redis keys and pub/sub channel that share breaker state between processes.
    redis_prefix: str = "modelgate:"


@dataclass(slots=True, kw_only=True)
class Settings:
    master_key: str | None = None
    providers: dict[str, ProviderSettings] = field(default_factory=dict)
    deployments: dict[str, DeploymentSettings] = field(default_factory=dict)
    database_url: str = "sqlite:///modelgate.db"
    redis_url: str | None = None
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    # Where usage records wait while the database cannot be reached (metering/journal.py).
    journal_dir: str = "./journal"

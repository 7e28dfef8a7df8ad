"""The rows the gateway stores, as plain dataclasses: what the storage API takes and returns.

Timestamps are timezone-aware UTC ``datetime`` objects everywhere (in and out); money is USD as a
float; token prices are USD per million tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any

ROUTES = ("chat", "embeddings", "messages", "responses")
BUDGET_PERIODS = ("day", "month")
# What a usage report can be grouped by (``day`` is the UTC calendar day of ``created_at``).
GROUP_BY = ("project", "key", "deployment", "provider", "model", "day", "verdict", "cache_hit")


@dataclass(slots=True, kw_only=True)
class UsageRecord:
    """One request through the gateway, written exactly once (``request_id`` is the primary key)."""

    request_id: str
    created_at: datetime  # UTC, when the request arrived
    project: str | None
    key_id: str | None  # "master" for the master key, None for an open gateway
    deployment: str
    provider: str | None  # the provider that answered (the last one tried), None if none was
    model: str | None  # the upstream model id
    route: str  # "chat" | "embeddings" | "messages" | "responses"
    input_tokens: int = 0  # all input tokens, cached ones included
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0  # part of output_tokens
    output_tokens: int = 0
    cost: float = 0.0  # USD the provider charges for this request
    price: float = 0.0  # USD the customer is charged (equals cost where no customer price is set)
    latency_ms: float = 0.0
    ttft_ms: float | None = None  # time to first token; None when not streamed or no token came
    status: int = 200  # the HTTP status the client got
    attempts: int = 0
    error: str | None = None
    # What the content policy did (schema/verdicts.py ``SafetyReport.summary``): "clean",
    # "annotated:pii", "redacted:pii", "blocked:blocklist", ...; None: no policy applied.
    verdict: str | None = None
    # Answered from the response cache: ``cost`` is 0, ``price`` the deployment's price.cache_hit,
    # and ``saved`` the provider cost the upstream call would have had.
    cache_hit: bool = False
    saved: float = 0.0


@dataclass(slots=True, kw_only=True)
class RequestLogEntry(UsageRecord):
    """A usage record with what the request log keeps besides (storage/request_log.py): where the
    request came from, how it was routed, and, where its deployment logs payloads, what it sent and
    got back (redacted)."""

    surface: str = ""  # the API the client spoke: "openai", "anthropic", "azure"
    path: str = ""
    client_ip: str | None = None
    user_agent: str | None = None
    trace_id: str | None = None  # 32 hex digits, where the request was traced
    # Each upstream attempt in order: {"provider", "model", "started_ms", "duration_ms", "status",
    # "error"} (status and error absent for the attempt that answered).
    history: list[dict[str, Any]] = field(default_factory=list)
    request_body: str | None = None
    response_body: str | None = None


@dataclass(slots=True, kw_only=True)
class RequestFilters:
    """Which request-log entries a search returns, newest first; None means any. ``status`` is a
    range of codes (one code: the same low and high); ``q`` is text in the error message."""

    project: str | None = None
    key_id: str | None = None
    deployment: str | None = None
    provider: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    status: tuple[int, int] | None = None
    q: str | None = None


@dataclass(slots=True, kw_only=True)
class LimitFields:
    """Limits a project or a key may carry; None means none. Same names as the CLI flags."""

    deployments: list[str] | None = None  # None: every deployment
    rpm: int | None = None
    tpm: int | None = None
    budget: float | None = None  # USD per budget_period, counted in customer price
    budget_period: str = "month"  # "day" | "month"


@dataclass(slots=True, kw_only=True)
class ProjectRecord(LimitFields):
    name: str
    created_at: datetime
    revision: int = 0  # the key-change revision that last touched this row
    safety: str | None = None  # the content policy its requests run under, besides their deployment's


@dataclass(slots=True, kw_only=True)
class KeyRecord(LimitFields):
    """A stored key: its SHA-256 hash, never its plaintext."""

    id: str  # "key_..." shown by `modelgate keys list`, used to revoke
    project: str
    key_hash: str  # hex SHA-256 of the plaintext key
    prefix: str  # the first characters of the key, to recognise it in lists
    name: str | None = None
    expires_at: datetime | None = None
    created_at: datetime
    revoked_at: datetime | None = None
    revision: int = 0


@dataclass(slots=True, kw_only=True)
class KeyChanges:
    """Keys and projects changed after a revision (revoked keys included), up to ``revision``."""

    revision: int
    keys: list[KeyRecord] = field(default_factory=list)
    projects: list[ProjectRecord] = field(default_factory=list)


ActiveKeyRow = tuple[Any, ...]
"""A key not revoked as a gateway loads it at start-up, what its principal is made of: (id,
project, key_hash, deployments, rpm, tpm, budget, budget_period, expires_at), deployments and
expires_at as the database driver gives them (``storage.keys.row_deployments``, ``row_time``)."""


@dataclass(slots=True, kw_only=True)
class ActiveKeys:
    """Every key not revoked and every project, complete up to ``revision``."""

    revision: int
    rows: list[ActiveKeyRow] = field(default_factory=list)
    projects: list[ProjectRecord] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class PriceEntry:
    """USD per million tokens for one (deployment, provider, model): the provider's cost and the
    price the customer pays. A None price is unknown; cost code treats it as 0."""

    deployment: str
    provider: str
    model: str
    input_cost: float | None = None
    output_cost: float | None = None
    cached_input_cost: float | None = None
    cache_write_cost: float | None = None
    input_price: float | None = None
    output_price: float | None = None
    cached_input_price: float | None = None
    cache_write_price: float | None = None
    valid_from: datetime | None = None  # set by storage when the entry is written

    def same_prices(self, other: PriceEntry) -> bool:
        return bool(price_values(self) == price_values(other))


PRICE_FIELDS = (
    "input_cost", "output_cost", "cached_input_cost", "cache_write_cost",
    "input_price", "output_price", "cached_input_price", "cache_write_price",
)
price_values = attrgetter(*PRICE_FIELDS)  # a PriceEntry's prices, as a tuple in that order


@dataclass(slots=True, kw_only=True)
class UsageFilters:
    """Which usage records a report covers; None means any. ``since`` inclusive, ``until`` exclusive."""

    project: str | None = None
    key_id: str | None = None
    deployment: str | None = None
    provider: str | None = None
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(slots=True, kw_only=True)
class UsageRow:
    """One line of a usage report: the group's values (only those grouped by are set) and totals."""

    project: str | None = None
    key_id: str | None = None
    deployment: str | None = None
    provider: str | None = None
    model: str | None = None
    day: str | None = None  # YYYY-MM-DD (UTC)
    verdict: str | None = None
    cache_hit: bool | None = None
    requests: int = 0
    errors: int = 0  # status >= 400
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0  # what the providers charge
    revenue: float = 0.0  # what the customers are charged (sum of price)
    cache_hits: int = 0  # requests answered from the response cache
    saved: float = 0.0  # what those would have cost from the providers

    @property
    def margin(self) -> float:
        return self.revenue - self.cost

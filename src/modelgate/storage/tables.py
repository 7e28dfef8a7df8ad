"""The tables as they are after the newest migration, for queries (``migrations.py`` builds them).

Timestamps are stored as UTC and read back as timezone-aware UTC datetimes on every dialect.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out (naive ones in are taken as UTC). SQLite keeps no zone,
    so values are stored as naive UTC there, which also keeps its text comparisons in time order."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # A naive value is taken as UTC (what datetime.utcnow() and most drivers mean) rather than
        # refused: one such record must not make a whole batch of usage unwritable.
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def limit_columns() -> list[Column[Any]]:
    return [
        Column("deployments", JSON(none_as_null=True), nullable=True),  # list of names; NULL: every deployment
        Column("rpm", Integer, nullable=True),
        Column("tpm", BigInteger, nullable=True),
        Column("budget", Float, nullable=True),
        Column("budget_period", String(8), nullable=False, server_default="month"),
    ]


metadata = MetaData()

schema_migrations = Table(
    "schema_migrations", metadata,
    Column("name", String(100), primary_key=True),
    Column("applied_at", UTCDateTime, nullable=False),
)

# Named values: "installation" (a random id shared by the processes of one database) and
# "key_revision" (bumped by every change to keys or projects; see keys.py) and
# "deployment_revision" (bumped by every change to API-made deployments; see deployments.py).
counters = Table(
    "counters", metadata,
    Column("name", String(50), primary_key=True),
    Column("value", BigInteger, nullable=False),
    Column("text", String(100), nullable=True),
)

projects = Table(
    "projects", metadata,
    Column("name", String(200), primary_key=True),
    *limit_columns(),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("safety", String(200), nullable=True),  # the content policy it adds to its deployments'
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", String(40), primary_key=True),
    Column("project", String(200), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(20), nullable=False),
    Column("name", String(200), nullable=True),
    *limit_columns(),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("revision", BigInteger, nullable=False),
)

# One row per request. The key puts rows in time order: new rows go to the end of the index (a
# random key alone sends each insert to a random page), and a time range is one range of it.
# A record written twice (a journal replayed) has the same time and id, and is stored once.
usage = Table(
    "usage", metadata,
    Column("created_at", UTCDateTime, primary_key=True),
    Column("request_id", String(100), primary_key=True),
    Column("project", String(200), nullable=True),
    Column("key_id", String(40), nullable=True),
    Column("deployment", String(200), nullable=False),
    Column("provider", String(200), nullable=True),
    Column("model", String(200), nullable=True),
    Column("route", String(20), nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("cached_input_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("reasoning_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cost", Float, nullable=False),
    Column("price", Float, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float, nullable=True),
    Column("status", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("verdict", String(100), nullable=True),  # what the content policy did; NULL: none applied
    # Answered from the response cache; ``saved``: the provider cost it would have had.
    Column("cache_hit", Boolean, nullable=False, server_default=false()),
    Column("saved", Float, nullable=False, server_default="0"),
)

prices = Table(
    "prices", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment", String(200), nullable=False),
    Column("provider", String(200), nullable=False),
    Column("model", String(200), nullable=False),
    *(Column(name, Float, nullable=True) for name in (
        "input_cost", "output_cost", "cached_input_cost", "cache_write_cost",
        "input_price", "output_price", "cached_input_price", "cache_write_price")),
    Column("valid_from", UTCDateTime, nullable=False),
)

# What reports and budgets read: the totals of the usage rows of one UTC day and one group
# (project, key, deployment, provider, model), kept up to date in the transaction that writes the
# rows. ``group_hash`` names the group (NULLs and empty strings apart) in a key of fixed size.
usage_daily = Table(
    "usage_daily", metadata,
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD, UTC
    Column("group_hash", String(32), primary_key=True),
    Column("project", String(200), nullable=True),
    Column("key_id", String(40), nullable=True),
    Column("deployment", String(200), nullable=False),
    Column("provider", String(200), nullable=True),
    Column("model", String(200), nullable=True),
    Column("verdict", String(100), nullable=True),
    Column("cache_hit", Boolean, nullable=False, server_default=false()),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("cached_input_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("reasoning_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cost", Float, nullable=False),
    Column("price", Float, nullable=False),
    Column("cache_hits", BigInteger, nullable=False, server_default="0"),
    Column("saved", Float, nullable=False, server_default="0"),
    sqlite_with_rowid=False,
)

# The stored state of the Responses API (kind "response") and of Anthropic message threads (kind
# "thread"): one row per response, linked to the one it continues (storage/responses.py).
responses = Table(
    "responses", metadata,
    Column("id", String(100), primary_key=True),
    Column("project", String(200), nullable=True),  # NULL: made with the master key
    Column("kind", String(20), nullable=False),
    Column("created_at", BigInteger, nullable=False),  # unix seconds
    Column("previous_id", String(100), nullable=True),
    Column("body", LargeBinary, nullable=False),
    Column("input_items", LargeBinary, nullable=False),
)

# Values every process on one database shares: "sealing_key" (storage/secrets.py).
gateway_secrets = Table(
    "gateway_secrets", metadata,
    Column("name", String(50), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Each run of a local model's replica (storage/replica_hours.py): from its launch to its end, or
# while ``ended_at`` is NULL, to ``heartbeat_at``, which its gateway moves on while it runs.
replica_hours = Table(
    "replica_hours", metadata,
    Column("id", String(40), primary_key=True),
    Column("provider", String(200), nullable=False),
    Column("model", String(200), nullable=False),  # the model's name, as usage records name it
    Column("replica", Integer, nullable=False),
    Column("process", String(200), nullable=False),  # host:pid of the gateway process that ran it
    Column("per_replica_hour", Float, nullable=True),  # USD, the compute_cost in force; NULL: none set
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=True),
    Column("end_reason", String(20), nullable=True),  # failed | died | hung | stopped | lost
)


# The request log (storage/request_log.py): what the usage record says of a request, and where it
# came from, how it was routed and (where its deployment says so) what it sent and got back. Kept
# for ``request_log.retention_days``; the usage table keeps the money for good. Keyed in time
# order like ``usage``; ``written_at`` is when its batch was written (what `modelgate logs
# --follow` reads after). Indexes: ``migrations.m007_request_log``.
request_log = Table(
    "request_log", metadata,
    Column("created_at", UTCDateTime, primary_key=True),
    Column("request_id", String(100), primary_key=True),
    Column("written_at", UTCDateTime, nullable=False),
    Column("project", String(200), nullable=True),
    Column("key_id", String(40), nullable=True),
    Column("deployment", String(200), nullable=False),
    Column("provider", String(200), nullable=True),
    Column("model", String(200), nullable=True),
    Column("route", String(20), nullable=False),
    Column("surface", String(20), nullable=False),
    Column("path", String(300), nullable=False),
    Column("status", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float, nullable=True),
    Column("input_tokens", BigInteger, nullable=False),
    Column("cached_input_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("reasoning_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cost", Float, nullable=False),
    Column("price", Float, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("verdict", String(100), nullable=True),
    Column("client_ip", String(64), nullable=True),
    Column("user_agent", String(300), nullable=True),
    Column("trace_id", String(32), nullable=True),
    Column("history", Text, nullable=False),  # JSON: the attempts
    Column("request_body", Text, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("cache_hit", Boolean, nullable=False, server_default=false()),
    Column("saved", Float, nullable=False, server_default="0"),
)


# Each ``DELETE /admin/cache`` (storage/cache_clears.py), which processes keeping answers in their
# own memory apply; ``revision`` is the ``cache_clear_revision`` it took. NULL: every one.
cache_clears = Table(
    "cache_clears", metadata,
    Column("revision", BigInteger, primary_key=True),
    Column("deployment", String(200), nullable=True),
    Column("project", String(200), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)


# The deployments made through the admin API (storage/deployments.py): ``body`` is the deployment
# as JSON text, NULL once deleted; ``revision`` is the ``deployment_revision`` of its last change.
api_deployments = Table(
    "api_deployments", metadata,
    Column("name", String(200), primary_key=True),
    Column("body", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("revision", BigInteger, nullable=False),
)


def group_hash(project: str | None, key_id: str | None, deployment: str, provider: str | None,
               model: str | None, verdict: str | None = None, cache_hit: bool = False) -> str:
    """The ``usage_daily.group_hash`` of a group: 128 bits of BLAKE2b over its values as JSON (the
    verdict only where there is one, and the cache's mark only on hits, so that the groups of days
    before them keep their hashes)."""
    values: list[object] = [project, key_id, deployment, provider, model]
    if verdict is not None:
        values.append(verdict)
    if cache_hit:
        values.append({"cache_hit": True})
    text = orjson.dumps(values)
    return hashlib.blake2b(text, digest_size=16).hexdigest()


blocklists = Table(
    "blocklists", metadata,
    Column("name", String(200), primary_key=True),
    Column("body", Text, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("revision", BigInteger, nullable=False),
)


# Evaluations (storage/evals.py): a named run of a dataset over deployments, and each item's
# answer and scores on each deployment, each repeat.
eval_runs = Table(
    "eval_runs", metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("dataset", String(1000), nullable=False),
    Column("dataset_sha256", String(64), nullable=False),
    Column("items", Integer, nullable=False),
    Column("deployments", Text, nullable=False),
    Column("scorers", Text, nullable=False),
    Column("repeats", Integer, nullable=False),
    Column("project", String(200), nullable=False),
    Column("status", String(20), nullable=False),  # running | done | stopped
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

eval_results = Table(
    "eval_results", metadata,
    Column("run_id", String(40), primary_key=True),
    Column("item", Integer, primary_key=True),
    Column("repeat", Integer, primary_key=True),
    Column("deployment", String(200), primary_key=True),
    Column("request_id", String(100), nullable=True),
    Column("question", Text, nullable=False),
    Column("output", Text, nullable=False),
    Column("tool_calls", Text, nullable=False),
    Column("scores", Text, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float, nullable=True),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cost", Float, nullable=False),
    Column("price", Float, nullable=False),
    Column("scoring_price", Float, nullable=False),
    Column("error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

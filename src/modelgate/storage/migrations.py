"""Numbered migrations, each a small function that moves the schema one step.

A migration runs in one transaction together with the row that records it in
``schema_migrations``, so it is applied wholly or not at all. Migrations are never edited once
released: a change to a table is a new function appended to ``MIGRATIONS`` (and the table's new
shape goes to ``tables.py``). Each one states its tables in full, so it keeps meaning what it
meant when it was written.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
)

from modelgate.storage.tables import UTCDateTime

Migration = Callable[[Connection], None]


def m001_initial(conn: Connection) -> None:
    meta = MetaData()

    def limits() -> list[Column[object]]:
        return [
            Column("deployments", JSON, nullable=True),
            Column("rpm", Integer, nullable=True),
            Column("tpm", BigInteger, nullable=True),
            Column("budget", Float, nullable=True),
            Column("budget_period", String(8), nullable=False, server_default="month"),
        ]

    counters = Table(
        "counters", meta,
        Column("name", String(50), primary_key=True),
        Column("value", BigInteger, nullable=False),
        Column("text", String(100), nullable=True),
    )
    Table(
        "projects", meta,
        Column("name", String(200), primary_key=True),
        *limits(),
        Column("created_at", UTCDateTime, nullable=False),
        Column("revision", BigInteger, nullable=False, index=True),
    )
    Table(
        "api_keys", meta,
        Column("id", String(40), primary_key=True),
        Column("project", String(200), nullable=False, index=True),
        Column("key_hash", String(64), nullable=False, unique=True),
        Column("prefix", String(20), nullable=False),
        Column("name", String(200), nullable=True),
        *limits(),
        Column("expires_at", UTCDateTime, nullable=True),
        Column("created_at", UTCDateTime, nullable=False),
        Column("revoked_at", UTCDateTime, nullable=True),
        Column("revision", BigInteger, nullable=False, index=True),
    )
    usage = Table(
        "usage", meta,
        Column("request_id", String(100), primary_key=True),
        Column("created_at", UTCDateTime, nullable=False, index=True),
        Column("project", String(200), nullable=True),
        Column("key_id", String(40), nullable=True),
        Column("deployment", String(200), nullable=False),
        Column("provider", String(200), nullable=True),
        Column("model", String(200), nullable=True),
        Column("route", String(20), nullable=False),
        *(Column(name, BigInteger, nullable=False) for name in (
            "input_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "output_tokens")),
        Column("cost", Float, nullable=False),
        Column("price", Float, nullable=False),
        Column("latency_ms", Float, nullable=False),
        Column("ttft_ms", Float, nullable=True),
        Column("status", Integer, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("error", Text, nullable=True),
    )
    # Budgets sum one key's or one project's spend since a date.
    Index("usage_project_time", usage.c.project, usage.c.created_at)
    Index("usage_key_time", usage.c.key_id, usage.c.created_at)
    prices = Table(
        "prices", meta,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("deployment", String(200), nullable=False),
        Column("provider", String(200), nullable=False),
        Column("model", String(200), nullable=False),
        *(Column(name, Float, nullable=True) for name in (
            "input_cost", "output_cost", "cached_input_cost", "cache_write_cost",
            "input_price", "output_price", "cached_input_price", "cache_write_price")),
        Column("valid_from", UTCDateTime, nullable=False),
    )
    Index("prices_target_time", prices.c.deployment, prices.c.provider, prices.c.model, prices.c.valid_from)
    meta.create_all(conn)
    conn.execute(insert(counters), [
        {"name": "key_revision", "value": 0, "text": None},
        # Names the Redis channel of the processes sharing this database (see auth/keysync.py).
        {"name": "installation", "value": 0, "text": secrets.token_hex(8)},
    ])


MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_initial", m001_initial),
]

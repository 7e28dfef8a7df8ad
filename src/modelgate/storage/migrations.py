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
from datetime import datetime, timedelta

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    case,
    func,
    insert,
    select,
    text,
)

from modelgate.storage.tables import UTCDateTime, group_hash

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
        # Names the Redis channel of the processes sharing this database (see storage/revisions.py).
        {"name": "installation", "value": 0, "text": secrets.token_hex(8)},
    ])


def _usage_002(meta: MetaData, name: str) -> Table:
    return Table(
        name, meta,
        Column("created_at", UTCDateTime, primary_key=True),
        Column("request_id", String(100), primary_key=True),
        Column("project", String(200), nullable=True),
        Column("key_id", String(40), nullable=True),
        Column("deployment", String(200), nullable=False),
        Column("provider", String(200), nullable=True),
        Column("model", String(200), nullable=True),
        Column("route", String(20), nullable=False),
        *(Column(name, BigInteger, nullable=False) for name in _TOKENS),
        Column("cost", Float, nullable=False),
        Column("price", Float, nullable=False),
        Column("latency_ms", Float, nullable=False),
        Column("ttft_ms", Float, nullable=True),
        Column("status", Integer, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("error", Text, nullable=True),
    )


_TOKENS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "output_tokens")
_GROUP = ("project", "key_id", "deployment", "provider", "model")


def m002_usage_daily(conn: Connection) -> None:
    """Usage keyed by (created_at, request_id) with no other index, and ``usage_daily``: the
    totals per UTC day and (project, key, deployment, provider, model) that reports and budgets
    read, filled here from the rows already stored, one day at a time."""
    meta = MetaData()
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        # SQLite cannot change a primary key: the table is copied into its new shape.
        new = _usage_002(meta, "usage_002")
        new.create(conn)
        columns = ", ".join(f'"{c.name}"' for c in new.columns)
        conn.exec_driver_sql(f"INSERT INTO usage_002 ({columns}) SELECT {columns} FROM usage")
        conn.exec_driver_sql("DROP TABLE usage")
        conn.exec_driver_sql("ALTER TABLE usage_002 RENAME TO usage")
    else:
        conn.exec_driver_sql("ALTER TABLE usage DROP CONSTRAINT usage_pkey")
        conn.exec_driver_sql("ALTER TABLE usage ADD CONSTRAINT usage_pkey PRIMARY KEY (created_at, request_id)")
        for index in ("ix_usage_created_at", "usage_project_time", "usage_key_time"):
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index}")
    usage = _usage_002(MetaData(), "usage")
    daily = Table(
        "usage_daily", meta,
        Column("day", String(10), primary_key=True),
        Column("group_hash", String(32), primary_key=True),
        Column("project", String(200), nullable=True),
        Column("key_id", String(40), nullable=True),
        Column("deployment", String(200), nullable=False),
        Column("provider", String(200), nullable=True),
        Column("model", String(200), nullable=True),
        Column("requests", BigInteger, nullable=False),
        Column("errors", BigInteger, nullable=False),
        *(Column(name, BigInteger, nullable=False) for name in _TOKENS),
        Column("cost", Float, nullable=False),
        Column("price", Float, nullable=False),
        sqlite_with_rowid=False,
    )
    daily.create(conn)
    groups = [usage.c[name] for name in _GROUP]
    totals = select(
        *groups, func.count(), func.sum(case((usage.c.status >= 400, 1), else_=0)),
        *(func.sum(usage.c[name]) for name in _TOKENS), func.sum(usage.c.cost), func.sum(usage.c.price),
    ).group_by(*groups)
    first = select(func.min(usage.c.created_at))
    after: datetime | None = None
    while True:
        # The next day with usage: one step of the key's index, however long the gap.
        found_first = conn.execute(first if after is None else first.where(usage.c.created_at >= after)).scalar()
        if found_first is None:
            break
        day: datetime = found_first.replace(hour=0, minute=0, second=0, microsecond=0)
        after = day + timedelta(days=1)
        found = conn.execute(totals.where(usage.c.created_at >= day, usage.c.created_at < after)).all()
        if found:
            label = day.strftime("%Y-%m-%d")
            conn.execute(insert(daily), [
                {"day": label, "group_hash": group_hash(*row[:5]), **dict(zip(_GROUP, row[:5], strict=True)),
                 "requests": row[5], "errors": row[6], **dict(zip(_TOKENS, row[7:12], strict=True)),
                 "cost": row[12], "price": row[13]}
                for row in found])
    if not sqlite:
        conn.exec_driver_sql("ANALYZE usage, usage_daily")  # the planner's figures for the new shapes


def m003_responses(conn: Connection) -> None:
    """``responses``: the stored state of the Responses API and of Anthropic message threads, and
    ``gateway_secrets``: values every process of one database shares (the sealing key)."""
    meta = MetaData()
    responses = Table(
        "responses", meta,
        Column("id", String(100), primary_key=True),
        Column("project", String(200), nullable=True),
        Column("kind", String(20), nullable=False),
        Column("created_at", BigInteger, nullable=False),  # unix seconds
        Column("previous_id", String(100), nullable=True),
        Column("body", LargeBinary, nullable=False),
        Column("input_items", LargeBinary, nullable=False),
    )
    # Retention deletes the oldest rows first, a batch at a time.
    Index("responses_created_at", responses.c.created_at)
    Table(
        "gateway_secrets", meta,
        Column("name", String(50), primary_key=True),
        Column("value", String(200), nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
    )
    meta.create_all(conn)


def m004_deployments(conn: Connection) -> None:
    """``api_deployments``: the deployments made through the admin API, each its body as the config
    file would give it (JSON text) and the ``deployment_revision`` it was last changed at; a deleted
    one keeps its row with no body, so that every gateway process learns of the deletion."""
    meta = MetaData()
    deployments = Table(
        "api_deployments", meta,
        Column("name", String(200), primary_key=True),
        Column("body", Text, nullable=True),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
        Column("revision", BigInteger, nullable=False),
    )
    Index("api_deployments_revision", deployments.c.revision)
    meta.create_all(conn)
    counters = Table(
        "counters", MetaData(),
        Column("name", String(50), primary_key=True),
        Column("value", BigInteger, nullable=False),
        Column("text", String(100), nullable=True),
    )
    conn.execute(insert(counters).values(name="deployment_revision", value=0, text=None))


def m005_replica_hours(conn: Connection) -> None:
    """``replica_hours``: each run of a local model's replica, from its start to its end (or to
    the last heartbeat of the gateway that ran it). It reads and changes no other table, so it
    applies the same before or after any migration numbered below it."""
    meta = MetaData()
    runs = Table(
        "replica_hours", meta,
        Column("id", String(40), primary_key=True),
        Column("provider", String(200), nullable=False),
        Column("model", String(200), nullable=False),
        Column("replica", Integer, nullable=False),
        Column("process", String(200), nullable=False),
        Column("per_replica_hour", Float, nullable=True),
        Column("started_at", UTCDateTime, nullable=False),
        Column("heartbeat_at", UTCDateTime, nullable=False),
        Column("ended_at", UTCDateTime, nullable=True),
        Column("end_reason", String(20), nullable=True),
    )
    # A period's runs are those started before its end: one range of this index.
    Index("replica_hours_started_at", runs.c.started_at)
    meta.create_all(conn)


def m006_safety(conn: Connection) -> None:
    """Content safety: ``projects.safety``, the content policy a project adds to its
    deployments'; ``usage.verdict`` and ``usage_daily.verdict``, what the policy did to a request
    (the day totals of earlier days have none, and keep their group hashes); ``blocklists``, the
    terms and patterns of content-policy lists set through the admin API (``{"terms": [...],
    "patterns": [...]}`` as JSON text) and the ``blocklist_revision`` each was last changed at (a
    deleted one keeps its row with no body, so that every gateway process learns of it)."""
    conn.execute(text("ALTER TABLE projects ADD COLUMN safety VARCHAR(200)"))
    # What the content policy did to each request, and the day totals by it (group_by=verdict).
    conn.execute(text("ALTER TABLE usage ADD COLUMN verdict VARCHAR(100)"))
    conn.execute(text("ALTER TABLE usage_daily ADD COLUMN verdict VARCHAR(100)"))
    meta = MetaData()
    lists = Table(
        "blocklists", meta,
        Column("name", String(200), primary_key=True),
        Column("body", Text, nullable=True),
        Column("updated_at", UTCDateTime, nullable=False),
        Column("revision", BigInteger, nullable=False),
    )
    Index("blocklists_revision", lists.c.revision)
    meta.create_all(conn)
    counters = Table(
        "counters", MetaData(),
        Column("name", String(50), primary_key=True),
        Column("value", BigInteger, nullable=False),
        Column("text", String(100), nullable=True),
    )
    conn.execute(insert(counters).values(name="blocklist_revision", value=0, text=None))


def m007_request_log(conn: Connection) -> None:
    """``request_log``: each request's usage record with its origin, attempts and (where its
    deployment logs them) payloads, kept for ``request_log.retention_days``. The key orders rows by
    time, so the newest page and a time range are one range of it; each filter a search names has
    an index that ends in the key, so that a page of one project's, key's or deployment's
    requests, newest first, is read in order without a sort. Failures (status 400 and up, which
    ``status`` filters of 4xx and 5xx and ``q`` searches look among) have a partial index of their
    own (by status, and by time alone for a search of their text): they are few, and the ones
    people look for. ``written_at`` is what a follower reads after."""
    meta = MetaData()
    log = Table(
        "request_log", meta,
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
        Column("history", Text, nullable=False),
        Column("request_body", Text, nullable=True),
        Column("response_body", Text, nullable=True),
    )
    Index("request_log_request_id", log.c.request_id)
    order = (log.c.created_at, log.c.request_id)
    Index("request_log_project", log.c.project, *order)
    Index("request_log_key", log.c.key_id, *order)
    Index("request_log_deployment", log.c.deployment, *order)
    failed = log.c.status >= 400
    Index("request_log_failed", log.c.status, *order, sqlite_where=failed, postgresql_where=failed)
    # On SQLite with the error text, which a search for a word in it then reads from the index
    # alone; PostgreSQL keeps a B-tree entry under 2.7 kB, which an error message may pass.
    if conn.dialect.name == "sqlite":
        Index("request_log_failed_at", *order, log.c.error, sqlite_where=failed)
    else:
        Index("request_log_failed_at", *order, postgresql_where=failed)
    Index("request_log_written_at", log.c.written_at)
    meta.create_all(conn)


def m008_evals(conn: Connection) -> None:
    """Evaluations: ``eval_runs``, one per named run of a dataset over deployments with scorers, and
    ``eval_results``, one row per item, repeat and deployment, written as each answer is scored (a
    run resumes by skipping the rows it has)."""
    meta = MetaData()
    Table(
        "eval_runs", meta,
        Column("id", String(40), primary_key=True),
        Column("name", String(200), nullable=False, unique=True),
        Column("dataset", String(1000), nullable=False),
        Column("dataset_sha256", String(64), nullable=False),
        Column("items", Integer, nullable=False),
        Column("deployments", Text, nullable=False),  # JSON list
        Column("scorers", Text, nullable=False),  # JSON list
        Column("repeats", Integer, nullable=False),
        Column("project", String(200), nullable=False),
        Column("status", String(20), nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
    )
    results = Table(
        "eval_results", meta,
        Column("run_id", String(40), primary_key=True),
        Column("item", Integer, primary_key=True),
        Column("repeat", Integer, primary_key=True),
        Column("deployment", String(200), primary_key=True),
        Column("request_id", String(100), nullable=True),
        Column("question", Text, nullable=False),  # the item's last user turn: what a router places requests by
        Column("output", Text, nullable=False),
        Column("tool_calls", Text, nullable=False),  # JSON list
        Column("scores", Text, nullable=False),  # JSON {scorer: {"score", "passed", "detail"}}
        Column("latency_ms", Float, nullable=False),
        Column("ttft_ms", Float, nullable=True),
        Column("input_tokens", BigInteger, nullable=False),
        Column("output_tokens", BigInteger, nullable=False),
        Column("cost", Float, nullable=False),
        Column("price", Float, nullable=False),
        Column("scoring_price", Float, nullable=False),  # what the judge's calls were charged
        Column("error", Text, nullable=True),
        Column("created_at", UTCDateTime, nullable=False),
    )
    Index("eval_results_deployment", results.c.run_id, results.c.deployment)
    meta.create_all(conn)


def m009_cache(conn: Connection) -> None:
    """The response cache's answers on the bill: ``cache_hit`` on ``usage``, ``usage_daily`` (a
    group of its own, ``group_by=cache_hit``; the day totals of earlier days have none, and keep
    their group hashes) and ``request_log``; ``saved``, the provider cost a hit did not spend, on
    ``usage`` and ``request_log``, and summed on ``usage_daily`` with ``cache_hits``. And
    ``cache_clears``: each ``DELETE /admin/cache`` under the next ``cache_clear_revision``, which
    the gateway processes that keep answers in their own memory follow."""
    meta = MetaData()
    Table(
        "cache_clears", meta,
        Column("revision", BigInteger, primary_key=True),
        Column("deployment", String(200), nullable=True),  # NULL: every deployment
        Column("project", String(200), nullable=True),  # NULL: every project
        Column("created_at", UTCDateTime, nullable=False),
    )
    meta.create_all(conn)
    counters = Table(
        "counters", MetaData(),
        Column("name", String(50), primary_key=True),
        Column("value", BigInteger, nullable=False),
        Column("text", String(100), nullable=True),
    )
    conn.execute(insert(counters).values(name="cache_clear_revision", value=0, text=None))
    false = "FALSE" if conn.dialect.name == "postgresql" else "0"
    for table in ("usage", "usage_daily", "request_log"):
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN cache_hit BOOLEAN NOT NULL DEFAULT {false}"))
    for table in ("usage", "request_log"):
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN saved FLOAT NOT NULL DEFAULT 0"))
    conn.execute(text("ALTER TABLE usage_daily ADD COLUMN cache_hits BIGINT NOT NULL DEFAULT 0"))
    conn.execute(text("ALTER TABLE usage_daily ADD COLUMN saved FLOAT NOT NULL DEFAULT 0"))


MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_initial", m001_initial),
    ("002_usage_daily", m002_usage_daily),
    ("003_responses", m003_responses),
    ("004_deployments", m004_deployments),
    ("005_replica_hours", m005_replica_hours),
    ("006_safety", m006_safety),
    ("007_request_log", m007_request_log),
    ("008_evals", m008_evals),
    ("009_cache", m009_cache),
]

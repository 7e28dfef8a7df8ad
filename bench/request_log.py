"""What the request log's queries cost on a full table: SQLite and PostgreSQL at ``--rows`` rows.

The table (``migrations.m007_request_log``, with its indexes as they are) is filled with a week of
made-up traffic ending now, then each search the admin API and ``modelgate logs`` run is timed
through ``RequestLogRepository`` itself, as the gateway runs it:

    traffic   7 days, a daily swing; 20 projects, one of them 40 % of the requests; 200 keys
              (each of one project); 30 deployments over 6 providers; status 200 but ~2 % 5xx
              (500/502/503/504), ~1 % 429 and ~0.5 % other 4xx, each failure with an error text
              of the gateway's kind (a few varied words in each); one attempt in ``history``;
              no payloads but on 1 % of rows (a 2 KB request body and a short answer)
    filling   in big batches, around the repository (SQLAlchemy core executemany on SQLite,
              COPY through asyncpg on PostgreSQL); then ANALYZE on PostgreSQL, as autovacuum
              would do, and none on SQLite, whose statistics the gateway never gathers
    searches  ``search(filters, 50, cursor)``: the newest page and one page per filter (see
              ``queries``), the 20th page of the newest (the 19 before it followed, untimed), two
              worst cases more; ``get`` of a random stored id; ``written_after`` the last 10 s of
              the traffic. Each on a new connection: one warm-up, then ``--runs`` (5) timed runs
              and ``--runs`` more, each group's median in ms. The second group is there for
              PostgreSQL: asyncpg prepares each statement once per connection, and from its sixth
              execution PostgreSQL may run a generic plan (the values as parameters) in place
              of one planned for the values; what a gateway that has served a search a few
              times gets
    writing   ``write`` of 20 batches of 500 new rows into the full table (what the gateway's
              request log writer pays per batch): ms per batch (median and slowest), rows/s
    size      the table with its indexes: PostgreSQL's pg_total_relation_size (and each index);
              SQLite's file, and each index from ``dbstat``

``--plans`` prints, for each query, the plan the database makes of the repository's own SQL (its
``search_query`` compiled with literal values): EXPLAIN QUERY PLAN on SQLite, EXPLAIN on
PostgreSQL, and on PostgreSQL the generic plan as well (PREPARE, then EXPLAIN EXECUTE under
``plan_cache_mode = force_generic_plan``). ``--analyze``: EXPLAIN (ANALYZE, BUFFERS) on
PostgreSQL, which runs the query.

    python bench/request_log.py                          # 1,000,000 rows on both, several minutes
    python bench/request_log.py --rows 100000 --plans --analyze   # smaller, with the plans
    python bench/request_log.py --only sqlite
    python bench/request_log.py --only postgresql --pg-url postgresql://postgres@127.0.0.1:5432/test

PostgreSQL: ``--pg-url`` names a server and a database to connect to first (trust or a password in
the URL); the run creates its own database ``mg_bench_<random>`` there and drops it at the end.
SQLite: a file in a temporary directory, removed at the end. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import secrets
import sqlite3
import statistics
import string
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from sqlalchemy import Select, create_engine, insert, literal, select, text
from sqlalchemy.engine import make_url

from modelgate.storage import Storage
from modelgate.storage.records import RequestFilters, RequestLogEntry
from modelgate.storage.request_log import RequestLogRepository
from modelgate.storage.tables import request_log

PAGE = 50
DAYS = 7
CHUNK = 50_000  # rows per insert while filling
WRITE_BATCHES = 20
WRITE_BATCH = 500  # the request log writer's batch
DEEP_PAGE = 20
RARE_WORD = "kestrel"  # in ~0.1 % of error texts
COMMON_WORD = "timed out"  # in every upstream timeout (~0.5 % of all rows)
ABSENT_WORD = "quokkaish"  # in none
PROVIDERS = {  # provider: its models, and its share of the deployments' traffic
    "openai": ["gpt-4o", "gpt-4o-mini", "o3-mini", "text-embedding-3-small"],
    "anthropic": ["claude-sonnet-4", "claude-haiku-3.5"],
    "azure": ["gpt-4o", "gpt-4.1"],
    "bedrock": ["claude-sonnet-4", "llama3-70b"],
    "vertex": ["gemini-2.0-flash", "gemini-1.5-pro"],
    "mistral": ["mistral-large", "codestral"],
}
ROUTE_PATHS = {"chat": ("openai", "/v1/chat/completions"), "embeddings": ("openai", "/v1/embeddings"),
               "messages": ("anthropic", "/v1/messages"), "responses": ("openai", "/v1/responses")}
USER_AGENTS = ["OpenAI/Python 1.82.0", "AsyncOpenAI/Python 1.82.0", "anthropic-python/0.52.0",
               "langchain-openai/0.3.18", "curl/8.5.0", "Go-http-client/2.0", "node-fetch/3.3.2",
               "LiteLLM/1.70.0", "okhttp/4.12.0", "python-httpx/0.28.1"]
OTHER_4XX = [400, 400, 400, 404, 408, 413, 422]
RARE_STATUS = 408  # ~0.07 % of the rows


# -- the traffic -----------------------------------------------------------------------------------

@dataclass(slots=True)
class Traffic:
    """Who sends what: projects, keys and deployments with their weights, and the end of the week."""

    end: datetime
    projects: list[str]
    project_weights: list[float]
    keys: dict[str, list[str]]  # project: its keys
    key_weights: dict[str, list[float]]
    deployments: list[str]
    deployment_weights: list[float]
    targets: dict[str, tuple[str, str]]  # deployment: (provider, model)
    vocabulary: list[str]
    sample_ids: list[str] = field(default_factory=list)  # stored ids, for ``get``


def make_traffic(rng: random.Random, end: datetime) -> Traffic:
    projects = ["acme-prod", *(f"team-{name}" for name in (
        "search", "support", "billing", "growth", "mobile", "data", "risk", "legal", "ops", "docs", "labs",
        "infra", "sales", "hr", "design", "qa", "intern", "sandbox", "archive"))]
    # acme-prod 40 %; the other 60 % over 19 projects on a Zipf curve (team-search ~15 %, team-archive ~0.6 %).
    zipf = [1 / (rank + 1) for rank in range(len(projects) - 1)]
    project_weights = [0.4, *(0.6 * w / sum(zipf) for w in zipf)]
    # 200 keys: 40 for acme-prod, 160 dealt round the others; a few busy keys per project.
    owners = ["acme-prod"] * 40 + [projects[1 + i % (len(projects) - 1)] for i in range(160)]
    keys: dict[str, list[str]] = {name: [] for name in projects}
    for owner in owners:
        keys[owner].append("key_" + "".join(rng.choices(string.ascii_lowercase + string.digits, k=12)))
    key_weights = {name: [1 / (rank + 1) ** 0.8 for rank in range(len(ids))] for name, ids in keys.items()}
    provider_names = list(PROVIDERS)
    deployments: list[str] = []
    targets: dict[str, tuple[str, str]] = {}
    for i in range(30):
        provider = provider_names[min(int(rng.expovariate(0.7)), len(provider_names) - 1)] if i >= 6 \
            else provider_names[i]  # every provider has one at least; openai and anthropic the most
        model = rng.choice(PROVIDERS[provider])
        name = f"{model.split('-')[0]}-{i:02d}"
        deployments.append(name)
        targets[name] = (provider, model)
    deployment_weights = [1 / (rank + 1) ** 1.1 for rank in range(len(deployments))]
    letters = string.ascii_lowercase
    vocabulary: list[str] = []
    while len(vocabulary) < 600:
        word = "".join(rng.choices(letters, k=rng.randint(5, 9)))
        if RARE_WORD not in word and ABSENT_WORD not in word and word not in vocabulary:
            vocabulary.append(word)
    return Traffic(end, projects, project_weights, keys, key_weights, deployments, deployment_weights,
                   targets, vocabulary)


def moments(rng: random.Random, rows: int, end: datetime) -> list[float]:
    """``rows`` arrival times (POSIX seconds) over the week before ``end``, busier by day, in order."""
    span = DAYS * 86_400
    start = end.timestamp() - span
    found: list[float] = []
    while len(found) < rows:
        at = start + rng.random() * span
        hour = (at % 86_400) / 3600
        if rng.random() < (1 + 0.6 * math.sin((hour - 8) / 24 * 2 * math.pi)) / 1.6:
            found.append(at)
    found.sort()
    return found


def error_text(rng: random.Random, traffic: Traffic, status: int, provider: str, model: str) -> str:
    words = rng.sample(traffic.vocabulary, 2)
    if rng.random() < 0.001:
        words[rng.randrange(2)] = RARE_WORD
    detail = f"(upstream request {rng.randbytes(4).hex()}, hint {words[0]} {words[1]})"
    if status == 502:
        return (f"upstream_unreachable: provider '{provider}' could not be reached: ConnectError: "
                f"[Errno 111] Connection refused {detail}")
    if status == 503:
        return f"upstream_unavailable: provider '{provider}' answered 503: model '{model}' is overloaded {detail}"
    if status == 504:
        return f"upstream_timeout: provider '{provider}' {COMMON_WORD} after 60.0 s {detail}"
    if status == 500:
        return f"upstream_error: provider '{provider}' answered 500: internal server error {detail}"
    if status == 429:
        if rng.random() < 0.5:
            return f"rate_limit_exceeded: the key's rpm limit of {rng.choice((60, 600, 3000))} was reached {detail}"
        return f"rate_limit_exceeded: provider '{provider}' answered 429: rate limit reached for requests {detail}"
    if status == 413:
        return f"request_too_large: the request body is over the limit of 4 MiB {detail}"
    if status == 422:
        return f"content_filter: the request was blocked by the content policy (blocklist) {detail}"
    if status == 404:
        return f"not_found: provider '{provider}' answered 404: model '{model}' does not exist {detail}"
    if status == 408:
        return f"request_timeout: the client sent no body within 30 s {detail}"
    return f"invalid_request: 'max_tokens' must be at most 16384 for model '{model}' {detail}"


def pick_status(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.02:
        return rng.choice((500, 502, 502, 503, 503, 504))
    if roll < 0.03:
        return 429
    if roll < 0.035:
        return rng.choice(OTHER_4XX)
    return 200


def entry_row(rng: random.Random, traffic: Traffic, at: float, project: str, deployment: str
              ) -> dict[str, Any]:
    """One stored row, as ``RequestLogRepository.write`` would store the entry."""
    created = datetime.fromtimestamp(at, UTC)
    provider, model = traffic.targets[deployment]
    key_id = rng.choices(traffic.keys[project], traffic.key_weights[project])[0]
    status = pick_status(rng)
    route = "embeddings" if model.startswith("text-embedding") else rng.choice(
        ("chat", "chat", "chat", "chat", "messages", "responses"))
    surface, path = ROUTE_PATHS[route]
    failed = status >= 400
    latency = round(rng.lognormvariate(6.5, 0.9) if not failed else rng.lognormvariate(5.0, 1.5), 3)
    if status == 504:
        latency = 60_000.0 + rng.random() * 50
    input_tokens = 0 if failed else int(rng.lognormvariate(6.5, 1.2))
    output_tokens = 0 if failed or route == "embeddings" else int(rng.lognormvariate(5.0, 1.0))
    cost = round((input_tokens * 2.5 + output_tokens * 10.0) / 1e6, 9)
    error = error_text(rng, traffic, status, provider, model) if failed else None
    attempt: dict[str, Any] = {"attempt": 1, "provider": provider, "model": model, "started_ms": round(rng.random(), 3),
                               "duration_ms": latency}
    if failed:
        attempt.update(outcome="failed", status=status, error=error)
    else:
        attempt["outcome"] = "answered"
    payload = rng.random() < 0.01
    return {
        "created_at": created,
        "request_id": "req_" + rng.randbytes(12).hex(),
        "written_at": created + timedelta(seconds=latency / 1000 + rng.random()),
        "project": project,
        "key_id": key_id,
        "deployment": deployment,
        "provider": provider,
        "model": model,
        "route": route,
        "surface": surface,
        "path": path,
        "status": status,
        "latency_ms": latency,
        "ttft_ms": round(latency * rng.uniform(0.1, 0.4), 3) if route == "chat" and not failed else None,
        "input_tokens": input_tokens,
        "cached_input_tokens": input_tokens // 2 if rng.random() < 0.3 else 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": output_tokens // 3 if model.startswith("o3") else 0,
        "output_tokens": output_tokens,
        "cost": cost,
        "price": round(cost * 1.2, 9),
        "attempts": 1,
        "error": error,
        "verdict": rng.choice(("clean", "clean", "clean", "annotated:pii")) if project == "team-legal" else None,
        "client_ip": f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        "user_agent": rng.choice(USER_AGENTS),
        "trace_id": rng.randbytes(16).hex() if rng.random() < 0.2 else None,
        "history": orjson.dumps([attempt]).decode(),
        "request_body": (orjson.dumps({"model": model, "messages": [
            {"role": "user", "content": " ".join(rng.choices(traffic.vocabulary, k=300))[:1900]}]}).decode()
            if payload else None),
        "response_body": '{"choices":[{"message":{"role":"assistant","content":"ok"}}]}' if payload else None,
    }


def generate(rng: random.Random, traffic: Traffic, rows: int) -> Iterator[list[dict[str, Any]]]:
    """The week's rows in time order, ``CHUNK`` at a time; keeps some of their ids in ``traffic``."""
    times = moments(rng, rows, traffic.end)
    keep = set(rng.sample(range(rows), min(rows, 1000)))
    for start in range(0, rows, CHUNK):
        count = min(CHUNK, rows - start)
        projects = rng.choices(traffic.projects, traffic.project_weights, k=count)
        deployments = rng.choices(traffic.deployments, traffic.deployment_weights, k=count)
        chunk = [entry_row(rng, traffic, times[start + i], projects[i], deployments[i]) for i in range(count)]
        traffic.sample_ids.extend(row["request_id"] for i, row in enumerate(chunk) if start + i in keep)
        yield chunk


def new_entries(rng: random.Random, traffic: Traffic, count: int) -> list[RequestLogEntry]:
    """``count`` entries of now, as the gateway's writer hands them to ``write``."""
    now = time.time()
    entries = []
    for i in range(count):
        project = rng.choices(traffic.projects, traffic.project_weights)[0]
        deployment = rng.choices(traffic.deployments, traffic.deployment_weights)[0]
        row = entry_row(rng, traffic, now + i / 1000, project, deployment)
        row.pop("written_at")
        row["history"] = orjson.loads(row["history"])
        entries.append(RequestLogEntry(**row))
    return entries


# -- filling ----------------------------------------------------------------------------------------

def fill_sqlite(path: Path, chunks: Iterator[list[dict[str, Any]]]) -> None:
    engine = create_engine(f"sqlite:///{path}")
    try:
        statement = insert(request_log)
        for chunk in chunks:
            with engine.begin() as conn:
                conn.execute(statement, chunk)
    finally:
        engine.dispose()


async def fill_postgresql(dsn: str, chunks: Iterator[list[dict[str, Any]]]) -> None:
    columns = [column.name for column in request_log.c]
    conn = await asyncpg.connect(dsn)
    try:
        for chunk in chunks:
            await conn.copy_records_to_table(
                "request_log", records=[tuple(row[name] for name in columns) for row in chunk], columns=columns)
        await conn.execute("ANALYZE request_log")
    finally:
        await conn.close()


# -- the queries ------------------------------------------------------------------------------------

@dataclass(slots=True)
class Query:
    label: str
    filters: RequestFilters | None = None  # a search; None: ``kind`` says which other call
    pages: int = 1  # the page timed: the last of this many
    kind: str = "search"  # "search" | "get" | "written_after"


def queries(fill: Fill) -> list[Query]:
    traffic, counts, rows = fill.traffic, fill.counts, fill.rows
    failures = sum(n for status, n in counts["status"].items() if status >= 400)

    def among_errors(word: str) -> str:
        return f"{fill.words.get(word, 0):,} rows, {100 * fill.words.get(word, 0) / max(failures, 1):.2g} % of errors"

    def share(column: str, value: Any) -> str:
        return f"{100 * counts[column].get(value, 0) / rows:.2g} %"

    big = traffic.projects[0]
    small = traffic.projects[-1]
    key = traffic.keys[traffic.projects[1]][1]
    deployment = traffic.deployments[5]
    provider = min(PROVIDERS, key=lambda name: counts["provider"].get(name, 0))
    window = traffic.end - timedelta(days=3)
    failed_5xx = sum(n for status, n in counts["status"].items() if status >= 500)
    return [
        Query("newest page (no filter)", RequestFilters()),
        Query(f"project = {big} ({share('project', big)})", RequestFilters(project=big)),
        Query(f"project = {small} ({share('project', small)})", RequestFilters(project=small)),
        Query(f"key = one key ({share('key_id', key)})", RequestFilters(key_id=key)),
        Query(f"deployment = {deployment} ({share('deployment', deployment)})",
              RequestFilters(deployment=deployment)),
        Query(f"provider = {provider} ({share('provider', provider)}; no index)", RequestFilters(provider=provider)),
        Query(f"status 5xx ({100 * failed_5xx / rows:.2g} %)", RequestFilters(status=(500, 599))),
        Query(f"status 429 ({share('status', 429)})", RequestFilters(status=(429, 429))),
        Query(f"status 2xx ({share('status', 200)})", RequestFilters(status=(200, 299))),
        Query(f"q = '{RARE_WORD}' ({among_errors(RARE_WORD)})", RequestFilters(q=RARE_WORD)),
        Query(f"q = '{COMMON_WORD}' ({among_errors(COMMON_WORD)})", RequestFilters(q=COMMON_WORD)),
        Query(f"q = '{ABSENT_WORD}' (in no row: all {failures:,} failures read)", RequestFilters(q=ABSENT_WORD)),
        Query("since/until: 1 hour, 3 days ago", RequestFilters(since=window, until=window + timedelta(hours=1))),
        Query(f"project = {big} + status 5xx", RequestFilters(project=big, status=(500, 599))),
        Query(f"newest, page {DEEP_PAGE} (cursor)", RequestFilters(), pages=DEEP_PAGE),
        # Beyond the list: one rare status code, and a text search within the big project.
        Query(f"extra: status {RARE_STATUS}, a rare code ({counts['status'].get(RARE_STATUS, 0):,} rows)",
              RequestFilters(status=(RARE_STATUS, RARE_STATUS))),
        Query(f"extra: project = {big} + q = '{ABSENT_WORD}'", RequestFilters(project=big, q=ABSENT_WORD)),
        Query("get(request_id), a random stored id", kind="get"),
        Query("written_after(end of the week - 10 s)", kind="written_after"),
    ]


async def cursor_before(log: RequestLogRepository, filters: RequestFilters, pages: int) -> str | None:
    """The cursor of page ``pages`` (None for the first), the pages before it followed."""
    cursor: str | None = None
    for _ in range(pages - 1):
        _, cursor = await log.search(filters, PAGE, cursor)
        if cursor is None:
            raise RuntimeError(f"fewer than {pages} pages of {filters}")
    return cursor


def call_of(log: RequestLogRepository, query: Query, traffic: Traffic, rng: random.Random,
            cursor: str | None) -> Callable[[], Awaitable[Any]]:
    if query.kind == "get":
        return lambda: log.get(rng.choice(traffic.sample_ids))
    if query.kind == "written_after":
        moment = traffic.end - timedelta(seconds=10)
        return lambda: log.written_after(moment, RequestFilters())
    filters = query.filters or RequestFilters()
    return lambda: log.search(filters, PAGE, cursor)


async def timed(call: Callable[[], Awaitable[Any]], runs: int) -> tuple[float, float]:
    """The median of ``runs`` calls after one warm-up, and of ``runs`` calls more, in ms."""
    await call()
    spent = []
    for _ in range(2 * runs):
        started = time.perf_counter()
        await call()
        spent.append((time.perf_counter() - started) * 1000)
    return statistics.median(spent[:runs]), statistics.median(spent[runs:])


def statement_of(log: RequestLogRepository, query: Query, traffic: Traffic, cursor: str | None) -> Select[Any]:
    """The SQL a query runs: the repository's own for a search; for ``get`` and ``written_after``,
    the same select as theirs (the repository builds those inline)."""
    t = request_log
    if query.kind == "get":
        return select(t).where(t.c.request_id == traffic.sample_ids[0]).limit(1)
    if query.kind == "written_after":
        moment = traffic.end - timedelta(seconds=10)
        return (select(t).where(t.c.written_at > moment)
                .order_by(t.c.written_at, t.c.created_at, t.c.request_id).limit(1000))
    return log.search_query(query.filters or RequestFilters(), PAGE + 1, cursor)


async def plan(storage: Storage, statement: Select[Any], analyze: bool) -> list[str]:
    """The plan of ``statement`` with its values written into it (PostgreSQL: its custom plan)."""
    dialect = storage.db.engine.dialect
    sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    if storage.dialect == "sqlite":
        explain = "EXPLAIN QUERY PLAN "
    else:
        explain = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
    async with storage.db.read() as conn:
        found = (await conn.execute(text(explain + sql))).all()
    if storage.dialect == "sqlite":
        return [f"{row[0]}/{row[1]}: {row[3]}" for row in found]  # id/parent: detail
    return [str(row[0]) for row in found]


async def generic_plan(storage: Storage, statement: Select[Any], analyze: bool) -> list[str]:
    """PostgreSQL's generic plan of ``statement``: the one a connection's prepared statement (asyncpg
    keeps them) runs from its sixth execution on, when the planner costs it below the custom ones.
    Its values stay parameters ($1, ...), as the gateway sends them; EXPLAIN EXECUTE shows it."""
    dialect = storage.db.engine.dialect
    compiled = statement.compile(dialect=dialect)
    values = [str(literal(compiled.params[name], compiled.binds[name].type)
                  .compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
              for name in compiled.positiontup or []]
    explain = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
    async with storage.db.read() as conn:
        raw: Any = (await conn.get_raw_connection()).driver_connection  # asyncpg's, for PREPARE
        await raw.execute(f"SET plan_cache_mode = force_generic_plan; PREPARE mg_bench_plan AS {compiled}")
        try:
            found = await raw.fetch(f"{explain}EXECUTE mg_bench_plan({', '.join(values)})")
        finally:
            await raw.execute("DEALLOCATE mg_bench_plan; RESET plan_cache_mode")
    return [str(row[0]) for row in found]


# -- one database ----------------------------------------------------------------------------------

@dataclass(slots=True)
class Result:
    fill_s: float = 0.0
    ms: dict[str, float] = field(default_factory=dict)  # median of the runs after the warm-up
    later_ms: dict[str, float] = field(default_factory=dict)  # median of the runs after those
    plans: dict[str, list[str]] = field(default_factory=dict)
    generic_plans: dict[str, list[str]] = field(default_factory=dict)  # PostgreSQL
    batch_ms: list[float] = field(default_factory=list)
    size_bytes: int = 0
    parts: dict[str, int] = field(default_factory=dict)  # table and each index: bytes


@dataclass(slots=True)
class Fill:
    """The rows to fill a database with, counted as they pass by the columns the queries filter on."""

    traffic: Traffic
    rows: int
    seed: int
    counts: dict[str, dict[Any, int]] = field(default_factory=dict)
    words: dict[str, int] = field(default_factory=dict)  # rows whose error holds each word of ``q``

    def chunks(self) -> Iterator[list[dict[str, Any]]]:
        # The same rows on each database: the same seed, generated again.
        self.traffic.sample_ids.clear()
        self.counts = {name: {} for name in ("project", "key_id", "deployment", "provider", "status")}
        self.words = {}
        for chunk in generate(random.Random(self.seed), self.traffic, self.rows):
            for row in chunk:
                for column, values in self.counts.items():
                    values[row[column]] = values.get(row[column], 0) + 1
                if row["error"] is not None:
                    for word in (RARE_WORD, COMMON_WORD):
                        self.words[word] = self.words.get(word, 0) + (word in row["error"])
            yield chunk


async def measure(storage: Storage, fill: Fill, args: argparse.Namespace, result: Result) -> None:
    """Time the queries on the filled table, then the writes; the plans with ``--plans``."""
    log = storage.request_log
    traffic = fill.traffic
    rng = random.Random(args.seed + 1)
    for query in queries(fill):
        cursor = await cursor_before(log, query.filters, query.pages) if query.filters is not None else None
        # A new connection for each query: no statement of it prepared (asyncpg, pysqlite) yet.
        await storage.db.engine.dispose()
        result.ms[query.label], result.later_ms[query.label] = await timed(
            call_of(log, query, traffic, rng, cursor), args.runs)
        if args.plans:
            statement = statement_of(log, query, traffic, cursor)
            result.plans[query.label] = await plan(storage, statement, args.analyze)
            if storage.dialect == "postgresql":
                result.generic_plans[query.label] = await generic_plan(storage, statement, args.analyze)
    for _ in range(WRITE_BATCHES):
        batch = new_entries(rng, traffic, WRITE_BATCH)
        started = time.perf_counter()
        written = await log.write(batch)
        result.batch_ms.append((time.perf_counter() - started) * 1000)
        assert written == WRITE_BATCH, written


async def run_sqlite(fill: Fill, args: argparse.Namespace) -> Result:
    result = Result()
    with tempfile.TemporaryDirectory(prefix="mg-bench-") as folder:
        path = Path(folder) / "request_log.db"
        storage = await Storage.open(f"sqlite:///{path}")
        try:
            await storage.upgrade()  # the schema, in WAL mode as the gateway opens it
            await storage.db.close()
            started = time.perf_counter()
            fill_sqlite(path, fill.chunks())
            result.fill_s = time.perf_counter() - started
            await measure(storage, fill, args, result)
        finally:
            await storage.close()
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            result.size_bytes = path.stat().st_size
            with contextlib.suppress(sqlite3.OperationalError):  # built without SQLITE_ENABLE_DBSTAT_VTAB
                result.parts = dict(conn.execute(
                    "SELECT name, SUM(pgsize) FROM dbstat WHERE name = 'request_log' OR name IN "
                    "(SELECT name FROM sqlite_master WHERE tbl_name = 'request_log' AND type = 'index') "
                    "GROUP BY name").fetchall())
    return result


async def run_postgresql(fill: Fill, args: argparse.Namespace) -> Result:
    result = Result()
    url = make_url(args.pg_url)
    name = f"mg_bench_{secrets.token_hex(4)}"
    bench_url = url.set(database=name).render_as_string(hide_password=False)
    admin = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        storage = await Storage.open(bench_url)
        try:
            await storage.upgrade()
            started = time.perf_counter()
            await fill_postgresql(url.set(drivername="postgresql", database=name)
                                  .render_as_string(hide_password=False), fill.chunks())
            result.fill_s = time.perf_counter() - started
            await measure(storage, fill, args, result)
            async with storage.db.read() as conn:
                result.size_bytes = (await conn.execute(text(
                    "SELECT pg_total_relation_size('request_log')"))).scalar_one()
                parts = await conn.execute(text(
                    "SELECT 'request_log (heap + TOAST)', pg_table_size('request_log') UNION ALL "
                    "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
                    "WHERE indrelid = 'request_log'::regclass"))
                result.parts = {str(row[0]): int(row[1]) for row in parts}
        finally:
            await storage.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return result


# -- the report -------------------------------------------------------------------------------------

def mb(size: int) -> str:
    return f"{size / 2**20:,.1f} MB"


def report(results: dict[str, Result], rows: int, runs: int) -> None:
    names = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
    labels = list(dict.fromkeys(label for result in results.values() for label in result.ms))

    def cell(result: Result | None, label: str, later: bool = False) -> str:
        found = (result.later_ms if later else result.ms) if result is not None else {}
        return f"{found[label]:.2f}" if label in found else "-"

    sqlite_result, pg_result = results.get("sqlite"), results.get("postgresql")
    print(f"\n## Request log at {rows:,} rows: ms, a page of {PAGE}\n")
    print(f"Each query on a new connection: the median of runs 2 to {runs + 1} (after a warm-up), then of "
          f"runs {runs + 2} to {2 * runs + 1}, when PostgreSQL may have swapped the custom plans of the "
          "prepared statement for its generic plan (see --plans).\n")
    print(f"| query | SQLite ms | PostgreSQL ms | SQLite ms, runs {runs + 2}-{2 * runs + 1} "
          f"| PostgreSQL ms, runs {runs + 2}-{2 * runs + 1} |")
    print("|---|---:|---:|---:|---:|")
    for label in labels:
        print(f"| {label} | {cell(sqlite_result, label)} | {cell(pg_result, label)} "
              f"| {cell(sqlite_result, label, True)} | {cell(pg_result, label, True)} |")
    print(f"\n## Filling; writing {WRITE_BATCHES} batches of {WRITE_BATCH} into the full table; size\n")
    print("| database | fill (bulk) s | write ms per batch (median) | slowest batch ms | write rows/s | "
          "table + indexes |")
    print("|---|---:|---:|---:|---:|---:|")
    for dialect, result in results.items():
        median = statistics.median(result.batch_ms)
        rate = WRITE_BATCH * len(result.batch_ms) / (sum(result.batch_ms) / 1000)
        print(f"| {names[dialect]} | {result.fill_s:.1f} | {median:.1f} | {max(result.batch_ms):.1f} | "
              f"{rate:,.0f} | {mb(result.size_bytes)} |")
    for dialect, result in results.items():
        if result.parts:
            detail = "the file" if dialect == "sqlite" else "pg_total_relation_size"
            print(f"\n{names[dialect]} ({detail}: {mb(result.size_bytes)}), by part:\n")
            for part, size in sorted(result.parts.items(), key=lambda item: -item[1]):
                print(f"- {part}: {mb(size)}")
    for dialect, result in results.items():
        if result.plans:
            print(f"\n## Plans, {names[dialect]}\n")
            for label, lines in result.plans.items():
                if dialect == "sqlite":
                    print(f"{label}\n```\n" + "\n".join(lines) + "\n```")
                    continue
                generic = result.generic_plans.get(label, [])
                print(f"{label}: custom plan (values written in)\n```\n" + "\n".join(lines) + "\n```")
                print("generic plan (values as parameters)\n```\n" + "\n".join(generic) + "\n```")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each query, after one warm-up")
    parser.add_argument("--plans", action="store_true", help="print each query's plan")
    parser.add_argument("--analyze", action="store_true",
                        help="with --plans: EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="a PostgreSQL database to connect to; the run creates and drops its own beside it")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    end = datetime.now(UTC).replace(microsecond=0)
    fill = Fill(make_traffic(random.Random(args.seed), end), args.rows, args.seed)
    results: dict[str, Result] = {}
    for dialect in [args.only] if args.only else ["sqlite", "postgresql"]:
        runner = run_sqlite if dialect == "sqlite" else run_postgresql
        results[dialect] = await runner(fill, args)
        print(f"{dialect}: filled {args.rows:,} rows in {results[dialect].fill_s:.1f} s, queries timed", flush=True)
    report(results, args.rows, args.runs)


if __name__ == "__main__":
    asyncio.run(main())

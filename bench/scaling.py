"""What grows with the data: start-up, idle memory, CPU per request, reports, key changes, the
budget spend sync and usage writes, at three sizes of installation, on SQLite and PostgreSQL.

    python bench/scaling.py build --out /tmp/mg-scale [--sizes small,medium,large]
    PYTHONPATH=<checkout>/src python bench/scaling.py measure --data /tmp/mg-scale --label after \\
        --out bench/results/scaling-after.json
    python bench/scaling.py table bench/results/scaling-before.json bench/results/scaling-after.json

``build`` writes each size once, in the schema of the first migration, which every version of
modelgate can upgrade: a SQLite file and a PostgreSQL database (``--postgres``, the server's
admin URL; the database ``mg_scale_<size>`` is the template that measuring copies), and a config
file. Rows are generated in bulk (``executemany`` on SQLite, ``COPY`` on PostgreSQL):

    size     deployments  keys (projects)    usage rows (last 30 days)
    small    10           10 (1)             10,000
    medium   1,000        10,000 (1,000)     100,000
    large    10,000       100,000 (10,000)   1,000,000

Each deployment has two targets on two of 20 providers, all served by the stand-in upstream
(bench/standin.py). Usage comes from up to 2,000 active keys, each calling one to three of up to
500 active deployments, 2 % of the requests failed.

``measure`` runs the modelgate found on ``PYTHONPATH`` against copies of that data: upgrade
(`modelgate db upgrade`: the migration an existing installation runs once), then `modelgate
serve` started three times on SQLite and twice on PostgreSQL. The first start parses a config it
has not seen and records the price of every target in a new database; the start-up figure is the
median of the later ones (a restart). On the running server: resident memory after 3 s idle,
``GET /v1/models``, the usage report grouped by project and deployment, the provider statements
(both over all time) and this month by day, creating keys one at a time, and server CPU per
request (2,000 chat completions, concurrency 8, each with one of the project keys). In-process:
the budget spend sync (the four queries it makes) and writing 10,000 usage records in batches of
500, each record of another key (the day totals' worst case).

Run ``measure`` for the two versions back to back on the same machine; the figures are medians
of a few tries, never a pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure

SIZES: dict[str, dict[str, int]] = {
    "small": {"deployments": 10, "keys": 10, "rows": 10_000},
    "medium": {"deployments": 1_000, "keys": 10_000, "rows": 100_000},
    "large": {"deployments": 10_000, "keys": 100_000, "rows": 1_000_000},
}
PROVIDERS = 20
KEYS_PER_PROJECT = 10
ACTIVE_KEYS = 2_000
ACTIVE_DEPLOYMENTS = 500
DAYS = 30
MASTER = "mg-scale-master"
POSTGRES = os.environ.get("MODELGATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
TOKENS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "output_tokens")
USAGE_COLUMNS = ("request_id", "created_at", "project", "key_id", "deployment", "provider", "model", "route",
                 *TOKENS, "cost", "price", "latency_ms", "ttft_ms", "status", "attempts", "error")
REQUESTS = 2_000
CONCURRENCY = 8


def key_text(i: int) -> str:
    return f"mg-scale-{i:08d}"


def key_id(i: int) -> str:
    return f"key_{i:016x}"


def project(i: int) -> str:
    return f"proj-{i // KEYS_PER_PROJECT:05d}"


def deployment(i: int) -> str:
    return f"dep-{i:05d}"


def targets(i: int) -> list[tuple[str, str]]:
    return [(f"p{i % PROVIDERS:02d}", f"model-{i % 50}"), (f"p{(i + 1) % PROVIDERS:02d}", f"model-{(i + 1) % 50}")]


# -- build ------------------------------------------------------------------------------------

def write_config(path: Path, deployments: int) -> None:
    lines = ["master_key: " + MASTER, "database_url: ${SCALE_DATABASE_URL}", "journal_dir: ${SCALE_JOURNAL}",
             "providers:"]
    lines += [f"  p{p:02d}: {{type: openai, base_url: \"${{SCALE_UPSTREAM}}\", api_key: bench}}"
              for p in range(PROVIDERS)]
    lines.append("deployments:")
    for i in range(deployments):
        body = ", ".join(f"{{provider: {p}, model: {m}, input_price: 2.5, output_price: 10}}" for p, m in targets(i))
        lines.append(f"  - {{name: {deployment(i)}, targets: [{body}]}}")
    path.write_text("\n".join(lines) + "\n")


def usage_rows(size: dict[str, int], now: datetime, seed: int = 11) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    active_keys = min(size["keys"], ACTIVE_KEYS)
    active_deployments = min(size["deployments"], ACTIVE_DEPLOYMENTS)
    uses = [rng.sample(range(active_deployments), min(active_deployments, rng.randint(1, 3)))
            for _ in range(active_keys)]
    start = now - timedelta(days=DAYS)
    span = DAYS * 86400.0
    rows = []
    for _ in range(size["rows"]):
        k = rng.randrange(active_keys)
        d = rng.choice(uses[k])
        provider, model = targets(d)[0]
        status = 200 if rng.random() < 0.98 else rng.choice((429, 500, 502))
        tokens_in, tokens_out = rng.randint(10, 4000), rng.randint(1, 1000) if status == 200 else 0
        cost = (tokens_in * 2.5 + tokens_out * 10) / 1e6
        rows.append((
            "req_" + secrets.token_hex(12), start + timedelta(seconds=rng.random() * span), project(k), key_id(k),
            deployment(d), provider, model, "chat", tokens_in, 0, 0, 0, tokens_out, cost, cost * 1.2,
            rng.uniform(200, 3000), None, status, 1, None if status == 200 else f"upstream answered {status}"))
    return rows


def key_rows(count: int, now: datetime) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    keys = [(key_id(i), project(i), hashlib.sha256(key_text(i).encode()).hexdigest(), key_text(i)[:10], None,
             None, None, None, None, "month", None, now, None, i + 1) for i in range(count)]
    projects = sorted({project(i) for i in range(count)})
    return keys, [(name, None, None, None, None, "month", now, 0) for name in projects]


async def first_migration(url: str) -> None:
    """The schema of migration 001, as `modelgate db upgrade` of the first release made it."""
    from sqlalchemy import insert

    from modelgate.storage import Storage
    from modelgate.storage.migrations import MIGRATIONS
    from modelgate.storage.tables import schema_migrations

    storage = await Storage.open(url)
    try:
        name, migration = MIGRATIONS[0]
        async with storage.db.write() as conn:
            await conn.run_sync(lambda sync: schema_migrations.create(sync))
            await conn.run_sync(migration)
            await conn.execute(insert(schema_migrations).values(name=name, applied_at=datetime.now(UTC)))
    finally:
        await storage.close()


def sqlite_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def fill_sqlite(path: Path, keys: list[tuple[Any, ...]], projects: list[tuple[Any, ...]],
                rows: list[tuple[Any, ...]]) -> None:
    db = sqlite3.connect(path)
    try:
        db.execute("BEGIN")
        db.executemany("INSERT INTO projects (name, deployments, rpm, tpm, budget, budget_period, created_at, "
                       "revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       [(*p[:6], sqlite_text(p[6]), p[7]) for p in projects])
        db.executemany("INSERT INTO api_keys (id, project, key_hash, prefix, name, deployments, rpm, tpm, budget, "
                       "budget_period, expires_at, created_at, revoked_at, revision) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [(*k[:11], sqlite_text(k[11]), None, k[13]) for k in keys])
        db.execute("UPDATE counters SET value = ? WHERE name = 'key_revision'", (len(keys),))
        columns = ", ".join(f'"{c}"' for c in USAGE_COLUMNS)
        db.executemany(f"INSERT INTO usage ({columns}) VALUES ({', '.join('?' * len(USAGE_COLUMNS))})",
                       ((r[0], sqlite_text(r[1]), *r[2:]) for r in rows))
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the file alone is copied to measure
    finally:
        db.close()


async def fill_postgres(url: str, keys: list[tuple[Any, ...]], projects: list[tuple[Any, ...]],
                        rows: list[tuple[Any, ...]]) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table("projects", records=projects, columns=[
            "name", "deployments", "rpm", "tpm", "budget", "budget_period", "created_at", "revision"])
        await conn.copy_records_to_table("api_keys", records=keys, columns=[
            "id", "project", "key_hash", "prefix", "name", "deployments", "rpm", "tpm", "budget", "budget_period",
            "expires_at", "created_at", "revoked_at", "revision"])
        await conn.execute("UPDATE counters SET value = $1 WHERE name = 'key_revision'", len(keys))
        await conn.copy_records_to_table("usage", records=rows, columns=list(USAGE_COLUMNS))
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def admin_sql(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def database_url(server: str, name: str) -> str:
    return server.rsplit("/", 1)[0] + "/" + name


async def build(out: Path, sizes: list[str], postgres: str) -> None:
    now = datetime.now(UTC)
    for name in sizes:
        size = SIZES[name]
        started = time.perf_counter()
        write_config(out / f"{name}.yaml", size["deployments"])
        rows = usage_rows(size, now)
        keys, projects = key_rows(size["keys"], now)
        path = out / f"{name}.db"
        path.unlink(missing_ok=True)
        await first_migration(f"sqlite:///{path}")
        fill_sqlite(path, keys, projects, rows)
        template = f"mg_scale_{name}"
        await admin_sql(postgres, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
        await admin_sql(postgres, f'CREATE DATABASE "{template}"')
        await first_migration(database_url(postgres, template))
        await fill_postgres(database_url(postgres, template), keys, projects, rows)
        print(f"{name}: {size} built in {time.perf_counter() - started:.0f}s", flush=True)
    (out / "built.json").write_text(json.dumps({"at": now.isoformat(), "sizes": sizes}))


# -- measure ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def modelgate(*args: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "modelgate", *args], env={**os.environ, **env}, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


async def timed(what: Callable[[], Awaitable[Any]], tries: int) -> float:
    """Median milliseconds of ``tries`` runs."""
    times = []
    for _ in range(tries):
        started = time.perf_counter()
        await what()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


class Server:
    def __init__(self, config: Path, env: dict[str, str], logs: Path, name: str) -> None:
        self.config, self.env, self.logs, self.name = config, env, logs, name
        self.port = free_port()
        self.process: measure.Process | None = None

    async def start(self) -> float:
        self.process = measure.start(self.name, [sys.executable, "-m", "modelgate", "serve", "--config",
                                                 str(self.config), "--port", str(self.port),
                                                 "--log-level", "warning"],
                                     core=None, log_dir=self.logs, env=self.env)
        return await measure.wait_ready(self.process, self.port, "/health", timeout_s=300)

    def stop(self) -> None:
        if self.process is not None:
            measure.stop(self.process, grace_s=30)
            self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def requests_cpu(server: Server, size: dict[str, int]) -> dict[str, float]:
    assert server.process is not None
    rng = random.Random(5)
    active = min(size["keys"], ACTIVE_KEYS)
    body = {"messages": [{"role": "user", "content": "Say hello in five words."}], "max_tokens": 20}

    async def one(client: httpx.AsyncClient, i: int) -> None:
        k = rng.randrange(active)
        d = rng.randrange(min(size["deployments"], ACTIVE_DEPLOYMENTS))
        answer = await client.post("/v1/chat/completions", json={**body, "model": deployment(d)},
                                   headers={"authorization": f"Bearer {key_text(k)}"})
        if answer.status_code != 200:
            raise RuntimeError(f"request {i}: {answer.status_code} {answer.text[:300]}")

    async def run(count: int) -> None:
        queue = iter(range(count))
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            async def worker() -> None:
                for i in queue:
                    await one(client, i)
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    await run(200)  # warm: connections, caches, the first records written
    with measure.CpuMeter(server.process.pid) as meter:
        started = time.perf_counter()
        await run(REQUESTS)
        wall = time.perf_counter() - started
    return {"cpu_ms_per_request": round(meter.seconds * 1000 / REQUESTS, 3),
            "requests_per_s": round(REQUESTS / wall, 1)}


async def http_figures(server: Server, tries: int) -> dict[str, Any]:
    admin = {"authorization": f"Bearer {MASTER}"}
    figures: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=server.url, timeout=600, headers=admin) as client:
        async def get(path: str) -> httpx.Response:
            answer = await client.get(path)
            answer.raise_for_status()
            return answer

        figures["models_bytes"] = len((await get("/v1/models")).content)
        figures["models_ms"] = await timed(lambda: get("/v1/models"), 20)
        figures["report_ms"] = await timed(lambda: get("/admin/usage?group_by=project,deployment"), tries)
        figures["statements_ms"] = await timed(lambda: get("/admin/statements"), tries)
        month = datetime.now(UTC).strftime("%Y-%m")
        figures["report_month_by_day_ms"] = await timed(lambda: get(f"/admin/usage?group_by=day&period={month}"),
                                                        tries)
    return figures


async def key_changes(server: Server, count: int = 20) -> float:
    """Median ms to create one key (written, then applied by the gateway's key cache)."""
    admin = {"authorization": f"Bearer {MASTER}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=60, headers=admin) as client:
        async def create() -> None:
            answer = await client.post("/admin/keys", json={"project": "proj-00000"})
            answer.raise_for_status()
        return await timed(create, count)


async def in_process(url: str, tries: int) -> dict[str, float]:
    from modelgate.budgets import LocalLedger, SpendSync
    from modelgate.storage import Storage, UsageRecord

    storage = await Storage.open(url)
    try:
        sync = SpendSync(storage, LocalLedger())
        sync_ms = await timed(sync.sync, tries)
        now = datetime.now(UTC)
        batches = [[UsageRecord(request_id="req_" + secrets.token_hex(12), created_at=now, project=project(k),
                                key_id=key_id(k), deployment=deployment(k % 10), provider="p00", model="model-0",
                                route="chat", input_tokens=100, output_tokens=20, cost=0.001, price=0.0012)
                    for k in range(500)] for _ in range(20)]
        started = time.perf_counter()
        for batch in batches:
            await storage.write_usage(batch)
        rows_per_s = 10_000 / (time.perf_counter() - started)
        return {"sync_ms": sync_ms, "write_rows_per_s": round(rows_per_s)}
    finally:
        await storage.close()


def rss_mb(server: Server) -> float:
    assert server.process is not None
    return round(measure.rss_bytes(server.process.pid) / 2**20, 1)


async def measure_size(name: str, data: Path, work: Path, postgres: str, label: str, upstream: str) -> dict[str, Any]:
    size = SIZES[name]
    result: dict[str, Any] = {"size": name, **size}
    config = data / f"{name}.yaml"
    logs = work / "logs"
    tries = 5
    # SQLite
    path = work / f"{name}-{label}.db"
    shutil.copy(data / f"{name}.db", path)
    sqlite_url = f"sqlite:///{path}"
    env = {"SCALE_DATABASE_URL": sqlite_url, "SCALE_UPSTREAM": upstream, "SCALE_JOURNAL": str(work / "journal"),
           "MODELGATE_CACHE_DIR": str(work / "cache")}
    result["sqlite_upgrade_s"] = round(modelgate("db", "upgrade", "--config", str(config), env=env), 2)
    server = Server(config, env, logs, f"{name}-{label}-sqlite")
    starts = []
    try:
        for attempt in range(3):
            if attempt:
                server.stop()
            else:  # the first start sees the config for the first time
                shutil.rmtree(work / "cache", ignore_errors=True)
            starts.append(round(await server.start(), 2))
        result["sqlite_first_start_s"] = starts[0]
        result["sqlite_start_s"] = round(statistics.median(starts[1:]), 2)
        await asyncio.sleep(3)
        result["idle_rss_mb"] = rss_mb(server)
        result.update({f"sqlite_{k}": v for k, v in (await http_figures(server, tries)).items()})
        result["key_create_ms"] = await key_changes(server)
        result.update(await requests_cpu(server, size))
        result["rss_after_requests_mb"] = rss_mb(server)
    finally:
        server.stop()
    result.update({f"sqlite_{k}": v for k, v in (await in_process(sqlite_url, 3)).items()})
    path.unlink(missing_ok=True)
    # PostgreSQL
    database = f"mg_scale_{name}_{label}"
    pg_url = database_url(postgres, database)
    await admin_sql(postgres, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    await admin_sql(postgres, f'CREATE DATABASE "{database}" TEMPLATE "mg_scale_{name}"')
    try:
        env = {**env, "SCALE_DATABASE_URL": pg_url}
        result["postgres_upgrade_s"] = round(modelgate("db", "upgrade", "--config", str(config), env=env), 2)
        server = Server(config, env, logs, f"{name}-{label}-postgres")
        try:
            starts = []
            for attempt in range(2):
                if attempt:
                    server.stop()
                else:
                    shutil.rmtree(work / "cache", ignore_errors=True)
                starts.append(round(await server.start(), 2))
            result["postgres_first_start_s"], result["postgres_start_s"] = starts
            figures = await http_figures(server, tries)
            result.update({f"postgres_{k}": v for k, v in figures.items() if not k.startswith("models")})
        finally:
            server.stop()
        result.update({f"postgres_{k}": v for k, v in (await in_process(pg_url, 3)).items()})
    finally:
        await admin_sql(postgres, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    print(json.dumps(result), flush=True)
    return result


async def measure_all(data: Path, label: str, sizes: list[str], postgres: str) -> dict[str, Any]:
    import modelgate

    measure.compile_bytecode()
    work = data / f"work-{label}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    standin = measure.start("standin", [sys.executable, str(Path(__file__).parent / "standin.py"), "--port",
                                        str(port := free_port()), "--mode", "instant"],
                            core=None, log_dir=work / "logs")
    try:
        await measure.wait_ready(standin, port, "/health")
        results = {"label": label, "modelgate": str(Path(modelgate.__file__).parent),
                   "at": datetime.now(UTC).isoformat(), "load_before": os.getloadavg(),
                   "sizes": [await measure_size(name, data, work, postgres, label, f"http://127.0.0.1:{port}/v1")
                             for name in sizes]}
        results["load_after"] = os.getloadavg()
    finally:
        measure.stop(standin)
    return results


# -- table ------------------------------------------------------------------------------------

ROWS = [
    ("start-up, SQLite (s)", "sqlite_start_s"),
    ("start-up, PostgreSQL (s)", "postgres_start_s"),
    ("first start, SQLite: a config not seen before, prices recorded (s)", "sqlite_first_start_s"),
    ("idle memory after start-up (MB RSS)", "idle_rss_mb"),
    ("server CPU per request (ms)", "cpu_ms_per_request"),
    ("`GET /v1/models` (ms)", "sqlite_models_ms"),
    ("usage by project and deployment, SQLite (ms)", "sqlite_report_ms"),
    ("usage by project and deployment, PostgreSQL (ms)", "postgres_report_ms"),
    ("statements, SQLite (ms)", "sqlite_statements_ms"),
    ("statements, PostgreSQL (ms)", "postgres_statements_ms"),
    ("this month by day, SQLite (ms)", "sqlite_report_month_by_day_ms"),
    ("budget spend sync, SQLite (ms)", "sqlite_sync_ms"),
    ("budget spend sync, PostgreSQL (ms)", "postgres_sync_ms"),
    ("creating one key (ms)", "key_create_ms"),
    ("usage writes, SQLite (rows/s)", "sqlite_write_rows_per_s"),
    ("usage writes, PostgreSQL (rows/s)", "postgres_write_rows_per_s"),
    ("`db upgrade`, SQLite (s, once)", "sqlite_upgrade_s"),
    ("`db upgrade`, PostgreSQL (s, once)", "postgres_upgrade_s"),
]


def table(before: dict[str, Any], after: dict[str, Any]) -> str:
    sizes = [s["size"] for s in after["sizes"]]
    by = {label: {s["size"]: s for s in run["sizes"]} for label, run in (("before", before), ("after", after))}
    head = "| | " + " | ".join(
        f"{s}: {SIZES[s]['deployments']:,} deployments, {SIZES[s]['keys']:,} keys, {SIZES[s]['rows']:,} rows"
        for s in sizes) + " |"
    lines = [head, "|---|" + "---|" * len(sizes)]
    for title, field in ROWS:
        cells = []
        for s in sizes:
            old, new = by["before"].get(s, {}).get(field), by["after"].get(s, {}).get(field)
            cells.append(f"{_shown(old)} → {_shown(new)}")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value >= 100:
        return f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build")
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--sizes", default="small,medium,large")
    make.add_argument("--postgres", default=POSTGRES)
    run = commands.add_parser("measure")
    run.add_argument("--data", type=Path, required=True)
    run.add_argument("--label", required=True)
    run.add_argument("--sizes", default="small,medium,large")
    run.add_argument("--postgres", default=POSTGRES)
    run.add_argument("--out", type=Path, required=True)
    show = commands.add_parser("table")
    show.add_argument("before", type=Path)
    show.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "build":
        args.out.mkdir(parents=True, exist_ok=True)
        asyncio.run(build(args.out, args.sizes.split(","), args.postgres))
    elif args.command == "measure":
        results = asyncio.run(measure_all(args.data, args.label, args.sizes.split(","), args.postgres))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    else:
        print(table(json.loads(args.before.read_text()), json.loads(args.after.read_text())))


if __name__ == "__main__":
    main()

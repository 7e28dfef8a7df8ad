"""The ``modelgate`` commands that work on the database: db, keys, usage, statements, logs.

Imports of the storage layer wait until a command runs, so `modelgate --help` stays quick.

Each reads the gateway's config file for ``database_url`` (and ``redis_url``, to tell running
gateways about key changes at once) and the deployment names. Output for people by default;
``--json`` prints the admin API's JSON and ``--csv`` its CSV.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from modelgate.schema.errors import GatewayError

if TYPE_CHECKING:
    from modelgate.config.settings import Settings
    from modelgate.redis_client import RedisClient
    from modelgate.storage import Storage

Loader = Callable[[str], "Settings"]
DEFAULT_CONFIG = "modelgate.yaml"
ANNOUNCE_REDIS_TIMEOUT_S = 2.0  # a command, not a request: it may wait on Redis longer than the gateway


def add_admin_commands(commands: Any, load: Loader) -> None:
    """Add the commands to the ``modelgate`` parser's subparsers; each sets ``args.handler``."""
    def command(name: str, help: str, run: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]],
                parent: Any = commands) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help)
        parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"config file (default: {DEFAULT_CONFIG})")
        parser.set_defaults(handler=lambda args: _run(run, args, load))
        return parser

    db = commands.add_parser("db", help="the database: migrations").add_subparsers(
        dest="db_command", metavar="COMMAND", required=True)
    command("upgrade", "apply the pending migrations", _db_upgrade, db)
    command("status", "list applied and pending migrations (exit 1 if any is pending)", _db_status, db)

    keys = commands.add_parser("keys", help="project keys: create, list, revoke").add_subparsers(
        dest="keys_command", metavar="COMMAND", required=True)
    create = command("create", "create a key (the project is created if new); prints it once", _keys_create, keys)
    create.add_argument("--project", required=True)
    create.add_argument("--name", help="a label for the key")
    create.add_argument("--deployments", help="comma-separated deployments it may call (default: all)")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--budget", type=float, help="USD per budget period")
    create.add_argument("--budget-period", choices=["day", "month"])
    create.add_argument("--expires", help="ISO date (midnight UTC) or date-time")
    create.add_argument("--json", action="store_true", help='print {"id", "key", "project", ...}')
    listing = command("list", "list the keys (never their secrets)", _keys_list, keys)
    listing.add_argument("--project")
    listing.add_argument("--all", action="store_true", help="revoked keys too")
    listing.add_argument("--json", action="store_true")
    revoke = command("revoke", "revoke a key: it stops working on every gateway at once", _keys_revoke, keys)
    revoke.add_argument("id", help="the key's id (key_...), from `modelgate keys list`")

    usage = command("usage", "usage totals with cost, revenue and margin", _usage)
    _filter_flags(usage)
    usage.add_argument("--project")
    usage.add_argument("--key", help="a key id")
    usage.add_argument("--deployment")
    usage.add_argument("--model", help="an upstream model id")
    usage.add_argument("--group-by",
                       help="comma-separated: project, key, deployment, provider, model, day, verdict, cache_hit")
    statements = command("statements", "what is owed to each provider for a period", _statements)
    _filter_flags(statements)

    logs = command("logs", "recent requests from the request log; --follow tails new ones", _logs)
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing requests as they are logged")
    logs.add_argument("--status", help="a status code (429) or class (5xx)")
    logs.add_argument("--deployment")
    logs.add_argument("--project")
    logs.add_argument("--key", help="a key id")
    logs.add_argument("--provider")
    logs.add_argument("--since", help="ISO date or date-time, inclusive (UTC)")
    logs.add_argument("--until", help="ISO date or date-time, exclusive (UTC)")
    logs.add_argument("--q", help="text in the error message")
    logs.add_argument("--limit", default="20", help="how many recent requests to print first (default 20)")
    logs.add_argument("--json", action="store_true", help="one JSON object per line, as GET /admin/requests")


def _filter_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--provider")
    parser.add_argument("--since", help="ISO date or date-time, inclusive (UTC)")
    parser.add_argument("--until", help="ISO date or date-time, exclusive (UTC)")
    parser.add_argument("--period", help="a month (2030-01) or day (2030-01-31) instead of --since/--until")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true")
    output.add_argument("--csv", action="store_true")


def _run(run: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]], args: argparse.Namespace,
         load: Loader) -> int:
    from modelgate.storage import StorageError

    settings = load(args.config)
    try:
        return asyncio.run(run(args, settings))
    except KeyboardInterrupt:  # how `modelgate logs --follow` is stopped
        return 130
    except (GatewayError, StorageError) as error:
        print(f"modelgate: {getattr(error, 'message', None) or error}", file=sys.stderr)
        return 2 if isinstance(error, GatewayError) and error.status == 400 else 1


async def _open(settings: Settings) -> Storage:
    from modelgate.storage import Storage

    return await Storage.open_prepared(settings.database_url)


# -- db ----------------------------------------------------------------------------------------

async def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from modelgate.storage import Storage

    storage = await Storage.open(settings.database_url)
    try:
        applied = await storage.upgrade()
    finally:
        await storage.close()
    for name in applied:
        print(f"applied {name}")
    print(f"{storage!r} is up to date" if applied else f"{storage!r} was up to date")
    return 0


async def _db_status(args: argparse.Namespace, settings: Settings) -> int:
    from modelgate.storage import Storage

    storage = await Storage.open(settings.database_url)
    try:
        applied = await storage.applied_migrations()
        pending = await storage.pending_migrations()
    finally:
        await storage.close()
    for name in applied:
        print(f"applied  {name}")
    for name in pending:
        print(f"pending  {name}")
    if pending:
        print("run `modelgate db upgrade` to apply the pending migrations", file=sys.stderr)
    return 1 if pending else 0


# -- keys --------------------------------------------------------------------------------------

async def _keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from modelgate.auth.keyadmin import parse_key_spec
    from modelgate.surfaces.admin.wire import issued_key_json

    body: dict[str, Any] = {"project": args.project}
    for name in ("name", "rpm", "tpm", "budget", "budget_period", "expires"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    if args.deployments is not None:
        body["deployments"] = [d.strip() for d in args.deployments.split(",") if d.strip()]
    spec = parse_key_spec(body, list(settings.deployments))
    async with _KeyAdmin(settings) as admin:
        issued = await admin.create_key(spec)
    if args.json:
        print(orjson.dumps(issued_key_json(issued)).decode())
    else:
        print(f"created {issued.record.id} in project {issued.record.project}; the key, shown this once:",
              file=sys.stderr)
        print(issued.key)
    return 0


async def _keys_list(args: argparse.Namespace, settings: Settings) -> int:
    from modelgate.surfaces.admin.wire import key_json, text_param

    project = text_param(args.project, "project") if args.project is not None else None
    storage = await _open(settings)
    try:
        found = await storage.keys.list_keys(project, include_revoked=args.all)
    finally:
        await storage.close()
    rows = [key_json(record) for record in found]
    if args.json:
        print(orjson.dumps({"object": "list", "data": rows}).decode())
        return 0
    table = [("ID", "PROJECT", "PREFIX", "DEPLOYMENTS", "RPM", "TPM", "BUDGET", "EXPIRES", "STATUS")]
    for row in rows:
        budget = f"{row['budget']:g}/{row['budget_period']}" if row["budget"] is not None else "-"
        table.append((row["id"], row["project"], row["prefix"] + "...", ",".join(row["deployments"] or ["*"]),
                      _cell(row["rpm"]), _cell(row["tpm"]), budget, _cell(row["expires_at"]), row["status"]))
    _print_table(table)
    return 0


async def _keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from modelgate.surfaces.admin.wire import text_param

    key_id = text_param(args.id, "id")
    async with _KeyAdmin(settings) as admin:
        record = await admin.revoke_key(key_id)
    print(f"revoked {record.id} (project {record.project})")
    return 0


class _KeyAdmin:
    """``KeyAdmin`` on the config's database, announcing changes on its Redis when it has one."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.storage: Storage | None = None
        self.redis: RedisClient | None = None

    async def __aenter__(self) -> Any:
        from modelgate.auth.keyadmin import KeyAdmin

        self.storage = await _open(self.settings)
        return KeyAdmin(self.storage, list(self.settings.deployments), self._announce)

    async def __aexit__(self, *exc_info: object) -> None:
        if self.redis is not None:
            await self.redis.close()
        if self.storage is not None:
            await self.storage.close()

    async def _announce(self, revision: int) -> None:
        from modelgate.auth.keysync import REFRESH_INTERVAL, Announcer, channel_name
        from modelgate.redis_client import RedisClient, RespError

        assert self.storage is not None
        if not self.settings.redis_url:
            print(f"running gateways apply this within {REFRESH_INTERVAL:.0f}s (no redis_url to tell them at once)",
                  file=sys.stderr)
            return
        self.redis = RedisClient.from_url(self.settings.redis_url, timeout=ANNOUNCE_REDIS_TIMEOUT_S)
        try:
            announcer = Announcer(self.redis, channel_name(await self.storage.installation_id()), "key change")
            receivers, confirmed = await announcer.announce(revision)
        except (RespError, OSError) as error:
            print(f"Redis unreachable ({error}); running gateways apply this within {REFRESH_INTERVAL:.0f}s",
                  file=sys.stderr)
            return
        print(f"{confirmed} of {receivers} running gateway process(es) applied the change", file=sys.stderr)


# -- reports -----------------------------------------------------------------------------------

def _params(args: argparse.Namespace, names: Sequence[str]) -> dict[str, str]:
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


async def _usage(args: argparse.Namespace, settings: Settings) -> int:
    from modelgate.surfaces.admin import wire

    params = _params(args, ("project", "key", "deployment", "provider", "model", "since", "until", "period"))
    filters = wire.report_filters(params)
    group_by = wire.parse_group_by(args.group_by)
    storage = await _open(settings)
    try:
        rows = await storage.query_usage(filters, group_by)
        compute = None
        if wire.compute_applies(filters):
            found = await storage.replica_hours.compute(filters.since, filters.until, filters.provider)
            compute = wire.report_compute(found, filters)
    finally:
        await storage.close()
    if args.csv:
        sys.stdout.write(wire.usage_csv(rows, group_by))
    elif args.json:
        print(orjson.dumps(wire.usage_report_json(rows, filters, group_by, compute)).decode())
    else:
        shown = [wire.usage_row_json(row, group_by) for row in rows]
        shown.append({**wire.usage_row_json(wire.totals(rows), ()), **dict.fromkeys(group_by[:1], "TOTAL")})
        columns = [*group_by, *wire.USAGE_FIELDS]
        _print_table([tuple(c.upper() for c in columns), *[tuple(_cell(r.get(c)) for c in columns) for r in shown]])
        if compute:
            print("\nOwn compute (local models' replicas):")
            lines = [wire.compute_json(row) for row in compute]
            columns = ["provider", "model", "runs", "replica_hours", "per_replica_hour", "compute_cost"]
            _print_table([tuple(c.upper() for c in columns), *[tuple(_cell(r.get(c)) for c in columns) for r in lines]])
    return 0


async def _statements(args: argparse.Namespace, settings: Settings) -> int:
    from modelgate.surfaces.admin import wire

    filters = wire.report_filters(_params(args, ("provider", "since", "until", "period")))
    storage = await _open(settings)
    try:
        rows = await storage.query_usage(filters, wire.STATEMENT_GROUPS)
        compute = await storage.replica_hours.compute(filters.since, filters.until, filters.provider)
    finally:
        await storage.close()
    found = wire.statements(rows, filters.since, filters.until, compute)
    if args.csv:
        sys.stdout.write(wire.statements_csv(found))
    elif args.json:
        print(orjson.dumps({"object": "list", "data": [wire.statement_json(s) for s in found]}).decode())
    else:
        for statement in found:
            body = wire.statement_json(statement)
            own = "" if body["compute_cost"] is None else f", of which USD {body['compute_cost']:.6f} own compute"
            print(f"{statement.provider}: {body['requests']} requests, USD {body['total']:.6f} owed{own}; "
                  f"USD {body['revenue']:.6f} charged ({body['since'] or 'start'} .. {body['until'] or 'now'})")
            for line in body["lines"]:
                print(f"  {line['model'] or '-':<32} {line['requests']:>8} req  {line['input_tokens']:>12} in  "
                      f"{line['output_tokens']:>12} out  USD {line['cost']:.6f}  charged USD {line['revenue']:.6f}")
                if line["replica_hours"] is not None:
                    rate = line["per_replica_hour"]
                    cost = line["compute_cost"]
                    print(f"  {'':<32} {line['replica_hours']:.4f} replica-hours"
                          + (f" x USD {rate:g}/h" if rate is not None else "")
                          + (f" = USD {cost:.6f} own compute" if cost is not None else " (no compute_cost set)")
                          + f"  deployments: {', '.join(line['deployments']) or '-'}")
    return 0


FOLLOW_INTERVAL_S = 1.0
# How far back each poll of --follow looks: a batch another process stamped earlier may commit later.
FOLLOW_LAG_S = 5.0


async def _logs(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime, timedelta

    from modelgate.surfaces.admin import requests

    params = _params(args, ("project", "key", "deployment", "provider", "since", "until", "status", "q"))
    filters = requests.request_filters(params)
    limit = requests.parse_limit(args.limit)
    storage = await _open(settings)
    try:
        started = datetime.now(UTC)
        recent, _ = await storage.request_log.search(filters, limit)
        for entry in reversed(recent):  # oldest first, as a tail prints
            _print_entry(requests.entry_json(entry), args.json)
        if not args.follow:
            return 0
        lag = timedelta(seconds=FOLLOW_LAG_S)
        seen = {entry.request_id: started for entry in recent}
        last = started - lag
        while True:
            await asyncio.sleep(FOLLOW_INTERVAL_S)
            for written, entry in await storage.request_log.written_after(last - lag, filters):
                last = max(last, written)
                if entry.request_id not in seen:
                    seen[entry.request_id] = written
                    _print_entry(requests.entry_json(entry), args.json)
            seen = {request_id: at for request_id, at in seen.items() if at > last - 2 * lag}
    finally:
        await storage.close()


def _print_entry(entry: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(orjson.dumps(entry).decode(), flush=True)
        return
    answered = f"{entry['provider']}/{entry['model']}" if entry["provider"] else "-"
    tokens = f"{entry['input_tokens']}>{entry['output_tokens']} tok"
    error = f"  {entry['error']}" if entry["error"] else ""
    print(f"{entry['created_at']}  {entry['id']}  {entry['status']}  {entry['route']:<10} {entry['deployment']}  "
          f"{answered}  {entry['latency_ms']:.0f} ms  {tokens}  ${entry['price']:.6f}  "
          f"{entry['attempts']} attempt(s){error}", flush=True)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())

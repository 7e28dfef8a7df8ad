"""The ``modelgate`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from modelgate import __version__
from modelgate.cli_admin import add_admin_commands
from modelgate.cli_eval import add_eval_commands
from modelgate.cli_models import add_model_commands

if TYPE_CHECKING:
    from modelgate.config.settings import DeploymentSettings, Settings

DEFAULT_CONFIG = "modelgate.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelgate", description="One API in front of many model providers.")
    parser.add_argument("--version", action="version", version=f"modelgate {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", default=None, help=f"config file (default: {DEFAULT_CONFIG})")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=4000, help="0: a free port, printed as the server's URL")
    serve.add_argument("--demo", action="store_true",
                       help="no config or keys: simulated providers, SQLite, instructions printed")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes sharing the port (set redis_url so they share limits)")

    sim = commands.add_parser("sim", help="run the provider simulator (OpenAI, Anthropic, Gemini APIs)")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=9100, help="0: a free port (the URL printed says which)")
    sim.add_argument("--config", default=None, help="simulator config file (models, faults)")

    deployments = commands.add_parser("deployments", help="list the deployments: the config file's and the admin API's")
    deployments.add_argument("--config", default=DEFAULT_CONFIG)
    add_admin_commands(commands, _settings)
    add_eval_commands(commands, _settings)
    add_model_commands(commands)

    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handler = getattr(args, "handler", None)  # the commands of cli_admin.py and cli_models.py set one
    if handler is None:
        handler = {"serve": _serve, "sim": _sim, "deployments": _deployments}[args.command]
    return handler(args)


def _load(path: str) -> object:
    from modelgate.config import ConfigError, load_settings

    try:
        return load_settings(path, os.environ)
    except ConfigError as error:
        print(f"modelgate: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def _settings(path: str) -> Settings:
    from modelgate.config.settings import Settings

    settings = _load(path)
    assert isinstance(settings, Settings)
    return settings


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from modelgate.config.settings import Settings
    from modelgate.server.serve import bind, run_server

    if args.demo:
        from modelgate.demo import demo_settings, print_demo_help, smollm2_path, start_demo_simulator

        simulator = start_demo_simulator()
        smollm2 = smollm2_path()
        settings = demo_settings(simulator.base_url, smollm2)
    else:
        settings = _load(args.config or DEFAULT_CONFIG)  # type: ignore[assignment]
    assert isinstance(settings, Settings)
    port, sock = args.port, None
    if port == 0:  # bound here, so that the port the system picked can be printed before serving
        sock = bind(args.host, 0)
        port = sock.getsockname()[1]
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"modelgate serving on http://{host}:{port}", flush=True)
    if args.demo:
        print_demo_help(args.host, port, smollm2)
    run_server(settings, args.host, port, args.log_level, args.workers, sock)
    return 0


def _sim(args: argparse.Namespace) -> int:
    from modelgate.simulator import SimConfig, run

    config = SimConfig.from_file(args.config) if args.config else None

    def ready(url: str) -> None:  # once listening, with the port it got (--port 0)
        port = url.rsplit(":", 1)[1]
        print(f"modelgate simulator on http://{args.host}:{port} "
              "(OpenAI /v1, Azure /openai, Anthropic /v1/messages, Gemini /v1beta)", flush=True)

    run(args.host, args.port, config, on_ready=ready)
    return 0


def _deployments(args: argparse.Namespace) -> int:
    from modelgate.config.settings import Settings

    settings = _load(args.config)
    assert isinstance(settings, Settings)
    rows = [("NAME", "PROVIDER", "MODEL", "CONTEXT", "MAX OUT", "$IN/M", "$OUT/M", "CAPABILITIES", "SOURCE")]
    found = [(d, "config") for d in settings.deployments.values()]
    url = settings.database_url
    if not url.startswith("sqlite") or Path(url.split(":///", 1)[-1]).exists():  # no new file made here
        found += [(d, "api") for d in asyncio.run(_api_deployments(settings)) if d.name not in settings.deployments]
    for deployment, source in found:
        for i, target in enumerate(deployment.targets):
            facts = target.facts
            rows.append((
                deployment.name if i == 0 else "",
                target.provider, target.model,
                _fmt(facts.context_window), _fmt(facts.max_output_tokens),
                _fmt(facts.input_price), _fmt(facts.output_price),
                ",".join(facts.capabilities) or "-",
                source if i == 0 else "",
            ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


async def _api_deployments(settings: Settings) -> list[DeploymentSettings]:
    """The deployments made through the admin API, from the config's database, read as a gateway
    reads them; none where the database has no such table yet. A database that
    cannot be read is reported and the config's deployments are shown alone."""
    from modelgate.catalog import Catalog
    from modelgate.config.deployments import read_one_deployment
    from modelgate.config.fields import Reader
    from modelgate.storage import Storage, StorageError

    found: list[DeploymentSettings] = []
    try:
        storage = await Storage.open(settings.database_url)
        try:
            if "004_deployments" not in await storage.applied_migrations():
                return []
            records = await storage.deployments.list()
        finally:
            await storage.close()
    except (StorageError, OSError) as error:
        print(f"modelgate: the deployments made through the admin API are not shown: {error}", file=sys.stderr)
        return []
    catalog = Catalog.builtin()
    for record in records:
        reader = Reader({}, catalog)
        deployment = read_one_deployment(reader, record.body, settings.providers,
                                         policies=settings.safety.policies)
        if deployment is None or reader.problems:
            print(f"modelgate: deployment {record.name!r} of the database does not fit this config: "
                  f"{'; '.join(reader.problems)}", file=sys.stderr)
            continue
        found.append(deployment)
    return found


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    raise SystemExit(main())

"""modelgate: one API in front of the models of many providers.

Architecture, by folder, top to bottom; a package imports only those below it, and
``lint-imports`` checks it (the contracts are in pyproject.toml, the drawing in
docs/architecture.md)::

    cli.py, cli_admin.py the ``modelgate`` command: serve, sim, deployments, db, keys, usage, logs
    server/           the composition root: the ASGI app (app.py), the services built once
                      (services.py), the chain's order (chain.py), uvicorn and workers (serve.py)
    surfaces/         one folder per wire format clients speak: openai/, anthropic/, admin/, and
                      the web UI (portal/); base.py says what a surface is, lifecycle.py runs
                      every model call alike
    routing/          the chain's end: which target answers, retries, fallbacks, circuit breakers
    limits/           requests and tokens per minute (in process, or shared through Redis)
    budgets/          spend per key and project: reserved up front, settled from real usage
    auth/             who is calling: the master key and project keys, cached in memory
    safety/           content policies: personal data and blocklists over requests and answers
    metering/         one usage record per request, priced, written in batches via a journal
    telemetry/        metrics, traces (OTLP), JSON log lines, the request log's writer
    pipeline/         the contract every stage and surface speaks: Call, Handler, Stage
    storage/          the database (SQLite or PostgreSQL): migrations, keys, usage, prices
    config/           the YAML settings file, loaded and checked once at start-up
    providers/        one module per upstream API behind one interface (``Provider``), and the
                      transport they send through (transport.py)
    catalog/          facts about well-known models (context window, prices), kept as data
    http/             ASGI types, requests, responses, server-sent events, path matching
    redis_client/     the one Redis client of a process: scripts, commands, subscriptions
    schema/           the canonical request, stream events and errors every layer speaks
    simulator/        a fake upstream speaking the providers' wire formats (tests, demo)

Surfaces translate a wire format to ``schema`` and back; providers translate ``schema`` to an
upstream API and back. The request path touches no database: keys, limits, budgets and breaker
state live in memory (or Redis), and usage records leave it through a queue.
"""

__version__ = "0.1.0"

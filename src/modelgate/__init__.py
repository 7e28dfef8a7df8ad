"""modelgate: one API in front of the models of many providers.

Architecture, by folder (imports flow one way, top to bottom)::

    cli.py            the ``modelgate`` command: serve, sim, deployments (cli_admin.py: db, keys, usage)
    server/           the ASGI application on uvicorn (serve.py, protocol.py): paths, lifespan, services, workers
    surfaces/         one folder per wire format clients speak: openai/, anthropic/, admin/
    pipeline/         the request chain: each stage wraps the next and passes events through
    auth/             who is calling: the master key and project keys, cached in memory
    limits/           requests and tokens per minute (in process, or shared through Redis)
    budgets/          spend per key and project: reserved up front, settled from real usage
    metering/         one usage record per request, priced, written in batches via a journal
    routing/          the chain's end: which target answers, retries, fallbacks, circuit breakers
    providers/        one module per upstream API behind one interface (``Provider``); transport.py is
                      the HTTP/1.1 client they all send through
    storage/          the database (SQLite or PostgreSQL): migrations, keys, usage, prices
    config/           the YAML settings file, loaded and checked once at start-up
    catalog/          facts about well-known models (context window, prices), kept as data
    schema/           the canonical request, stream events and errors every layer speaks
    simulator/        a fake upstream speaking the providers' wire formats (tests, demo)

Surfaces translate a wire format to ``schema`` and back; providers translate ``schema`` to an
upstream API and back. The request path touches no database: keys, limits, budgets and breaker
state live in memory (or Redis), and usage records leave it through a queue. Providers never
import storage, the config loader, the surfaces or the server; ``schema`` imports nothing of the
project.
"""

__version__ = "0.1.0"

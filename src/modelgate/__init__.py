"""modelgate: one API in front of the models of many providers.

Architecture, by folder (imports flow one way, top to bottom)::

    cli.py            the ``modelgate`` command: serve, sim, deployments
    server/           the ASGI application: routing of HTTP paths, lifespan, services
    surfaces/         one folder per wire format clients speak (openai/, later anthropic/, admin/)
    pipeline/         the request chain: each stage wraps the next and passes events through
    routing/          the chain's end: which target answers, retries, fallbacks, circuit breakers
    providers/        one module per upstream API behind one interface (``Provider``)
    config/           the YAML settings file, loaded and checked once at start-up
    catalog/          facts about well-known models (context window, prices), kept as data
    schema/           the canonical request, stream events and errors every layer speaks
    simulator/        a fake upstream speaking the providers' wire formats (tests, demo)

Surfaces translate a wire format to ``schema`` and back; providers translate ``schema`` to an
upstream API and back. Providers never import the config loader, the surfaces or the server;
``schema`` imports nothing of the project.
"""

__version__ = "0.1.0"

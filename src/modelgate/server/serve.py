"""Running the app under an ASGI server.

uvicorn with uvloop and httptools: measured on the request path against granian and aiohttp's
own server (bench/study/RESULTS.md); see docs/benchmarks.md for the figures.
"""

from __future__ import annotations

import uvicorn

from modelgate.config.settings import Settings
from modelgate.server.app import create_app


def run_server(settings: Settings, host: str, port: int, log_level: str = "info") -> None:
    config = uvicorn.Config(
        create_app(settings), host=host, port=port, loop="uvloop", http="httptools",
        lifespan="on", access_log=False, log_level=log_level, server_header=False,
        date_header=False, timeout_keep_alive=75,
    )
    uvicorn.Server(config).run()

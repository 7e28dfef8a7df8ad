"""Run the TensorZero gateway that ships inside the ``tensorzero`` PyPI wheel as a standalone HTTP server.

The wheel carries no gateway executable: its Rust extension starts the gateway's HTTP server on a
background runtime inside the calling process (``tensorzero._start_http_gateway``, what the
package's ``patch_openai_client`` uses). That server binds 127.0.0.1 on a port of the kernel's
choosing and serves only the OpenAI-compatible routes under ``/openai/v1`` (no ``/health``), so
this script announces the port by writing it to a file once the server listens, then sleeps
until it is signalled. Run it with the interpreter of bench/.venvs/tensorzero:

    bench/.venvs/tensorzero/bin/python bench/tensorzero_serve.py CONFIG.toml PORT_FILE
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

import tensorzero


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    config, port_file = sys.argv[1], Path(sys.argv[2])
    gateway = tensorzero._start_http_gateway(config_file=config, clickhouse_url=None, postgres_url=None,
                                             valkey_url=None, async_setup=False)
    port = urlsplit(gateway.base_url).port
    print(f"tensorzero {tensorzero.__version__} gateway at {gateway.base_url}", flush=True)
    # Written whole then renamed, so a reader never sees a half-written port.
    tmp = port_file.with_name(port_file.name + ".tmp")
    tmp.write_text(f"{port}\n")
    os.replace(tmp, port_file)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            signal.pause()
    finally:
        gateway.close()


if __name__ == "__main__":
    main()

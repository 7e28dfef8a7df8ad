"""A one-node Ray cluster for the tests, held by this process: ``python -m tests.engines.ray_head TEMP_DIR``.

It starts the cluster (``ray.init`` with 2 CPUs, no dashboard, its files under TEMP_DIR) and Ray
Serve on it, its HTTP proxy on a free port of 127.0.0.1 (as an operator's ``serve start`` would),
prints ``{"address": GCS, "http": PORT}`` and then answers lines on stdin:

    details     one JSON line: the Serve applications on the cluster, with their deployments'
                status, replica counts and configs (Ray Serve's own details)

At the end of stdin it shuts Serve and the cluster down and exits. The environment it is given
(token authentication, loopback addresses, no usage reports) is the tests' too.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def details() -> dict[str, Any]:
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    assert client is not None
    found: dict[str, Any] = client.get_serve_details()
    return {name: {"status": app["status"], "route_prefix": app["route_prefix"], "deployments": {
        deployment: {"status": body["status"], "replica_states": [r["state"] for r in body["replicas"]],
                     "config": body["deployment_config"]}
        for deployment, body in app["deployments"].items()}} for name, app in found["applications"].items()}


def main(temp_dir: str) -> int:
    import ray
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False,
             logging_level=logging.WARNING)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    print(json.dumps({"address": ray.get_runtime_context().gcs_address, "http": port}), flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "details":
                print(json.dumps(details(), default=str), flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

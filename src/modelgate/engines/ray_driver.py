"""The ray engine's child process: deploys a model as a Ray Serve application and holds it.

    python -m modelgate.engines.ray_driver --model PATH --app NAME [--address ADDRESS]
        [--name NAME] [--max-concurrency N] [--n-ctx TOKENS] [--device cpu|cuda|auto]
        [--min-replicas N] [--max-replicas N] [--target-ongoing-requests N]

It connects to the Ray cluster at ``--address`` (as ``ray.init`` takes it), connects to Ray Serve
there or starts it with its defaults, and deploys the application of ``ray_app.py`` under the
name and route prefix ``--app``, waiting until Ray Serve reports it running (every replica of
``min_replicas`` has loaded the model). It then prints ``{"serving": URL}``: the application's
address at Ray Serve's HTTP proxy, where the gateway sends requests and checks ``/health``, as it
does with a llamacpp worker's port.

While it serves it watches the application: deleted or failed on the cluster, or the cluster
lost, it exits with a line saying so, and the gateway starts it again with backoff (requests get
503 with Retry-After meanwhile). On SIGTERM or SIGINT, and when its stdin closes (the gateway is
gone), it deletes the application from the cluster and exits.

Exit codes: 0 stopped, 3 Ray Serve is not installed, 4 the cluster cannot be reached or was lost,
5 the application could not be deployed, 6 the application failed or is gone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from modelgate.engines.parent_watch import on_parent_gone
from modelgate.engines.ray_app import AppOptions

WATCH_S = 2.0  # how often the application's status is read while it serves
CONNECT_S = 60.0  # ray.init waits for an unreachable cluster for minutes; this process does not
INSTALL = "pip install 'modelgate[ray]'"


def say(line: str) -> None:
    """A line for the gateway's log (it keeps a child's last lines to say why it stopped)."""
    print(f"modelgate ray engine: {line}", file=sys.stderr, flush=True)


def proxy_url(details: dict[str, Any]) -> str:
    """Where Ray Serve's HTTP proxy answers, from the cluster's Serve details; ``ValueError``
    where it runs none."""
    http = details.get("http_options") or {}
    if details.get("proxy_location") == "Disabled" or not http.get("host"):
        raise ValueError("Ray Serve on this cluster runs no HTTP proxy (proxy_location: Disabled); start Serve "
                         "with its HTTP proxy (`serve start --proxy-location HeadOnly`)")
    host = str(http["host"])
    if host in ("0.0.0.0", "::"):
        # Listening on every interface: reach it at the address of a node that runs a proxy.
        proxies = details.get("proxies") or {}
        host = next((str(p["node_ip"]) for p in proxies.values() if p.get("node_ip")), "127.0.0.1")
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{http.get('port') or 8000}"


def serve_app(options: AppOptions, address: str) -> int:
    try:
        import ray
        from ray import serve
        from ray.serve.context import _get_global_client
    except ImportError as error:
        say(f"Ray Serve is not installed here ({error}); install it with: {INSTALL}")
        return 3
    problem = unreachable(address)
    if problem is not None:
        say(f"cannot reach the Ray cluster at '{address}': {problem}")
        return 4
    watchdog = threading.Timer(CONNECT_S, _give_up, (address,))
    watchdog.daemon = True
    watchdog.start()
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        say(f"cannot reach the Ray cluster at '{address}': {error}")
        return 4
    finally:
        watchdog.cancel()
    # Ray sets a SIGTERM handler of its own in ray.init: the gateway's stop must end in the
    # application's deletion below.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        serve.start()  # Serve on the cluster, or started with its defaults
        from ray.serve.schema import ApplicationStatus

        from modelgate.engines.ray_app import application

        try:
            serve.run(application(options), name=options.app, route_prefix=f"/{options.app}")
        except RuntimeError as error:  # Ray Serve gave up on it (DEPLOY_FAILED)
            say(f"Ray Serve could not deploy application '{options.app}': {error}")
            return 5
        # Serve's HTTP options are only in its details, which only its client gives.
        client = _get_global_client()
        assert client is not None, "serve.run returned without a Serve controller"
        try:
            url = f"{proxy_url(client.get_serve_details())}/{options.app}"
        except ValueError as error:
            say(str(error))
            return 5
        print(json.dumps({"serving": url}), flush=True)
        while True:
            time.sleep(WATCH_S)
            try:
                status = serve.status().applications.get(options.app)
            except Exception as error:  # whatever Ray raises once the cluster is gone
                say(f"lost the Ray cluster at '{address}': {type(error).__name__}: {error}")
                return 4
            if status is None:
                say(f"application '{options.app}' is no longer on the cluster (deleted there); deploying it again")
                return 6
            if status.status == ApplicationStatus.DEPLOY_FAILED:
                say(f"application '{options.app}' failed on the cluster: {status.message}")
                return 6
    except KeyboardInterrupt:  # stopped: SIGTERM, SIGINT or the gateway gone
        return 0
    finally:
        _remove(options.app)
        ray.shutdown()


def unreachable(address: str, within: float = 5.0) -> str | None:
    """Why nothing answers at ``address`` (HOST:PORT, ray://HOST:PORT), or None where something
    does or the address is ``auto`` (Ray finds the cluster of this machine itself)."""
    if address == "auto":
        return None
    parts = urlsplit(address if address.startswith("ray://") else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as error:
        return f"it is no HOST:PORT ({error})"
    if not host or port is None:
        return "it is no HOST:PORT; give the head node's GCS address (HOST:6379) or ray://HOST:10001"
    try:
        socket.create_connection((host, port), timeout=within).close()
    except OSError as error:
        return f"nothing answers at {host}:{port} ({error.strerror or error}); is `ray start --head` running there?"
    return None


def _give_up(address: str) -> None:
    """ray.init is still waiting for the cluster: end this process (nothing is deployed yet)."""
    say(f"cannot reach the Ray cluster at '{address}': no answer within {CONNECT_S:g}s")
    os._exit(4)


def _remove(app: str) -> None:
    """Delete ``app`` from the cluster: the deployment stopped, its replicas are no longer wanted."""
    from ray import serve

    try:
        serve.delete(app)
    except KeyboardInterrupt:
        say(f"stopped again while deleting application '{app}'; Ray Serve finishes deleting it")
    except Exception as error:  # the cluster may be gone: nothing is left to delete then
        say(f"could not delete application '{app}': {type(error).__name__}: {error}")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelgate.engines.ray_driver")
    parser.add_argument("--model", required=True, help="the GGUF file, at this path on every node")
    parser.add_argument("--app", required=True, help="the application's name on the cluster and its route prefix")
    parser.add_argument("--address", default="auto", help="the Ray cluster, as ray.init takes it")
    parser.add_argument("--name", default=None, help="the model's name in answers (default: the file's stem)")
    parser.add_argument("--max-concurrency", type=int, default=4, help="requests a replica runs at once")
    parser.add_argument("--n-ctx", type=int, default=0, help="context window in tokens; 0: the model's own")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument("--min-replicas", type=int, default=1)
    parser.add_argument("--max-replicas", type=int, default=1)
    parser.add_argument("--target-ongoing-requests", type=float, default=2.0)
    parser.add_argument("--watch-stdin", action="store_true", help="stop when stdin closes")
    args = parser.parse_args(argv)
    if args.name is None:
        from pathlib import Path

        args.name = Path(args.model).stem
    options = AppOptions(app=args.app, model_path=args.model, model_name=args.name,
                         max_concurrency=args.max_concurrency, n_ctx=args.n_ctx, device=args.device,
                         min_replicas=args.min_replicas, max_replicas=args.max_replicas,
                         target_ongoing_requests=args.target_ongoing_requests)
    signal.signal(signal.SIGTERM, _interrupt)
    if args.watch_stdin:
        # A signal of its own, not interrupt_main: a real one wakes the main thread from its waits.
        on_parent_gone(lambda: os.kill(os.getpid(), signal.SIGTERM))
    try:
        return serve_app(options, args.address)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())

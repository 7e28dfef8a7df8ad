"""Routing: which target answers a call, and what happens when one cannot.

    router.py       the pipeline's terminal handler: selection, attempts, retries, fallbacks
    group.py        a deployment resolved for routing: targets bound to providers and health
    strategies.py   the order targets are tried in: weighted, priority, latency, least-busy, cost
    health.py       per-target circuit breaker, recent latency and error rate (in-process)
    redis_sync.py   the breaker transitions shared between gateway processes through Redis
    backoff.py      jittered exponential backoff
    window.py       counts over a sliding window of time
"""

from modelgate.routing.health import Health
from modelgate.routing.router import Router

__all__ = ["Health", "Router"]

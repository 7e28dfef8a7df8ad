"""Rate limits: requests and tokens per minute, per key, per project and per deployment.

``gcra.py`` is the algorithm (a token bucket kept as one timestamp per counter), ``local.py`` and
``redis.py`` keep the counters in this process or in Redis (one Lua script, one round trip per
request), ``headers.py`` writes OpenAI's ``x-ratelimit-*`` headers (and Anthropic's from them),
``stage.py`` is the pipeline stage that refuses a request over a limit with 429 and ``Retry-After``.
"""

from modelgate.limits.gcra import Counter, CounterState, Decision
from modelgate.limits.headers import anthropic_ratelimit_headers, go_duration, ratelimit_headers
from modelgate.limits.local import LocalLimiter
from modelgate.limits.stage import Limiter, RateLimit, counters_for

__all__ = [
    "Counter",
    "CounterState",
    "Decision",
    "Limiter",
    "LocalLimiter",
    "RateLimit",
    "anthropic_ratelimit_headers",
    "counters_for",
    "go_duration",
    "ratelimit_headers",
]

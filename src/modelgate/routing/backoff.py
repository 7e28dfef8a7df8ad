"""How long to wait before trying a target again.

Exponential backoff with jitter (between half and all of the step, "equal jitter" in the words of
https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/), so that many gateway
workers retrying the same upstream spread out instead of arriving together. An upstream's own
``Retry-After`` / ``retry-after-ms`` wins over the schedule: the router reads it from the target's
cool-down (``TargetHealth.open_until``), never guesses shorter.
"""

from __future__ import annotations

import random

BASE_S = 0.25  # the first retry waits 0.125-0.25 s
FACTOR = 2.0
CAP_S = 4.0  # no step of the schedule waits longer than this
RETRY_AFTER_CAP_S = 300.0  # a longer Retry-After cools a target down this long, then probes


def backoff_delay(retry: int, rng: random.Random) -> float:
    """The wait before retry number ``retry`` (0 for the first) of one request."""
    step = min(CAP_S, BASE_S * FACTOR**retry)
    return step * (0.5 + 0.5 * rng.random())

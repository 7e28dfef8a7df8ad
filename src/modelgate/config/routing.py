"""The ``routing:`` section: how targets are judged healthy (routing/health.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from modelgate.config.fields import Key, at_least, positive


@dataclass(slots=True, kw_only=True)
class RoutingSettings:
    """How targets are judged healthy (routing/health.py)."""

    # Consecutive retryable failures that open a target's breaker.
    failures: Annotated[int, Key(check=at_least(
        1, "must be 1 or more: the failures in a row that open a breaker"))] = 3
    # Seconds an open breaker waits before it lets one probe through.
    cooldown: Annotated[float, Key("seconds as a number", positive("must be a positive number of seconds"))] = 5.0
    # Prefix of the Redis keys and pub/sub channel that share breaker state between processes.
    redis_prefix: Annotated[str, Key("a string such as 'modelgate:'")] = "modelgate:"

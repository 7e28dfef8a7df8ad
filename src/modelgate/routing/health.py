"""What the router knows about each target: its circuit breaker, recent latency and error rate.

A target is one (provider, upstream model) pair; deployments that share a target share its health,
so a model that fails for one deployment is skipped by every other.

The breaker::

    closed ──(``failures`` retryable failures in a row, or one with Retry-After)──▶ open
    open ──(``cooldown`` or the Retry-After has passed)──▶ half-open: one probe request at a time
    half-open ──probe answers──▶ closed        half-open ──probe fails──▶ open again

Everything here is in-process and synchronous: the request path reads the breaker without any
I/O. Its times stay finite whatever arrives: a Retry-After that is not a finite number of seconds
(``nan``, ``inf``) counts as a failure without one, and a transition from another process with
such a time is ignored; waits are capped (``RETRY_AFTER_CAP_S``, or the cooldown if longer).
Sharing between gateway processes is the job of ``redis_sync.RedisHealthSync``, which sends this
process's transitions to Redis (``on_change``) and applies the other processes' ones
(``apply_remote``) as they arrive by pub/sub.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from modelgate.providers.untrusted import label, seconds
from modelgate.routing.backoff import RETRY_AFTER_CAP_S
from modelgate.routing.window import SlidingCounts
from modelgate.schema.errors import GatewayError

log = logging.getLogger("modelgate.routing")

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"

MAX_REASON_CHARS = 200  # a reason another process sent
LATENCY_WEIGHT = 0.2  # weight of the newest time-to-first-token in the moving average
STATS_SPAN_S = 60.0  # the error rate /health/deployments shows is over this window


class TargetHealth:
    """The breaker and recent figures of one target; see the module docstring."""

    __slots__ = ("_health", "failures", "in_flight", "key", "last_error", "last_status", "model",
                 "open_until", "outcomes", "probing", "provider", "reason", "state", "ttft")

    def __init__(self, health: Health, provider: str, model: str) -> None:
        self._health = health
        self.key = f"{provider}/{model}"
        self.provider = provider
        self.model = model
        self.state = CLOSED
        self.failures = 0  # retryable failures in a row
        self.open_until = 0.0  # monotonic time an open breaker lets a probe through
        self.probing = False
        self.in_flight = 0
        self.ttft: float | None = None  # moving average of seconds to the first content
        self.outcomes = SlidingCounts(STATS_SPAN_S)
        self.last_error: str | None = None
        self.last_status: int | None = None
        self.reason: str | None = None  # why the breaker last opened

    def allows(self, now: float) -> bool:
        """Whether an attempt may go to this target now (a half-open one takes one probe)."""
        if self.state == CLOSED:
            return True
        return now >= self.open_until and not self.probing

    def ready_at(self, now: float) -> float:
        """The earliest time an attempt may go to this target."""
        if self.state == CLOSED:
            return now
        if now < self.open_until:
            return self.open_until
        return float("inf") if self.probing else now

    def begin(self, now: float) -> bool:
        """An attempt starts; returns whether it is the half-open probe."""
        self.in_flight += 1
        if self.state != CLOSED and now >= self.open_until and not self.probing:
            self.state = HALF_OPEN
            self.probing = True
            return True
        return False

    def release(self, probe: bool) -> None:
        """An attempt is over, however it ended (a cancelled probe frees the slot for another)."""
        self.in_flight -= 1
        if probe:
            self.probing = False

    def committed(self, ttft: float) -> None:
        """The attempt produced its first content after ``ttft`` seconds."""
        previous = self.ttft
        self.ttft = ttft if previous is None else previous + LATENCY_WEIGHT * (ttft - previous)

    def answered(self, probe: bool) -> None:
        """The target answered with a client error: it is up, the request was at fault."""
        self.failures = 0
        if probe or self.state == HALF_OPEN:
            self._close()

    def succeeded(self, now: float, probe: bool) -> None:
        """The attempt's answer arrived whole: the target works. (Not at the first token: a
        stream that breaks off later must count as a failure, or a flaky target never opens.)"""
        self.outcomes.add("ok", now)
        self.failures = 0
        if probe or self.state == HALF_OPEN:
            self._close()

    def failed(self, error: GatewayError, now: float, probe: bool) -> None:
        """A retryable failure: count it, and open the breaker when it is time."""
        self.outcomes.add("error", now)
        self.failures += 1
        self.last_error = error.message
        self.last_status = error.status
        wait = seconds(error.retry_after, RETRY_AFTER_CAP_S)
        if wait is not None:
            self._open(now + wait, f"answered {error.status} with Retry-After {wait:g}s")
        elif probe:
            self._open(now + self._health.cooldown, "the half-open probe failed")
        elif self.failures >= self._health.failures:
            self._open(now + self._health.cooldown, f"{self.failures} failures in a row")

    def _open(self, until: float, reason: str) -> None:
        if self.state == OPEN and until <= self.open_until:
            return
        self.state = OPEN
        self.open_until = until
        self.reason = reason
        self._health.changed(self)

    def _close(self) -> None:
        self.state = CLOSED
        self.failures = 0
        self.reason = None
        self._health.changed(self)

    def apply_remote(self, state: str, until: float, reason: str | None) -> None:
        """Another process's transition: adopt it without telling anyone back."""
        if state == OPEN:
            self.state = OPEN
            self.open_until = until
            self.reason = reason
        elif state == CLOSED:
            self.state = CLOSED
            self.failures = 0
            self.reason = None

    def snapshot(self, now: float) -> dict[str, Any]:
        counts = self.outcomes.counts(now)
        ok, errors = counts.get("ok", 0), counts.get("error", 0)
        state = self.state
        if state != CLOSED and now >= self.open_until:
            state = HALF_OPEN
        return {
            "provider": self.provider,
            "model": self.model,
            "state": state,
            "retry_in_s": round(self.open_until - now, 3) if state == OPEN else None,
            "reason": self.reason if state != CLOSED else None,
            "latency_ms": None if self.ttft is None else round(self.ttft * 1000, 2),
            "error_rate": round(errors / (ok + errors), 4) if ok + errors else None,
            "requests": ok + errors,
            "errors": errors,
            "in_flight": self.in_flight,
            "failures_in_a_row": self.failures,
            "last_error": self.last_error,
        }


class Health:
    """Every target's health in this process, and where its transitions are sent."""

    def __init__(self, failures: int = 3, cooldown: float = 5.0) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self.targets: dict[str, TargetHealth] = {}
        # Called on each transition to open or closed made here (not on remote ones).
        self.on_change: Callable[[TargetHealth], None] | None = None
        self.shared = "local"  # what /health/deployments says about sharing

    def target(self, provider: str, model: str) -> TargetHealth:
        key = f"{provider}/{model}"
        found = self.targets.get(key)
        if found is None:
            found = self.targets[key] = TargetHealth(self, provider, model)
        return found

    def changed(self, target: TargetHealth) -> None:
        if target.state == OPEN:
            log.warning("breaker of %s opened for %.1fs: %s (last error: %s)", target.key,
                        target.open_until - time.monotonic(), target.reason, target.last_error)
        else:
            log.info("breaker of %s closed", target.key)
        if self.on_change is not None:
            self.on_change(target)

    def apply_remote(self, key: str, state: str, seconds_left: float, reason: object) -> None:
        """Another process's transition of ``key``; one with a time that is not a finite number,
        or a state other than open and closed, is ignored."""
        target = self.targets.get(key)
        if target is None:
            return
        if state == OPEN:
            if not isinstance(seconds_left, (int, float)) or not math.isfinite(seconds_left):
                log.warning("ignoring a breaker transition of %s with %r seconds left", key, seconds_left)
                return
            seconds_left = min(max(seconds_left, 0.0), max(RETRY_AFTER_CAP_S, self.cooldown))
        elif state != CLOSED:
            return
        target.apply_remote(state, time.monotonic() + seconds_left, label(reason, MAX_REASON_CHARS) or None)

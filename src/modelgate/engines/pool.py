"""A local model's replicas: supervised, and the requests admitted to them.

**Supervision.** Each replica has a task that starts it, waits for its health, and when it dies
(a crash of native code, the kernel's OOM killer, a signal) starts it again after a backoff that
doubles with each failure in a row (0.5 s up to 30 s), back to the start once a replica has run
for a minute. A ready replica's health is checked every ``health_interval`` seconds: one that
does not answer within ``health_timeout`` (hung: deadlocked, stopped, thrashing) is killed, so the
requests it runs fail at once with the 502 of a dead replica (and fallbacks apply), and it is
started again with the same backoff (the ray engine's application is checked by Ray Serve
itself, see ``_watch``). ``stop`` drains: new requests are refused with 503, those running get
``DRAIN_S`` to finish, then the children get SIGTERM and, if they linger, SIGKILL.

**Admission.** A replica runs at most ``max_concurrency`` requests at once (the ray engine's one
replica here, the application, ``max_concurrency`` times ``ray.max_replicas``: ``EngineSpec.slots``);
a request that finds every ready replica full waits in a FIFO queue of at most ``queue``
requests, for up to its timeout. Beyond the queue a request is refused at once with 429 and a
Retry-After from the recent request durations, never made to wait without bound. While no
replica is ready (loading, or restarting after a crash) requests wait in the same queue; one that
is still waiting at its timeout, or finds the queue full, gets 503 with a Retry-After. Where no
replica is ready and the last start failed (a model that does not load, a Ray cluster that
cannot be reached), the requests waiting and those that come until the next try get 503 at
once, with what failed and a Retry-After of that try. The errors are ``UpstreamError``s: the
router fails over to the deployment's fallbacks as for any provider.

**Uptime.** A ``ReplicaWatcher`` hears when each replica starts (its child process is launched:
loading holds the machine as much as answering) and when it ends: ``failed`` (it never became
healthy), ``died`` (it exited on its own), ``hung`` (killed for not answering its health check)
or ``stopped`` (the pool stopped it). It must not wait:
the supervisor calls it between steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from typing import Literal, Protocol

from modelgate.engines.replica import EngineSpec, Replica, ReplicaFailed
from modelgate.schema.errors import UpstreamError

log = logging.getLogger("modelgate.engines")

LOAD_TIMEOUT_S = 600.0  # a replica that is not healthy by then is restarted
BACKOFF_S = (0.5, 30.0)  # first and longest wait before a dead replica is started again
STEADY_S = 60.0  # a replica that ran this long before dying starts again without backoff
DRAIN_S = 30.0
STOP_GRACE_S = 10.0
DURATION_WEIGHT = 0.2  # weight of the newest request duration in the moving average

EndReason = Literal["failed", "died", "hung", "stopped"]


class ReplicaWatcher(Protocol):
    def replica_started(self, pool: ReplicaPool, index: int) -> None:
        """Replica ``index`` of ``pool`` was launched; returns at once."""

    def replica_ended(self, pool: ReplicaPool, index: int, reason: EndReason) -> None:
        """Replica ``index`` of ``pool`` is no longer running; returns at once."""


class ReplicaPool:
    """The replicas of one ``EngineSpec``, and admission to them; see the module docstring."""

    def __init__(self, spec: EngineSpec, provider: str, *, load_timeout: float = LOAD_TIMEOUT_S,
                 backoff: tuple[float, float] = BACKOFF_S, watcher: ReplicaWatcher | None = None) -> None:
        self.spec = spec
        self.watcher = watcher
        self._up: set[int] = set()  # replicas launched and not yet ended, by index
        self.provider = provider
        self.name = spec.model.name
        self.replicas = [Replica(spec, i) for i in range(spec.engine.replicas)]
        self.load_timeout = load_timeout
        self.backoff = backoff
        self.restarts = 0
        self._waiters: deque[asyncio.Future[Replica]] = deque()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._mean_s = 1.0  # recent request durations, for Retry-After
        # Set when a replica became ready or failed to start (``first_load``).
        self._outcome = asyncio.Event()
        self.failure: ReplicaFailed | None = None  # why the last start failed, until a replica is ready
        self._next_try = 0.0  # when a replica that failed to start is tried again (monotonic)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def running(self) -> int:
        return sum(r.running for r in self.replicas)

    def ready(self) -> list[Replica]:
        return [r for r in self.replicas if r.state == "ready"]

    async def start(self) -> None:
        """Start every replica's supervisor; returns at once (requests wait for readiness)."""
        self._tasks = [asyncio.ensure_future(self._supervise(r)) for r in self.replicas]

    async def _supervise(self, replica: Replica) -> None:
        failures = 0
        while not self._stopping:
            started = time.monotonic()
            self._started(replica)
            failed: ReplicaFailed | None = None
            try:
                await replica.launch(self.load_timeout)
            except ReplicaFailed as failure:
                log.error("local model '%s' (provider '%s'): %s", self.name, self.provider, failure)
                self._ended(replica, "failed")
                failed = failure
            else:
                log.info("local model '%s': replica %d ready in %.2fs (pid %s)", self.name, replica.index,
                         time.monotonic() - started, replica.pid)
                self.failure = None
                self._outcome.set()
                self._wake()
                code, hung = await self._watch(replica)
                if self._stopping:
                    return
                self._ended(replica, "hung" if hung else "died")
                said = "\n".join(replica.output)
                what = f"{hung}; it was killed" if hung else f"died with exit code {code}"
                log.error("local model '%s' (provider '%s'): replica %d (pid %s) %s; restarting it. Its last "
                          "output:\n%s", self.name, self.provider, replica.index, replica.pid, what, said or "(none)")
            replica.state = "dead"
            self.restarts += 1
            if time.monotonic() - started > STEADY_S:
                failures = 0
            first, longest = self.backoff
            delay = min(longest, first * 2 ** failures)
            if failed is not None:
                self.failure = failed
                self._next_try = time.monotonic() + delay
                if not self.ready():
                    self._refuse_waiting()
                self._outcome.set()
            await asyncio.sleep(delay)
            failures += 1

    async def _watch(self, replica: Replica) -> tuple[int, str | None]:
        """Until the ready ``replica`` exits: its health checked every ``health_interval`` seconds,
        and killed when it does not answer within ``health_timeout``. Its exit code, and why it was
        killed (None: it exited on its own)."""
        engine = self.spec.engine
        if engine.engine == "ray":
            # Ray Serve checks the application's replicas and restarts them itself, and the driver
            # exits when the application fails; a probe from here would pass through those replicas
            # (waiting behind their requests, or scaling them up from none).
            return await replica.exited(), None
        exited = asyncio.ensure_future(replica.exited())
        try:
            while True:
                done, _ = await asyncio.wait({exited}, timeout=engine.health_interval)
                if done:
                    return exited.result(), None
                if await replica.answers(engine.health_timeout) or exited.done():
                    continue
                hung = f"did not answer its health check within {engine.health_timeout:g}s"
                replica.kill(hung)
                return await exited, hung
        finally:
            exited.cancel()

    def _started(self, replica: Replica) -> None:
        self._up.add(replica.index)
        if self.watcher is not None:
            self.watcher.replica_started(self, replica.index)

    def _ended(self, replica: Replica, reason: EndReason) -> None:
        if replica.index not in self._up:
            return
        self._up.discard(replica.index)
        if self.watcher is not None:
            self.watcher.replica_ended(self, replica.index, reason)

    async def first_load(self) -> None:
        """Return once a replica is ready; ``ReplicaFailed`` (why) if one fails to load first. A
        replica that does not load within ``load_timeout`` has failed."""
        await self._loaded(until_failure=True)

    async def any_ready(self) -> None:
        """Return once a replica is ready, however many attempts that takes."""
        await self._loaded(until_failure=False)

    async def _loaded(self, until_failure: bool) -> None:
        while not self.ready():
            if until_failure and self.failure is not None:
                raise self.failure
            self._outcome.clear()
            await self._outcome.wait()

    async def acquire(self, wait_s: float) -> Replica:
        """A ready replica with a free slot, taken for one request (give it back with ``release``)."""
        if self._stopping:
            raise self._unavailable("is shutting down", 1.0)
        if self._failing():
            raise self._start_failed()
        replica = self._free()
        if replica is not None and not self._waiters:
            return self._take(replica)
        if len(self._waiters) >= self.spec.engine.queue:
            if not self.ready():
                raise self._unavailable("has no replica ready yet and its queue is full", self._load_wait())
            raise self._queue_full()
        waiter: asyncio.Future[Replica] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait({waiter}, timeout=wait_s)
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release(waiter.result())  # given a slot just as the request was cancelled
            else:
                self._forget(waiter)
            raise
        if not waiter.done():
            self._forget(waiter)
            if not self.ready():
                raise self._unavailable(f"is still loading after {wait_s:g}s", self._load_wait())
            raise self._queue_full(waited=wait_s)
        if waiter.cancelled():
            raise self._unavailable("is shutting down", 1.0)
        return waiter.result()

    def _failing(self) -> bool:
        """Whether the last start failed and no replica is ready or starting again yet."""
        return self.failure is not None and not any(r.state in ("ready", "starting") for r in self.replicas)

    def _start_failed(self) -> UpstreamError:
        wait = max(1.0, self._next_try - time.monotonic() + 1.0)
        assert self.failure is not None
        return self._unavailable(f"could not be started ({self.failure.reason}); it is tried again in the background",
                                 wait)

    def _refuse_waiting(self) -> None:
        """Fail the requests waiting for a replica: the one they waited for did not start."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(self._start_failed())

    def _forget(self, waiter: asyncio.Future[Replica]) -> None:
        waiter.cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def release(self, replica: Replica, elapsed: float | None = None) -> None:
        """Give back the slot ``acquire`` took; ``elapsed``: how long the request held it."""
        replica.running -= 1
        if elapsed is not None:
            self._mean_s += DURATION_WEIGHT * (elapsed - self._mean_s)
        if self.running == 0:
            self._idle.set()
        self._wake()

    def _free(self) -> Replica | None:
        limit = self.spec.slots
        free = [r for r in self.replicas if r.state == "ready" and r.running < limit]
        return min(free, key=lambda r: r.running) if free else None

    def _take(self, replica: Replica) -> Replica:
        replica.running += 1
        self._idle.clear()
        return replica

    def _wake(self) -> None:
        """Hand free slots to the requests waiting longest."""
        while self._waiters:
            replica = self._free()
            if replica is None:
                return
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._take(replica))

    def _queue_full(self, waited: float | None = None) -> UpstreamError:
        engine = self.spec.engine
        capacity = max(1, len(self.ready())) * self.spec.slots
        wait = max(1, math.ceil(self._mean_s * (len(self._waiters) + 1) / capacity))
        what = (f"waited {waited:g}s in the queue" if waited is not None else
                f"{self.running} running and {len(self._waiters)} waiting (queue: {engine.queue})")
        if engine.engine == "ray":
            held = (f"at most {self.spec.slots} at once on its Ray Serve application ({engine.max_concurrency} on "
                    "each of up to ray.max_replicas replicas)")
            raise_ = "ray.max_replicas, max_concurrency or queue"
        else:
            held = f"at most {engine.max_concurrency} at once on each of {len(self.ready())} ready replica(s)"
            raise_ = "replicas, max_concurrency or queue"
        return UpstreamError(
            f"local model '{self.name}' is at capacity: {what}, {held}. Retry after {wait}s, or raise {raise_} "
            "in the deployment.", provider=self.provider, status=429, code="engine_at_capacity",
            retry_after=wait)

    def _unavailable(self, why: str, wait: float) -> UpstreamError:
        return UpstreamError(f"local model '{self.name}' {why}; retry after {math.ceil(wait)}s",
                             provider=self.provider, status=503, code="engine_unavailable",
                             retry_after=math.ceil(wait))

    def _load_wait(self) -> float:
        return 1.0 if any(r.state == "starting" for r in self.replicas) else self.backoff[0] + 1.0

    async def stop(self, drain: float = DRAIN_S, grace: float = STOP_GRACE_S) -> None:
        """Refuse new requests, let those running finish (up to ``drain`` s), stop every child."""
        self._stopping = True
        while self._waiters:
            self._waiters.popleft().cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), drain)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(r.stop(grace) for r in self.replicas))
        for replica in self.replicas:
            self._ended(replica, "stopped")

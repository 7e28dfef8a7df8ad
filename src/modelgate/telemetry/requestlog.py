"""The request log's writer: each request's entry made as it ends, written behind it in batches.

A surface opens a ``Capture`` when a call starts (``RequestLog.capture``): it has the call keep its
attempts, and where the deployment logs payloads (``log_payloads: true | errors``) it keeps the
request's body and copies what goes back to the client, up to ``request_log.max_body_kb`` each.
When the request ends, ``finish`` makes the entry from the call's usage record and what the
capture kept, and queues it: the request path never waits for the database.

Payloads are redacted as the entry is made (``redact``: secrets and personal data), after the
answer went out. A background task writes the queue every ``interval`` seconds (sooner once
``batch_size`` wait). While the database is
unreachable entries wait, up to ``max_pending``; past it the oldest go, counted (``dropped``) and
logged once per outage. Unlike usage records, which the bill is made of and which a journal keeps
across crashes, the log is diagnostics: bounded memory comes first. A batch the database refuses
is split down to the entries it refuses, which are counted and logged. Another task deletes what is
older than ``request_log.retention_days``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta

from modelgate.http.asgi import Message, Send
from modelgate.http.request import HTTPRequest
from modelgate.pipeline.contract import Call
from modelgate.storage.errors import DataRejected, StorageError, StorageUnavailable
from modelgate.storage.records import RequestLogEntry, UsageRecord
from modelgate.storage.request_log import RequestLogRepository

log = logging.getLogger("modelgate.requestlog")

Redact = Callable[[str], str]
_USAGE = tuple(f.name for f in fields(UsageRecord))
CUT = "\n[... cut: the request log keeps {kept} of {size} bytes]"


def surface_of(path: str) -> str:
    """The API a client spoke, from the path it called."""
    if path.startswith("/openai/"):
        return "azure"
    if path.startswith("/v1/messages"):
        return "anthropic"
    return "openai"


class Capture:
    """What the log keeps of one request while it is served: its body and the bytes sent back,
    where its deployment logs payloads (``payloads`` None: it does not)."""

    __slots__ = ("kept", "limit", "payloads", "request_body", "sent", "size")

    def __init__(self, payloads: str | None, request_body: bytes | None, limit: int) -> None:
        self.payloads = payloads  # "all" | "errors" | None
        self.request_body = request_body
        self.limit = limit
        self.sent: list[bytes] = []
        self.kept = 0  # bytes of the response body in ``sent``
        self.size = 0  # bytes of it sent, kept or not

    def sending(self, send: Send) -> Send:
        """``send``, copying the response body as it goes out."""
        async def copied(message: Message) -> None:
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                if body:
                    room = self.limit - self.kept
                    if room > 0:
                        piece = body[:room]
                        self.sent.append(piece)
                        self.kept += len(piece)
                    self.size += len(body)
            await send(message)
        return copied

    def response_body(self) -> str | None:
        if not self.sent and not self.size:
            return None
        return _text(b"".join(self.sent), self.size)


class RequestLog:
    """Entries of requests, queued as they end and written behind them (see the module docstring)."""

    def __init__(self, repository: RequestLogRepository, *, retention_s: int, max_body: int,
                 redact: Redact | None = None, interval: float = 0.5, batch_size: int = 500,
                 max_pending: int = 50_000, retry_interval: float = 1.0, purge_interval: float = 3600.0,
                 purge_delay: float = 60.0, purge_batch: int = 5000) -> None:
        self.repository = repository
        self.retention_s = retention_s
        self.max_body = max_body
        self.redact = redact
        self.interval = interval
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.retry_interval = retry_interval
        self.purge_interval = purge_interval
        self.purge_delay = purge_delay
        self.purge_batch = purge_batch
        self._pending: deque[RequestLogEntry] = deque()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._stopping = False
        self._failing = False
        self._retry_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self.written = 0
        self.refused = 0  # entries the database refused, logged
        self.dropped = 0  # entries dropped from a full queue during an outage
        self.purged = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._write_loop()), loop.create_task(self._purge_loop())]

    async def stop(self) -> None:
        """Write what waits; what the database does not take now is logged as lost."""
        self._stopping = True
        self._wake.set()
        self._stop.set()
        for task in self._tasks:
            await task
        self._tasks = []
        await self.flush()
        if self._pending:
            log.warning("%d request log entr(ies) could not be written before the gateway stopped",
                        len(self._pending))

    # -- the request path ------------------------------------------------------------------------

    async def capture(self, call: Call, http: HTTPRequest) -> Capture:
        """Start keeping what the log needs of ``call`` as it is served."""
        call.history = []
        setting = call.deployment.log_payloads
        if setting is False:
            return Capture(None, None, self.max_body)
        return Capture("errors" if setting == "errors" else "all", await http.body(), self.max_body)

    def finish(self, call: Call, http: HTTPRequest, capture: Capture) -> None:
        """Queue the entry of a call that ended; a call that got no usage record (it failed
        before the pipeline ran) has none."""
        record = call.record
        if record is None:
            return
        entry = RequestLogEntry(**{name: getattr(record, name) for name in _USAGE})
        entry.path = http.path
        entry.surface = surface_of(http.path)
        client = http.scope.get("client")
        entry.client_ip = client[0] if client else None
        entry.user_agent = http.headers.get("user-agent")
        entry.history = call.history or []
        span = call.trace
        if span is not None:
            context = span.get_span_context()
            if context.is_valid:
                entry.trace_id = f"{context.trace_id:032x}"
        if capture.payloads == "all" or (capture.payloads == "errors" and record.status >= 400):
            # Once the answer is out: the client waits for none of this.
            if capture.request_body is not None:
                entry.request_body = self._redacted(_text(capture.request_body[:self.max_body],
                                                          len(capture.request_body)))
            entry.response_body = self._redacted(capture.response_body())
        self._pending.append(entry)
        if len(self._pending) > self.max_pending:
            self._pending.popleft()
            self.dropped += 1
            if not self._failing or self.dropped == 1:
                log.error("request log: more than %d entries wait for the database; the oldest are dropped",
                          self.max_pending)
        if len(self._pending) >= self.batch_size:
            self._wake.set()

    def _redacted(self, text: str | None) -> str | None:
        return self.redact(text) if text and self.redact is not None else text

    # -- writing behind --------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write what waits now (tests; shutdown)."""
        async with self._lock:
            self._retry_at = 0.0
            await self._write_pending()

    async def _write_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            if not self._pending or time.monotonic() < self._retry_at:
                continue
            try:
                async with self._lock:
                    await self._write_pending()
            except Exception:
                log.exception("request log: writing entries failed")
                self._retry_at = time.monotonic() + self.retry_interval

    async def _write_pending(self) -> None:
        while self._pending:
            batch = [self._pending[i] for i in range(min(self.batch_size, len(self._pending)))]
            refused: list[tuple[RequestLogEntry, str]] = []
            try:
                await self._write(batch, refused)
            except StorageError as error:
                self._retry_at = time.monotonic() + self.retry_interval
                if not self._failing:
                    self._failing = True
                    level = logging.WARNING if isinstance(error, StorageUnavailable) else logging.ERROR
                    log.log(level, "request log: %d entr(ies) wait until the database answers: %s",
                            len(self._pending), error)
                return
            for _ in batch:
                self._pending.popleft()
            for entry, reason in refused:
                self.refused += 1
                log.error("request log entry %s was refused by the database: %s", entry.request_id, reason)
            if self._failing:
                self._failing = False
                log.warning("request log: the database takes entries again")

    async def _write(self, batch: Sequence[RequestLogEntry], refused: list[tuple[RequestLogEntry, str]]) -> None:
        try:
            self.written += await self.repository.write(batch)
            return
        except DataRejected as error:
            reason = str(error)
        if len(batch) == 1:
            refused.append((batch[0], reason))
            return
        middle = len(batch) // 2
        await self._write(batch[:middle], refused)
        await self._write(batch[middle:], refused)

    # -- retention -------------------------------------------------------------------------------

    async def purge(self, before: datetime) -> int:
        deleted = await self.repository.purge(before, self.purge_batch)
        self.purged += deleted
        return deleted

    async def _purge_loop(self) -> None:
        wait = self.purge_delay
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)
            if self._stopping:
                return
            wait = self.purge_interval
            try:
                deleted = await self.purge(datetime.now(UTC) - timedelta(seconds=self.retention_s))
            except StorageError as error:
                log.warning("request log entries past their retention could not be deleted (tried again in "
                            "%.0f s): %s", self.purge_interval, error)
                continue
            if deleted:
                log.info("deleted %d request log entr(ies) older than %d day(s)", deleted,
                         self.retention_s // 86_400)


def _text(body: bytes, size: int) -> str:
    """A body as text, with a note at its end where it was cut."""
    text = body.decode("utf-8", "replace")
    return text + CUT.format(kept=len(body), size=size) if size > len(body) else text

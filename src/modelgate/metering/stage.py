"""The metering stage: exactly one usage record per call, however the call ends."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from modelgate.metering.pricing import NANO, PriceBook, cache_hit_nanos
from modelgate.metering.usage import UsageWatch, bounded_usage, estimate_request_tokens
from modelgate.pipeline.contract import Call, Handler
from modelgate.schema.errors import GatewayError
from modelgate.schema.events import Event
from modelgate.schema.request import ChatRequest
from modelgate.storage.bounds import MAX_USD, storable
from modelgate.storage.records import UsageRecord

log = logging.getLogger("modelgate.metering")

MAX_NANOS = round(MAX_USD * NANO)
CLIENT_CLOSED = 499  # nginx's status for a client that closed the connection before the answer


class Recorder(Protocol):
    def record(self, record: UsageRecord) -> None:
        """Take the record without waiting (``UsageRecorder``)."""


class Metering:
    """Stage: watches the events of a call go by and, when the call ends (answered, failed,
    refused by an inner stage, cut off, or abandoned by its client), hands one ``UsageRecord`` to
    the recorder, priced from the price table.

    It is the outermost stage, so that requests refused by rate limits or budgets are recorded
    too (status 429, no tokens). Failures before the pipeline (bad key, bad JSON, unknown model)
    have no call and no record.

    What the upstream said (its model, its error text, its token counts) is hostile input: the
    record is made storable here (``storage.bounds.storable``), so that the database takes it.
    """

    def __init__(self, recorder: Recorder, prices: PriceBook,
                 observers: Sequence[Callable[[Call, UsageRecord], None]] = ()) -> None:
        self.recorder = recorder
        self.prices = prices
        # Told of each record as it is made (metrics, the request's span); they must not fail.
        self.observers = list(observers)
        self.in_flight = 0  # calls started and not yet recorded

    def __call__(self, call: Call, next: Handler) -> AsyncGenerator[Event, None]:
        return self._metered(call, next)

    async def _metered(self, call: Call, next: Handler) -> AsyncGenerator[Event, None]:
        watch = UsageWatch(call.output)
        status = 200
        error: str | None = None
        self.in_flight += 1
        try:
            async for event in next(call):
                watch.observe(event)
                yield event
        except GatewayError as failure:
            status, error = failure.status, f"{failure.code or type(failure).__name__}: {failure.message}"
            raise
        except (asyncio.CancelledError, GeneratorExit):
            # Cancelled by the client's disconnect, or closed by a surface that stopped reading.
            status, error = CLIENT_CLOSED, "client closed the request"
            raise
        except Exception as failure:
            status, error = 500, f"internal_error: {failure!r}"
            raise
        finally:
            self.in_flight -= 1
            record = call.record = self.made_record(call, watch, status, error)
            call.response_id = watch.response_id
            call.finish_reasons = watch.finish_reasons
            self.recorder.record(record)
            for observe in self.observers:
                try:
                    observe(call, record)
                except Exception:  # what observes a record must never cost the request or its record
                    log.exception("an observer of usage records failed")

    def made_record(self, call: Call, watch: UsageWatch, status: int, error: str | None) -> UsageRecord:
        """``usage_record``, or where making it fails (a bug), a record of the call without usage."""
        try:
            return self.usage_record(call, watch, status, error)
        except Exception as failure:
            log.exception("request %s: its usage record could not be made", call.request_id)
            principal = call.principal
            return storable(UsageRecord(
                request_id=call.request_id, created_at=datetime.now(UTC), project=principal.project,
                key_id=principal.key_id, deployment=call.deployment.name, provider=None, model=None,
                route=call.route or call.kind, status=status, attempts=call.attempts,
                error=f"internal_error: usage record: {failure!r}"))

    def usage_record(self, call: Call, watch: UsageWatch, status: int, error: str | None) -> UsageRecord:
        now = time.monotonic()
        request = call.request
        usage = bounded_usage(watch.usage if watch.usage is not None
                              else watch.final(estimate_request_tokens(request)))
        principal = call.principal
        streamed = isinstance(request, ChatRequest) and request.stream
        record = storable(UsageRecord(
            request_id=call.request_id,
            created_at=datetime.fromtimestamp(time.time() - (now - call.started), UTC),
            project=principal.project,
            key_id=principal.key_id,
            deployment=call.deployment.name,
            provider=call.provider,
            model=call.upstream_model,
            route=call.route or call.kind,
            input_tokens=usage.input_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            output_tokens=usage.output_tokens,
            latency_ms=round((now - call.started) * 1000, 3),
            ttft_ms=(round((watch.first_token - call.started) * 1000, 3)
                     if streamed and watch.first_token is not None else None),
            status=status,
            attempts=call.attempts,
            error=error,
            verdict=call.safety.summary if call.safety is not None else None,
        ))
        # Priced by the stored provider and model: strings, whatever the upstream sent.
        prices = self.prices.lookup(call.deployment.name, record.provider, record.model)
        if call.cache_hit:
            # No upstream was called: what it would have cost is saved, and the customer pays the
            # deployment's price for answers from the cache.
            record.cache_hit = True
            record.saved = bounded_amount(prices.cost.nanos(usage))
            record.price = bounded_amount(cache_hit_nanos(call.deployment, usage))
            return record
        record.cost = bounded_amount(prices.cost.nanos(usage))
        record.price = bounded_amount(prices.price.nanos(usage))
        return record


def bounded_amount(nanos: int) -> float:
    """Nano-dollars as USD, within what a usage record holds."""
    return min(nanos, MAX_NANOS) / NANO if nanos > 0 else 0.0

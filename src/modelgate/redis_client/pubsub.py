"""A subscription: the messages published on some channels, on a connection of its own.

In RESP2 a connection that subscribed takes no other commands, so each subscription opens its own.
Redis pushes to it the confirmations of ``SUBSCRIBE``, then every message; this connection queues
the messages for the iterator. An idle connection is sent a PING every so often (a dead peer that
never closed the connection would otherwise go unnoticed). A lost connection ends the iteration
with ``ConnectionError`` (``TimeoutError`` when a PING went unanswered), after the messages it had
received; reconnecting is the caller's (it knows what to re-read after a gap).

The health check: every ``health_interval`` seconds, a connection that received nothing since the
last check is sent a PING; one that still received nothing by the next check is given up. A dead
connection is noticed within two intervals, and an idle one costs a PING per interval.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from modelgate.redis_client.circuit import Circuit
from modelgate.redis_client.connection import Address, Connection
from modelgate.redis_client.resp import INCOMPLETE, RespError, encode, parse

HEALTH_INTERVAL_S = 30.0
# A consumer this far behind stops the reading (TCP then holds Redis back) until it catches up.
HIGH_WATER = 10_000
LOW_WATER = 1_000
PING = encode(["PING"])


@dataclass(frozen=True, slots=True)
class Message:
    channel: str
    data: bytes


class _Subscriber(Connection):
    """Replies to the set-up commands go to their requests; what comes after SUBSCRIBE is pushed."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.get_running_loop()
        self.messages: deque[Message] = deque()
        self.error: Exception | None = None
        self.expected: set[bytes] = set()
        self.confirmed: asyncio.Future[None] = self.loop.create_future()
        self.waiter: asyncio.Future[None] | None = None
        self.received = False  # since the last health check
        self.paused = False

    def data_received(self, data: bytes) -> None:
        self.received = True
        self.buffer += data
        position = 0
        while True:
            reply, end = parse(self.buffer, position)
            if reply is INCOMPLETE:
                break
            position = end
            if self.waiting:  # AUTH, SELECT
                future = self.waiting.popleft()
                if not future.done():
                    future.set_result(reply)
            else:
                self._pushed(reply)
        if position:
            del self.buffer[:position]
        if self.messages:
            self.wake()
            if len(self.messages) >= HIGH_WATER and not self.paused and self.transport is not None:
                self.paused = True
                self.transport.pause_reading()

    def _pushed(self, reply: Any) -> None:
        if isinstance(reply, RespError):  # refused SUBSCRIBE (an ACL), or a PING out of turn
            self.fail(reply)
        elif isinstance(reply, list) and len(reply) >= 3 and reply[0] == b"message":
            self.messages.append(Message(reply[1].decode(), reply[2]))
        elif isinstance(reply, list) and len(reply) >= 2 and reply[0] == b"subscribe":
            self.expected.discard(reply[1])
            if not self.expected and not self.confirmed.done():
                self.confirmed.set_result(None)
        # "pong" (the health check's answer: received is all it needed) and "unsubscribe": nothing to do

    def fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        if not self.confirmed.done():
            self.confirmed.set_exception(error)
            self.confirmed.exception()  # retrieved: whoever waits on it raises it itself
        super().fail(error)
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self) -> Message:
        message = self.messages.popleft()
        if self.paused and len(self.messages) <= LOW_WATER and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return message


class Subscription:
    """``async for message in subscription`` once started; see ``RedisClient.subscribe``."""

    def __init__(self, address: Address, channels: Sequence[str], timeout: float, health_interval: float,
                 forget: Callable[[Subscription], None], circuit: Circuit | None = None) -> None:
        if not channels:
            raise ValueError("subscribe to at least one channel")
        self.circuit = circuit
        self.address = address
        self.channels = tuple(channels)
        self.timeout = timeout
        self.health_interval = health_interval
        self._forget = forget
        self._connection: _Subscriber | None = None
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._pinged = False
        self.pings = 0  # PINGs the health check sent

    async def start(self) -> None:
        """Connect and subscribe; when it returns, Redis confirmed every channel (within the
        client's timeout), so nothing published from then on is missed. While the client's circuit
        is open it fails at once with ``RedisUnavailable``; a Redis that does not answer opens it."""
        if self._connection is not None or self._closed:
            raise RuntimeError("a subscription starts once")
        try:
            if self.circuit is not None:
                self.circuit.check()
            connection = self._connection = await self.address.open(_Subscriber, self.timeout)
            connection.expected = {channel.encode() for channel in self.channels}
            assert connection.transport is not None
            connection.transport.write(encode(["SUBSCRIBE", *self.channels]))
            await asyncio.wait_for(asyncio.shield(connection.confirmed), self.timeout)
        except BaseException as error:
            await self.close()
            if isinstance(error, OSError) and self.circuit is not None:
                self.circuit.failed(error)
            raise
        self._timer = connection.loop.call_later(self.health_interval, self._check)

    async def __aenter__(self) -> Subscription:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        connection = self._connection
        if connection is None:
            if self._closed:
                raise StopAsyncIteration
            raise RuntimeError("start() the subscription first")
        while not connection.messages:
            if self._closed:
                raise StopAsyncIteration
            if connection.error is not None:
                raise connection.error
            waiter = connection.waiter = connection.loop.create_future()
            await waiter
        if self._closed:
            raise StopAsyncIteration
        return connection.take()

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.closed and not self._closed

    def _check(self) -> None:
        connection = self._connection
        if connection is None or connection.closed or connection.transport is None:
            return
        if connection.received:
            self._pinged = False
        elif self._pinged:
            error = TimeoutError(f"Redis did not answer a PING within {self.health_interval}s")
            connection.fail(error)
            if self.circuit is not None:
                self.circuit.failed(error)
            return
        else:
            connection.transport.write(PING)
            self._pinged = True
            self.pings += 1
        connection.received = False
        self._timer = connection.loop.call_later(self.health_interval, self._check)

    async def close(self) -> None:
        """Unsubscribes by closing the connection; an iteration in progress ends."""
        self._closed = True
        self._forget(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        connection = self._connection
        if connection is not None:
            if connection.transport is not None and not connection.closed:
                connection.closed = True
                connection.transport.close()
            connection.wake()

"""Rate limits shared by every gateway process through Redis: one Lua script, one round trip.

The script reads the clock of Redis (``TIME``), so gateway processes on hosts whose clocks
disagree still share one notion of "now". All counters of a request (key, project and deployment;
requests and tokens) are checked and charged in one script run: either all are charged or none,
and no other request runs in between.

If Redis cannot be reached the decision says so (``unchecked``), at once while the client's
circuit is open: the stage lets the request through or refuses it, as ``limits.redis_outage``
says. Corrections queued meanwhile are dropped (nothing was charged for them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from modelgate.limits.gcra import Counter, CounterState, Decision
from modelgate.redis_client import RedisClient, RespError, Script
from modelgate.redis_client.deferred import CARRY_DELAY_S, CARRY_MAX, UNREACHABLE, OutageLog, Sender

log = logging.getLogger("modelgate.limits")


# KEYS: the n counters to charge, then counters to correct. ARGV: n, limit and cost of each
# counter to charge, then limit and delta of each correction (carried along from earlier requests,
# applied first). Returns "allowed,blocked,retry_ms" (blocked 1-based, 0 if none) and then
# ",remaining,reset_ms" per charged counter: one string parses faster than a RESP array.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local window, eps = 60000, 0.001
local n = tonumber(ARGV[1])
for j = n + 1, #KEYS do
  local limit = tonumber(ARGV[2 * j])
  local tat = tonumber(redis.call('GET', KEYS[j])) or now
  if tat < now then tat = now end
  local after = tat + tonumber(ARGV[2 * j + 1]) * window / limit
  if after > now then
    redis.call('SET', KEYS[j], string.format('%.3f', after), 'PX', math.max(1, math.ceil(after - now)))
  else
    redis.call('DEL', KEYS[j])
  end
end
local tats, after = {}, {}
local retry, blocked = 0, 0
for i = 1, n do
  local limit = tonumber(ARGV[2 * i])
  local cost = math.min(tonumber(ARGV[2 * i + 1]), limit)
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  tats[i] = tat
  after[i] = tat + cost * window / limit
  local wait = after[i] - now - window
  if wait > eps and wait > retry then retry = wait; blocked = i end
end
if blocked == 0 then
  for i = 1, n do
    redis.call('SET', KEYS[i], string.format('%.3f', after[i]), 'PX', math.max(1, math.ceil(after[i] - now)))
    tats[i] = after[i]
  end
end
local out = {blocked == 0 and 1 or 0, blocked, math.ceil(retry)}
for i = 1, n do
  local limit = tonumber(ARGV[2 * i])
  local interval = window / limit
  local backlog = tats[i] - now
  local remaining = math.floor((window - backlog) / interval + eps / interval)
  if remaining < 0 then remaining = 0 elseif remaining > limit then remaining = limit end
  out[#out + 1] = remaining
  out[#out + 1] = math.ceil(backlog)
end
return table.concat(out, ',')
"""

# KEYS: counters. ARGV: limit and delta of each (a negative delta gives units back).
ADJUST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i - 1])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local after = tat + tonumber(ARGV[2 * i]) * 60000 / limit
  if after > now then
    redis.call('SET', KEYS[i], string.format('%.3f', after), 'PX', math.max(1, math.ceil(after - now)))
  else
    redis.call('DEL', KEYS[i])
  end
end
return #KEYS
"""


class RedisLimiter:
    """GCRA counters in Redis, keys ``{prefix}{counter key}``."""

    def __init__(self, redis: RedisClient, prefix: str = "modelgate:rl:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._acquire = Script(ACQUIRE)
        self._adjust = Script(ADJUST)
        self._corrections: list[tuple[Counter, int]] = []
        self._sender = Sender(self.flush, delay=CARRY_DELAY_S)
        self._outage = OutageLog("rate limits", "token corrections dropped")

    async def acquire(self, counters: tuple[Counter, ...], costs: tuple[int, ...]) -> Decision:
        carried = self._corrections[:CARRY_MAX]
        del self._corrections[:CARRY_MAX]
        keys = [self.prefix + c.key for c in counters]
        args: list[int] = [len(counters)]
        for counter, cost in zip(counters, costs, strict=True):
            args += (counter.limit, cost)
        for counter, delta in carried:
            keys.append(self.prefix + counter.key)
            args += (counter.limit, delta)
        try:
            reply = await self.redis.run(self._acquire, keys, args)
        except UNREACHABLE as error:
            self._corrections[:0] = carried
            return Decision(True, (), self.redis.circuit.retry_after() * 1000, unchecked=str(error))
        out = [int(x) for x in reply.split(b",")]
        states = tuple(CounterState(c.limit, out[3 + 2 * i], float(out[4 + 2 * i])) for i, c in enumerate(counters))
        return Decision(out[0] == 1, states, float(out[2]), out[1] - 1)

    def adjust(self, counters: Sequence[Counter], deltas: Sequence[int]) -> None:
        """Queue corrections: the next request carries them in its script run, or, if none comes
        within ``CARRY_DELAY_S``, a background task sends them (never on the request path)."""
        for counter, delta in zip(counters, deltas, strict=True):
            if delta:
                self._corrections.append((counter, delta))
        if self._corrections:
            self._sender.wake()

    async def flush(self) -> bool:
        """Send the queued corrections (a lost one leaves the estimate charged: the safe side)."""
        async with self._sender.lock:
            while self._corrections:
                batch, self._corrections = self._corrections[:500], self._corrections[500:]
                args: list[int] = []
                for counter, delta in batch:
                    args += (counter.limit, delta)
                try:
                    await self.redis.run(self._adjust, [self.prefix + c.key for c, _ in batch], args)
                except UNREACHABLE as error:
                    self._outage.failed(error)
                except RespError:
                    log.exception("rate-limit corrections refused by Redis; %d dropped", len(batch))
        return True

    async def close(self) -> None:
        await self._sender.stop()
        await self.flush()

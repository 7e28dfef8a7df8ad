"""Budget accounts in Redis, shared by every gateway process; each operation is one Lua script.

An account is a hash ``{prefix}{scope}:{owner}:{period}`` with ``spent`` and ``reserved``
(nano-dollars) and a sorted set ``...:holds`` of the reservations in flight, scored by when they
expire. A gateway that dies mid-request never settles its reservations; they expire after
``HOLD_TTL_MS`` and the next reservation on that account releases them, so a crash cannot shrink a
budget for longer than that.

Settlements are queued: the next reservation carries them in its own script run, or a background
task sends them if none comes soon; the end of a request does not wait on Redis. Until it lands,
a settlement's reservation (the most the request could cost) still holds its place: the delay
only ever errs on the safe side. If Redis cannot be reached (at once while the client's circuit
is open) the verdict says so (``unchecked``), and the stage refuses the request or lets it pass
as ``budgets.redis_outage`` says; settlements wait for Redis, reservations expire, and the
periodic merge from the database (``budgets.sync``) raises ``spent`` to what was recorded.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Mapping

from modelgate.budgets.ledger import Budget, Hold, PeriodClock, Verdict
from modelgate.redis_client import RedisClient, RespError, Script
from modelgate.redis_client.deferred import CARRY_DELAY_S, CARRY_MAX, UNREACHABLE, OutageLog, Sender

log = logging.getLogger("modelgate.budgets")

HOLD_TTL_MS = 15 * 60 * 1000  # longer than any request is expected to run
KEEP_AFTER_PERIOD_S = 86_400  # accounts stay readable for a day after their period ends
MAX_QUEUED = 100_000

# KEYS: account and holds of each of the n budgets, then of each settlement carried along (applied
# first). ARGV: n, amount, least, hold member prefix, hold ttl ms, then limit and key ttl (s) of
# each budget, then hold member, -amount and actual of each settlement. Holds as much of amount as
# every budget has room for, at least least. Returns {allowed, blocked (1-based), spent, reserved
# of the blocked} when refused, {1, 0, amount held, 0} when allowed. The hold's member is the
# prefix and the amount held, so that an expired hold says how much it frees.
RESERVE = """
local n = tonumber(ARGV[1])
local amount, least = tonumber(ARGV[2]), tonumber(ARGV[3])
for j = 1, (#KEYS - 2 * n) / 2 do
  local account, holds = KEYS[2 * n + 2 * j - 1], KEYS[2 * n + 2 * j]
  local a = 5 + 2 * n + 3 * (j - 1)
  if redis.call('ZREM', holds, ARGV[a + 1]) == 1 then
    redis.call('HINCRBY', account, 'reserved', ARGV[a + 2])
  end
  redis.call('HINCRBY', account, 'spent', ARGV[a + 3])
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local take = amount
for i = 1, n do
  local account, holds = KEYS[2 * i - 1], KEYS[2 * i]
  local expired = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  if #expired > 0 then
    local freed = 0
    for _, member in ipairs(expired) do
      freed = freed + tonumber(string.match(member, ':(%d+)$'))
    end
    redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
    redis.call('HINCRBY', account, 'reserved', string.format('%.0f', -freed))
  end
  local v = redis.call('HMGET', account, 'spent', 'reserved')
  local spent, reserved = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  local room = tonumber(ARGV[4 + 2 * i]) - spent - reserved
  if room < least then
    return {0, i, spent, reserved}
  end
  if room < take then take = room end
end
local held = string.format('%.0f', take)
local member = ARGV[4] .. ':' .. held
for i = 1, n do
  local account, holds = KEYS[2 * i - 1], KEYS[2 * i]
  local ttl = tonumber(ARGV[5 + 2 * i])
  redis.call('HINCRBY', account, 'reserved', held)
  redis.call('ZADD', holds, now + tonumber(ARGV[5]), member)
  redis.call('EXPIRE', account, ttl)
  redis.call('EXPIRE', holds, ttl)
end
return {1, 0, take, 0}
"""

# KEYS: account and holds per settlement. ARGV: hold member, -amount and actual per settlement.
SETTLE = """
for i = 1, #KEYS / 2 do
  local account, holds = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('ZREM', holds, ARGV[3 * i - 2]) == 1 then
    redis.call('HINCRBY', account, 'reserved', ARGV[3 * i - 1])
  end
  redis.call('HINCRBY', account, 'spent', ARGV[3 * i])
end
return #KEYS / 2
"""

# KEYS: accounts. ARGV: key ttl (s), then the database's total for each account.
MERGE = """
for i = 1, #KEYS do
  local spent = tonumber(redis.call('HGET', KEYS[i], 'spent')) or 0
  if tonumber(ARGV[i + 1]) > spent then
    redis.call('HSET', KEYS[i], 'spent', ARGV[i + 1])
    redis.call('EXPIRE', KEYS[i], ARGV[1])
  end
end
return #KEYS
"""


class RedisLedger:
    def __init__(self, redis: RedisClient, prefix: str = "modelgate:budget:", periods: PeriodClock | None = None,
                 hold_ttl_ms: int = HOLD_TTL_MS) -> None:
        self.redis = redis
        self.prefix = prefix
        self.hold_ttl_ms = hold_ttl_ms
        self.periods = periods or PeriodClock()
        self._reserve = Script(RESERVE)
        self._settle = Script(SETTLE)
        self._merge = Script(MERGE)
        self._ids = itertools.count()
        self._nonce = secrets.token_hex(4)
        self._queue: list[tuple[str, str, str, int, int]] = []  # account, holds, member, -amount, actual
        self._sender = Sender(self.flush, delay=CARRY_DELAY_S)
        self._outage = OutageLog("budgets", "settlements wait for it")

    def account_key(self, scope: str, owner: str, period: str) -> str:
        return f"{self.prefix}{scope}:{owner}:{period}"

    def _ttl(self, period: str) -> int:
        return int(self.periods.seconds_left(period)) + KEEP_AFTER_PERIOD_S

    async def reserve(self, budgets: tuple[Budget, ...], amount: int, least: int | None = None) -> Verdict:
        periods = tuple(self.periods.current(b.period) for b in budgets)
        name = f"{self._nonce}.{next(self._ids)}"
        carried = self._queue[:CARRY_MAX]
        del self._queue[:CARRY_MAX]
        keys: list[str] = []
        args: list[str | int] = [len(budgets), amount, amount if least is None else least, name, self.hold_ttl_ms]
        for budget, period in zip(budgets, periods, strict=True):
            account = self.account_key(budget.scope, budget.owner, period)
            keys += (account, account + ":holds")
            args += (budget.limit, self._ttl(budget.period))
        for account, holds, member, release, actual in carried:
            keys += (account, holds)
            args += (member, release, actual)
        try:
            out = await self.redis.run(self._reserve, keys, args)
        except UNREACHABLE as error:
            self._queue[:0] = carried
            # Held nowhere; should the request go ahead, its settlement adds its cost to the spend.
            return Verdict(Hold(budgets, periods, amount, f"{name}:{amount}"), unchecked=str(error),
                           retry_after=self.redis.circuit.retry_after())
        if not out[0]:
            return Verdict(None, int(out[1]) - 1, int(out[2]), int(out[3]))
        taken = int(out[2])
        return Verdict(Hold(budgets, periods, taken, f"{name}:{taken}"))

    def settle(self, hold: Hold, actual: int) -> None:
        for budget, period in zip(hold.budgets, hold.periods, strict=True):
            account = self.account_key(budget.scope, budget.owner, period)
            self._queue.append((account, account + ":holds", hold.member, -hold.amount, actual))
        if len(self._queue) > MAX_QUEUED:
            dropped = len(self._queue) - MAX_QUEUED
            del self._queue[:dropped]
            log.error("%d budget settlements dropped: Redis has not taken them for too long", dropped)
        self._sender.wake()

    async def flush(self) -> bool:
        """Send the queued settlements; False if Redis could not be reached (they stay queued)."""
        async with self._sender.lock:
            while self._queue:
                batch = self._queue[:300]
                del self._queue[:300]
                keys: list[str] = []
                args: list[str | int] = []
                for account, holds, member, release, actual in batch:
                    keys += (account, holds)
                    args += (member, release, actual)
                try:
                    await self.redis.run(self._settle, keys, args)
                except UNREACHABLE as error:
                    self._queue[:0] = batch
                    self._outage.failed(error)
                    return False
                except RespError:
                    log.exception("budget settlements refused by Redis; %d dropped", len(batch))
        return True

    async def merge_spent(self, scope: str, period_id: str, totals: Mapping[str, int]) -> None:
        """Raise each account to the database's total; skipped while Redis is unreachable (the
        next merge brings it up to date)."""
        period = "day" if len(period_id) == 10 else "month"
        items = list(totals.items())
        for start in range(0, len(items), 500):
            chunk = items[start:start + 500]
            try:
                await self.redis.run(self._merge, [self.account_key(scope, owner, period_id) for owner, _ in chunk],
                                     [self._ttl(period), *(total for _, total in chunk)])
            except UNREACHABLE as error:
                self._outage.failed(error)
                return

    async def close(self) -> None:
        await self._sender.stop()
        await self.flush()

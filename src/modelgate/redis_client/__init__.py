"""The gateway's Redis client, one per process (low layer: it imports nothing of modelgate above it).

``RedisClient.from_url(url)`` connects on first use. Limits and budgets run Lua scripts on it
(``run``), key and breaker sync send plain commands and subscribe to channels (``subscribe``).
Failures surface as ``OSError``: ``ConnectionError`` (refused, lost) or ``TimeoutError``, and
``RedisUnavailable`` (a ``ConnectionError``) at once while the circuit around Redis is open
(``circuit.py``); an error reply from Redis as ``RespError``.
"""

from modelgate.redis_client.circuit import Circuit, RedisUnavailable
from modelgate.redis_client.client import DEFAULT_TIMEOUT_S, RedisClient, Script
from modelgate.redis_client.pubsub import Message, Subscription
from modelgate.redis_client.resp import RespError

__all__ = ["DEFAULT_TIMEOUT_S", "Circuit", "Message", "RedisClient", "RedisUnavailable", "RespError", "Script",
           "Subscription"]

"""The response cache: answers kept and given again to the same requests (stage.py), by their
canonical form (keys.py) or, in semantic mode, by the meaning of their last user turn
(semantic.py), in the process or in Redis (stores.py)."""

from modelgate.cache.semantic import Index, MemoryIndex, RedisIndex
from modelgate.cache.stage import HEADER, Embed, ResponseCache
from modelgate.cache.stores import MemoryStore, RedisStore, Store

__all__ = ["HEADER", "Embed", "Index", "MemoryIndex", "MemoryStore", "RedisIndex", "RedisStore", "ResponseCache",
           "Store"]

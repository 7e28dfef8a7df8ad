"""Per-simulator mutable state: counters, runtime faults, signing secret and small caches.

One :class:`SimState` lives on each running simulator's app; nothing is shared between simulator instances, so
two simulators in one process (or one test after another) never see each other's faults, caches or secrets.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from modelgate.simulator.config import SimConfig
from modelgate.simulator.faults import FaultBook

_CACHE_LIMIT = 4096


class BoundedSet:
    """A set that forgets its oldest members past ``limit``, for caches that must not grow without bound."""

    def __init__(self, limit: int = _CACHE_LIMIT) -> None:
        self._items: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def add(self, key: str) -> None:
        self._items[key] = None
        self._items.move_to_end(key)
        while len(self._items) > self._limit:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


class Signer:
    """HMAC signatures for opaque reasoning state (Anthropic thinking, Gemini thought signatures).

    The secret is random per simulator instance, so a signature is only accepted by the simulator that issued
    it — the same provider-bound behaviour a gateway must respect upstream.
    """

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def digest(self, purpose: str, text: str) -> bytes:
        return hmac.new(self._secret, f"{purpose}\0{text}".encode(), hashlib.sha256).digest()

    def sign(self, purpose: str, text: str) -> str:
        return base64.b64encode(self.digest(purpose, text)).decode()

    def verify(self, purpose: str, text: str, signature: object) -> bool:
        return isinstance(signature, str) and hmac.compare_digest(self.sign(purpose, text), signature)


@dataclass
class Stats:
    """Request and fault counters served by ``GET /sim/stats``."""

    by_model: Counter[str] = field(default_factory=Counter)
    by_api: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": sum(self.by_api.values()),
            "by_model": dict(self.by_model),
            "by_api": dict(self.by_api),
            "faults": dict(self.faults),
            "faults_served": sum(self.faults.values()),
        }


class SimState:
    """Everything one running simulator remembers between requests."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.faults = FaultBook()
        self.stats = Stats()
        self.signer = Signer()
        # Anthropic prompt-cache prefixes already written, and the Gemini function calls issued (signed or not).
        self.prompt_cache = BoundedSet()
        self.signed_calls = BoundedSet()
        self.stopping = asyncio.Event()

    def reset(self) -> None:
        """Forget counters, runtime faults and caches (``POST /sim/reset``); config and secret stay."""
        self.faults.clear()
        self.stats = Stats()
        self.prompt_cache.clear()
        self.signed_calls.clear()

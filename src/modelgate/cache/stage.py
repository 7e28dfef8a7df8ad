"""The response cache stage: a deployment's answers given again to the same requests.

It sits after the content policy (whose input checks every request passes, and whose output
checks see a replayed answer as they see a fresh one) and before the budget (a hit reserves
nothing, unless the deployment prices hits: then it passes the budget like any request). Every
chat response of a deployment says what the cache did in ``x-modelgate-cache``:

- ``hit``: the answer came from the cache; the upstream was not called.
- ``miss``: looked up, not found; the upstream's answer is kept if it is whole (every choice
  finished, none by a content filter, nothing failed or was cancelled).
- ``bypass``: not looked up: the deployment has no cache, the request is not cacheable
  (``keys.why_not_cached``), or the client said ``Cache-Control: no-cache`` (the fresh answer
  then replaces the cached one) or ``no-store`` (nothing is read or kept).

A hit is metered like any request (metering/stage.py): the tokens it would have cost, no provider
cost, the deployment's ``price.cache_hit``, and ``saved``, the cost it did not spend.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing

import numpy as np

from modelgate.cache.entries import Entry, Recording, decode, encode
from modelgate.cache.keys import canonical, digest, last_user_text, why_not_cached
from modelgate.cache.semantic import Index, Room, Vector
from modelgate.cache.stores import GLOBAL, Slot, Store
from modelgate.config.cache import DeploymentCache
from modelgate.pipeline.contract import Call, Handler, Stage
from modelgate.schema.events import Event, Finish
from modelgate.schema.request import ChatRequest

log = logging.getLogger("modelgate.cache")

HEADER = "x-modelgate-cache"
# The text of a last user turn the semantic cache embeds: longer ones are looked up exactly only.
MAX_SEMANTIC_CHARS = 4000

Embed = Callable[[Call, str, str], Awaitable[Vector | None]]
"""(the call, its deployment's ``cache.embedder``, a text) → the text's vector, length 1; None
where it cannot be had (the lookup is then exact only)."""


class ResponseCache:
    """Stage: see the module docstring. ``budget``: the budget stage, which hits a deployment
    charges for pass; ``max_entry_bytes``: the largest answer kept."""

    def __init__(self, store: Store, *, index: Index | None = None, embed: Embed | None = None,
                 budget: Stage | None = None, max_entry_bytes: int = 1 << 20) -> None:
        self.store = store
        self.index = index
        self.embed = embed
        self.budget = budget
        self.max_entry_bytes = max_entry_bytes
        self._keeping: set[asyncio.Task[None]] = set()

    def __call__(self, call: Call, next: Handler) -> AsyncGenerator[Event, None]:
        settings = call.deployment.cache
        request = call.request
        if not isinstance(request, ChatRequest):
            return next(call)
        if settings is None:
            call.response_headers[HEADER] = "bypass"
            return next(call)
        control = call.cache_control
        if control and "no-store" in control.lower():
            return self._bypassed(call, next)
        why = why_not_cached(request, settings, call.deployment.params)
        if why is not None:
            log.debug("request %s is not cached: %s", call.request_id, why)
            return self._bypassed(call, next)
        return self._cached(call, next, settings, request, bool(control and "no-cache" in control.lower()))

    def _bypassed(self, call: Call, next: Handler) -> AsyncGenerator[Event, None]:
        call.response_headers[HEADER] = "bypass"
        return next(call)

    async def _cached(self, call: Call, next: Handler, settings: DeploymentCache, request: ChatRequest,
                      refresh: bool) -> AsyncGenerator[Event, None]:
        deployment = call.deployment.name
        scope = GLOBAL if settings.scope == "global" else (call.principal.project or "")
        slot = Slot(deployment, scope, digest(canonical(request)))
        text = last_user_text(request) if settings.mode == "semantic" and self.index is not None else None
        if text is not None and len(text) > MAX_SEMANTIC_CHARS:
            text = None
        room = Room(deployment, scope, digest(canonical(request, leave_out_last_user_text=True))) \
            if text is not None else None
        vector: Vector | None = None
        if not refresh:
            entry = await self._get(slot)
            if entry is None and room is not None and text is not None and self.index is not None \
                    and await self.index.sync(room):
                vector = await self._embed(call, settings, text)
                entry = await self._nearest(room, vector, settings.threshold) if vector is not None else None
            if entry is not None:
                call.response_headers[HEADER] = "hit"
                async with aclosing(self._hit(call, entry)) as replayed:
                    async for event in replayed:
                        yield event
                return
        call.response_headers[HEADER] = "bypass" if refresh else "miss"
        # A semantic miss's last turn is embedded while the upstream answers, and the answer is
        # indexed before the response ends: a paraphrase asked right after it finds it.
        embedding = asyncio.ensure_future(self._embed(call, settings, text)) \
            if vector is None and room is not None and text is not None else None
        try:
            recording = Recording(max(1, request.n or 1))
            asked = request.max_tokens
            async with aclosing(next(call)) as events:
                async for event in events:
                    recording.add(event)
                    yield event
            if not recording.whole:
                return
            if request.max_tokens != asked and any(isinstance(e, Finish) and e.reason == "length"
                                                   for e in recording.events):
                return  # cut short by a max_tokens the budget gave it, not by the request's own
            value = encode(Entry(call.provider, call.upstream_model, recording.events))
            if len(value) > self.max_entry_bytes:
                return
            if room is None:  # the exact answer is kept behind the response (with Redis, one SET)
                keeping = asyncio.create_task(self._keep(call, settings, slot, value))
                self._keeping.add(keeping)
                keeping.add_done_callback(self._keeping.discard)
                return
            if embedding is not None:
                vector = await embedding
            await self._keep(call, settings, slot, value, room, vector)
        finally:
            if embedding is not None and not embedding.done():
                embedding.cancel()

    def _hit(self, call: Call, entry: Entry) -> AsyncGenerator[Event, None]:
        call.cache_hit = True
        call.provider, call.upstream_model = entry.provider, entry.model
        price = call.deployment.price
        if self.budget is not None and price is not None and price.cache_hit > 0:
            return self.budget(call, lambda _: _replay(entry))
        return _replay(entry)

    async def _get(self, slot: Slot) -> Entry | None:
        found = await self.store.get(slot)
        return decode(found) if found is not None else None

    async def _nearest(self, room: Room, vector: Vector, threshold: float) -> Entry | None:
        assert self.index is not None
        near = self.index.nearest(room, vector)
        if near is None or near[0] < threshold:
            return None
        return await self._get(Slot(room.deployment, room.scope, near[1]))

    async def _embed(self, call: Call, settings: DeploymentCache, text: str) -> Vector | None:
        if self.embed is None:
            return None
        try:
            vector = await self.embed(call, settings.embedder, text)
        except Exception:  # the lookup is then exact only; the request goes on
            log.exception("request %s: the semantic cache's embedder %r failed", call.request_id, settings.embedder)
            return None
        if vector is None:
            return None
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        length = float(np.linalg.norm(vector))
        return vector / length if length > 0 else None

    async def _keep(self, call: Call, settings: DeploymentCache, slot: Slot, value: bytes, room: Room | None = None,
                    vector: Vector | None = None) -> None:
        """Store the answer, and index its last turn where it was embedded. A store that fails is
        logged (the stores say why once where their link is down); the request is not touched."""
        try:
            await self.store.put(slot, value, settings.ttl)
            if room is not None and vector is not None and self.index is not None:
                await self.index.add(room, vector, slot.digest, settings.ttl)
        except Exception:
            log.exception("request %s: its answer could not be cached", call.request_id)

    async def clear(self, deployment: str | None, project: str | None) -> int:
        """Drop the cached answers of a deployment, a project (its own scope: a global cache's
        answers belong to no project), both, or all; how many answers were dropped."""
        if self.index is not None:
            await self.index.clear(deployment, project)
        return await self.store.clear(deployment, project)

    async def close(self) -> None:
        """Let the answers being kept finish."""
        if self._keeping:
            await asyncio.gather(*self._keeping, return_exceptions=True)


async def _replay(entry: Entry) -> AsyncGenerator[Event, None]:
    for event in entry.events:
        yield event

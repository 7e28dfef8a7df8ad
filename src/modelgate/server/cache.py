"""The response cache as the gateway builds it: its store (in the process, or Redis when
``redis_url`` is set), the semantic index beside it, and the embedders of semantic lookups
(all-MiniLM-L6-v2 in this process, or an embeddings deployment asked through the chain)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from modelgate.cache import Index, MemoryIndex, MemoryStore, RedisIndex, RedisStore, ResponseCache, Store
from modelgate.cache.semantic import Vector
from modelgate.config.settings import Settings
from modelgate.pipeline.contract import Call, Handler, Stage
from modelgate.redis_client.client import RedisClient
from modelgate.schema.events import Embeddings
from modelgate.schema.request import EmbeddingRequest
from modelgate.storage import Storage
from modelgate.storage.revisions import REFRESH_INTERVAL, RevisionFollower

log = logging.getLogger("modelgate.cache")

LOCAL = "local"


def build_cache(settings: Settings, redis: RedisClient | None, prefix: str, handler: Callable[[], Handler],
                budget: Stage | None, local: LocalEncoder) -> ResponseCache:
    """The cache stage; ``handler`` gives the chain (once built), which asks embeddings
    deployments; ``budget``, the stage priced hits pass; ``local``, the embedder ``local``."""
    config = settings.cache
    store: Store = RedisStore(redis, prefix + "cache:") if redis is not None else \
        MemoryStore(config.memory_mb * 1024 * 1024)
    index: Index = RedisIndex(redis, prefix + "cache:") if redis is not None else MemoryIndex()

    async def embed(call: Call, embedder: str, text: str) -> Vector | None:
        if embedder == LOCAL:
            return await local.encode(text)
        return await _deployment_vector(settings, handler(), call, embedder, text)

    return ResponseCache(store, index=index, embed=embed, budget=budget, max_entry_bytes=config.max_entry_kb * 1024)


def uses_local_encoder(settings: Settings) -> bool:
    """Whether a deployment of ``settings`` has a semantic cache embedded in the process."""
    return any(d.cache is not None and d.cache.mode == "semantic" and d.cache.embedder == LOCAL
               for d in settings.deployments.values())


class LocalEncoder:
    """all-MiniLM-L6-v2 in this process, loaded at start-up where the config's deployments use it
    (``load``, in a worker thread) and otherwise on first use; where it cannot be loaded, that is
    logged once and semantic lookups are exact only."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._model: Any = None
        self._failed = False
        self._lock = threading.Lock()

    def load(self) -> None:
        self._loaded()

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None and not self._failed:
                from modelgate.engines.sentence_model import EncoderUnavailable, load_sentence_encoder
                try:
                    self._model = load_sentence_encoder(self.cache_dir)
                except EncoderUnavailable as problem:
                    self._failed = True
                    log.error("the semantic cache's local embedder cannot be loaded (%s); its deployments' "
                              "lookups are exact only", problem)
            return self._model

    def _encode(self, text: str) -> Vector | None:
        model = self._loaded()
        if model is None:
            return None
        found: Vector = model.encode([text])[0]
        return found

    async def encode(self, text: str) -> Vector | None:
        if self._failed:
            return None
        return await asyncio.to_thread(self._encode, text)


async def _deployment_vector(settings: Settings, handler: Handler, call: Call, name: str,
                             text: str) -> Vector | None:
    """``text``'s vector from the embeddings deployment ``name`` (of those in force, the admin
    API's included), asked through the chain as a call of the same caller: metered under its
    project, with a request id of its own."""
    deployment = settings.deployments.get(name)
    if deployment is None:
        return None
    request = EmbeddingRequest(model=name, input=[text])
    asked = Call(request_id=f"{call.request_id}-cache", request=request, deployment=deployment,
                 principal=call.principal, route="embeddings")
    vectors: list[list[float] | str] = []
    async for event in handler(asked):
        if isinstance(event, Embeddings):
            vectors = event.vectors
    if not vectors or not isinstance(vectors[0], list):
        return None
    return np.asarray(vectors[0], dtype=np.float32)


class CacheClearSync:
    """``DELETE /admin/cache`` on every process. With Redis the answers are shared and a clear is
    one; without, each process keeps its own, so a clear is also stored (storage/cache_clears.py)
    and the other processes apply it within ``interval`` seconds."""

    def __init__(self, storage: Storage, cache: ResponseCache, shared: bool,
                 interval: float = REFRESH_INTERVAL) -> None:
        self.storage = storage
        self.cache = cache
        self.shared = shared
        self.revision = 0
        self.follower = RevisionFollower(storage, None, "cache-clears", refresh=self._apply,
                                         revision=lambda: self.revision, interval=interval, what="cache clear",
                                         logger=log)

    async def start(self) -> None:
        if not self.shared:
            self.revision = await self.storage.cache_clears.current()  # a new process's store is empty
            await self.follower.start()

    async def stop(self) -> None:
        await self.follower.stop()
        await self.cache.close()

    async def clear(self, deployment: str | None, project: str | None) -> int:
        """Drop the matching answers; how many this process (with Redis: every process) had."""
        dropped = await self.cache.clear(deployment, project)
        if not self.shared:
            revision = await self.storage.cache_clears.add(deployment, project)
            if revision == self.revision + 1:  # no other clear in between: this one is applied here
                self.revision = revision
        return dropped

    async def _apply(self) -> bool:
        changes = await self.storage.cache_clears.changes_since(self.revision)
        if changes is None:
            return False
        for deployment, project in changes.clears:
            await self.cache.clear(deployment, project)
        self.revision = changes.revision
        return True

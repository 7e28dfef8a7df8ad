"""Provider type ``local``: models this installation runs itself.

Each target of a local provider is a pool of engine replicas (``engines/pool.py``), started with
the gateway (``start``) and stopped with it (``close``). The replicas speak OpenAI's chat
completions, so a request goes out through the same translation as to any OpenAI-compatible
server (``openai_wire``), to the replica the pool admits it to; the answer's usage is the
engine's own exact count. A replica that dies while answering fails the request with a 502
saying so (the router fails over before the first content, as for any upstream).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Iterable
from typing import Any

from modelgate.engines.models import resolve_model
from modelgate.engines.pool import ReplicaPool
from modelgate.engines.replica import EngineSpec, Replica
from modelgate.engines.settings import EngineSettings
from modelgate.providers.base import UpstreamCall
from modelgate.providers.openai_compat import OpenAICompatProvider
from modelgate.providers.openai_wire import request_to_openai
from modelgate.schema.errors import InvalidRequest, UpstreamError, UpstreamUnreachable
from modelgate.schema.events import Event
from modelgate.schema.request import ChatRequest, EmbeddingRequest

EXIT_NOTICE_S = 1.0  # how long a failed request waits to learn whether its replica exited

PoolKey = tuple[str, EngineSettings, int | None]


class LocalProvider(OpenAICompatProvider):
    profile_name = "local"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pools: dict[PoolKey, ReplicaPool] = {}

    @staticmethod
    def _key(call: UpstreamCall) -> PoolKey:
        return (call.model, call.engine or EngineSettings(), call.facts.context_window)

    async def start(self, calls: Iterable[UpstreamCall]) -> None:
        for call in calls:
            key = self._key(call)
            if key not in self.pools:
                spec = EngineSpec(model=resolve_model(call.model, self.settings.models_dir), engine=key[1],
                                  context_window=key[2])
                self.pools[key] = pool = ReplicaPool(spec, self.name)
                await pool.start()

    async def close(self) -> None:
        await asyncio.gather(*(pool.stop() for pool in self.pools.values()))

    def chat(self, request: ChatRequest, call: UpstreamCall) -> AsyncGenerator[Event, None]:
        pool = self.pools.get(self._key(call))
        if pool is None:
            raise UpstreamUnreachable(f"local model '{call.model}' of provider '{self.name}' was not started "
                                      "with the gateway", provider=self.name)
        body = request_to_openai(request, pool.name, self.profile, call.params, call.facts)
        return self._chat(pool, body, call, request.stream)

    async def _chat(self, pool: ReplicaPool, body: dict[str, Any], call: UpstreamCall,
                    stream: bool) -> AsyncGenerator[Event, None]:
        replica = await pool.acquire(call.timeout)
        started = time.monotonic()
        try:
            events = self.exchange(call, f"{replica.url}/v1/chat/completions", self.headers, body,
                                   self._stream_events if stream else None, self._chat_events)
            try:
                async for event in events:
                    yield event
            finally:
                await events.aclose()
        except UpstreamError as error:
            raise await self._replica_error(pool, replica, error) from error
        finally:
            pool.release(replica, time.monotonic() - started)

    async def _replica_error(self, pool: ReplicaPool, replica: Replica, error: UpstreamError) -> UpstreamError:
        """``error``, said as a replica's death where the replica died under the request."""
        if error.status != 502 or replica.process is None:
            return error
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(replica.process.wait()), EXIT_NOTICE_S)
        code = replica.exit_code()
        if code is None:
            return error
        return error.restated(
            f"replica {replica.index} of local model '{pool.name}' (provider '{self.name}', pid {replica.pid}) "
            f"exited with code {code} while answering; it is being restarted",
            code="engine_replica_died")

    def embed(self, request: EmbeddingRequest, call: UpstreamCall) -> AsyncGenerator[Event, None]:
        raise InvalidRequest(
            f"local model '{call.model}' (provider '{self.name}') does not serve embeddings in this build; "
            "use a deployment of an embedding model", param="model", code="model_not_supported")

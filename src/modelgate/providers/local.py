"""Provider type ``local``: models this installation runs itself.

Each target of a local provider is a pool of engine replicas (``engines/pool.py``), started with
the gateway (``start``) and stopped with it (``close``). Deployments made or changed while the
gateway runs start pools of their own (``pool``) and retire those no deployment uses any more
(``retire``: drained, then stopped); targets with the same model, engine settings and context
window share one pool. The replicas speak OpenAI's chat
completions, so a request goes out through the same translation as to any OpenAI-compatible
server (``openai_wire``), to the replica the pool admits it to; the answer's usage is the
engine's own exact count. A replica that dies while answering, or is killed for not answering
its health check (hung), fails the request with a 502 saying so (the router fails over before the
first content, as for any upstream).

The engines: ``llamacpp`` (a llama.cpp worker per replica), ``vllm`` (vLLM's own server per
replica) and ``ray`` (one child that holds a Ray Serve application on a cluster; requests go to
Ray Serve's HTTP proxy, which spreads them over the replicas Ray Serve scales). The replicas of
a ray deployment run on the cluster, out of the gateway's sight: they are not recorded as
replica-hours.

**Structured output.** ``response_format`` json_object or json_schema: the engine holds decoding
to a grammar made of the schema (``engines/json_schema.py`` says which keywords it can hold to; a
schema with any other is refused here with a 400 naming it, before a replica is taken), and the
complete answer is then parsed and checked against the schema here. An answer that is not valid
JSON of it (cut at ``max_tokens``, say) is never a success: a whole answer is a 502
``UpstreamMalformed`` saying which constraint failed, a stream ends with that error instead of
its finish. The engine is not at fault when a model's answer misses a schema, so no breaker
counts it (``upstream_healthy``).

**Reasoning.** A model whose chat template writes ``<think>`` (DeepSeek R1 distills, Qwen3, QwQ:
the ``reasoning`` capability of its catalog entry) gets its ``<think>...</think>`` prefix as
reasoning, not as text, whatever the deployment's ``reasoning.split_think_tags`` says.

**Tools.** A model whose chat template renders tools (the ``tools`` capability of its catalog
entry, read from the template) runs them in its engine: the template shows it the tools and the
conversation's calls and results, and its calls come back as OpenAI's ``tool_calls``, whole once
each is written, so that every surface carries them as an API provider's. ``tool_choice``
required or a named function holds decoding to a grammar of a valid call, whose arguments are then
checked against the tool's ``parameters`` as structured output is (``local_checks.py``): a call cut
at ``max_tokens`` is a 502 ``tool_call_invalid``, never a success. Tools for a model whose
template renders none are a 400 naming it. The llamacpp and ray engines run tools alike (each
replica serves the same ``engines/llamacpp_service.py``); the vllm engine does not pass tools to
vLLM's server, so tools there are a 400 as well.

**Embeddings.** A model whose catalog entry is an embedding model (``mode: embedding``: a GGUF
that pools, ``catalog/gguf.py``) answers ``embed`` through the same admission as chat; its engine
tokenizes, refuses an input past the context by its index (never cutting it), counts the tokens
exactly and encodes base64 itself. Chat to an embedding model, and embeddings to a chat model, are
400s saying which the deployment serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

from modelgate.engines.json_schema import UnsupportedSchema, grammar_schema
from modelgate.engines.models import resolve_model
from modelgate.engines.pool import ReplicaPool, ReplicaWatcher
from modelgate.engines.replica import EngineSpec, Replica
from modelgate.engines.settings import EngineSettings
from modelgate.providers.base import BodyDecoder, StreamDecoder, UpstreamCall
from modelgate.providers.local_checks import call_problem, format_problem, tools_refusal
from modelgate.providers.openai_compat import OpenAICompatProvider
from modelgate.providers.openai_wire import request_to_openai
from modelgate.providers.thinking import ThinkTagSplitter
from modelgate.schema.errors import InvalidRequest, UpstreamError, UpstreamMalformed, UpstreamUnreachable
from modelgate.schema.events import Event, Finish, TextDelta, Usage
from modelgate.schema.request import ChatRequest, EmbeddingRequest

log = logging.getLogger("modelgate.engines")

EXIT_NOTICE_S = 1.0  # how long a failed request waits to learn whether its replica exited

PoolKey = tuple[str, EngineSettings, int | None]


class LocalProvider(OpenAICompatProvider):
    profile_name = "local"
    serves_moderations = False  # the engines serve chat and embeddings; a moderation check asks a judge

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pools: dict[PoolKey, ReplicaPool] = {}
        # Hears each replica start and end (the gateway records their uptime); set before start.
        self.watcher: ReplicaWatcher | None = None
        self._retiring: set[asyncio.Future[None]] = set()  # pools draining that no deployment uses
        self._closed = False

    @staticmethod
    def _key(call: UpstreamCall) -> PoolKey:
        return (call.model, call.engine or EngineSettings(), call.facts.context_window)

    async def start(self, calls: Iterable[UpstreamCall]) -> None:
        for call in calls:
            await self.pool(call)

    async def pool(self, call: UpstreamCall) -> ReplicaPool:
        """The pool that serves ``call``, started now if none does yet (it returns at once; its
        replicas load in the background). Calls with the same model, engine settings and context
        window share one pool."""
        if self._closed:
            raise RuntimeError(f"provider '{self.name}' is closed")
        key = self._key(call)
        pool = self.pools.get(key)
        if pool is None:
            engine = key[1]
            spec = EngineSpec(model=resolve_model(call.model, self.settings.models_dir, engine.engine),
                              engine=engine, context_window=key[2])
            # A ray deployment's replicas run on the cluster, out of sight: no replica-hours for them.
            watcher = self.watcher if engine.engine != "ray" else None
            self.pools[key] = pool = ReplicaPool(spec, self.name, watcher=watcher)
            await pool.start()
        return pool

    def running(self, call: UpstreamCall) -> ReplicaPool | None:
        """The pool that serves ``call``, if one runs."""
        return self.pools.get(self._key(call))

    def retire(self, keep: Iterable[UpstreamCall]) -> list[ReplicaPool]:
        """Drain and stop, in the background, every pool that serves none of ``keep``; those pools.
        Requests already admitted to one finish there (up to its drain time); new requests for
        it are refused."""
        wanted = {self._key(call) for call in keep}
        retired = [key for key in self.pools if key not in wanted]
        pools = [self.pools.pop(key) for key in retired]
        for pool in pools:
            log.info("local model '%s' (provider '%s'): no deployment runs it with these engine settings any "
                     "more; draining and stopping its %d replica(s)", pool.name, self.name, len(pool.replicas))
            task = asyncio.ensure_future(pool.stop())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        return pools

    async def close(self) -> None:
        self._closed = True
        await asyncio.gather(*(pool.stop() for pool in self.pools.values()), *self._retiring)

    def _running(self, call: UpstreamCall) -> ReplicaPool:
        pool = self.pools.get(self._key(call))
        if pool is None:
            raise UpstreamUnreachable(f"local model '{call.model}' of provider '{self.name}' is not running on this "
                                      "gateway: its deployment was changed or removed while the request waited; "
                                      "send it again", provider=self.name)
        return pool

    def chat(self, request: ChatRequest, call: UpstreamCall) -> AsyncGenerator[Event, None]:
        pool = self._running(call)
        if call.facts.mode == "embedding":
            raise InvalidRequest(
                f"local model '{pool.name}' (provider '{self.name}') is an embedding model: it serves embeddings "
                "(POST /v1/embeddings), not chat; use a deployment of a chat model", param="model",
                code="model_not_supported")
        refusal = tools_refusal(request, pool.name, call.facts.capabilities, pool.spec.engine.engine)
        if refusal is not None:
            raise refusal
        fmt = request.response_format
        structured = fmt is not None and fmt.type in ("json_object", "json_schema")
        if fmt is not None and fmt.type == "json_schema":
            try:
                grammar_schema({} if fmt.schema is None else fmt.schema)
            except UnsupportedSchema as error:
                raise InvalidRequest(f"local model '{pool.name}': response_format: {error}", param="response_format",
                                     code="unsupported_schema") from None
        body = request_to_openai(request, pool.name, self.profile, call.params, call.facts)
        events = self._send(pool, call, "chat/completions", body,
                            self._stream_events if request.stream else None, self._chat_events)
        if "reasoning" in call.facts.capabilities and not structured:
            events = _split_think(events)
        if structured:
            assert fmt is not None
            events = self._checked(events, lambda seen: format_problem(seen, fmt, pool.name),
                                   "structured_output_invalid", hold=not request.stream)
        choice = request.tool_choice
        if request.tools and choice is not None and choice.mode in ("required", "named"):
            events = self._checked(events, lambda seen: call_problem(seen, request, pool.name), "tool_call_invalid",
                                   hold=not request.stream)
        return events

    async def _checked(self, events: AsyncGenerator[Event, None], problem_of: Callable[[list[Event]], str | None],
                       code: str, hold: bool) -> AsyncGenerator[Event, None]:
        """``events``, the complete answer checked by ``problem_of`` before its finish goes on (a
        502 ``code`` where it finds a problem); ``hold``: all events are held until then (a whole
        answer, so that a failure comes before any content and the router may still try a fallback)."""
        seen: list[Event] = []
        held: list[Event] = []
        finish: Finish | None = None
        try:
            async for event in events:
                seen.append(event)
                if isinstance(event, Finish):
                    finish = event
                if hold or finish is not None:
                    held.append(event)
                else:
                    yield event
        finally:
            await events.aclose()
        usage = next((e for e in held if isinstance(e, Usage)), None)
        problem = problem_of(seen)
        if problem is None:
            for event in held:
                yield event
            return
        if usage is not None:
            yield usage  # the tokens were spent: metering counts them
        raise UpstreamMalformed(problem, provider=self.name, code=code, upstream_healthy=True)

    async def _send(self, pool: ReplicaPool, call: UpstreamCall, operation: str, body: dict[str, Any],
                    stream: StreamDecoder | None, decode: BodyDecoder) -> AsyncGenerator[Event, None]:
        """POST ``body`` to ``operation`` of a replica the pool admits the request to, and yield
        the answer's events; the replica's slot is given back when the answer ends."""
        replica = await pool.acquire(call.timeout)
        process = replica.process  # the one that answers; a restart replaces it
        started = time.monotonic()
        try:
            events = self.exchange(call, f"{replica.url}/v1/{operation}", self.headers, body, stream, decode)
            try:
                async for event in events:
                    yield event
            finally:
                await events.aclose()
        except UpstreamError as error:
            raise await self._replica_error(pool, replica, process, error) from error
        finally:
            pool.release(replica, time.monotonic() - started)

    async def _replica_error(self, pool: ReplicaPool, replica: Replica, process: asyncio.subprocess.Process | None,
                             error: UpstreamError) -> UpstreamError:
        """``error``, said as a replica's death where the replica's ``process`` died under the
        request, or was killed for not answering its health check."""
        if error.status != 502 or process is None:
            return error
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.wait()), EXIT_NOTICE_S)
        code = process.returncode
        if code is None:
            return error
        fault = replica.fault(process)
        what = f"was killed while answering because it {fault}" if fault else f"exited with code {code} while answering"
        return error.restated(
            f"replica {replica.index} of local model '{pool.name}' (provider '{self.name}', pid {process.pid}) {what}; "
            "it is being restarted", code="engine_replica_died")

    def embed(self, request: EmbeddingRequest, call: UpstreamCall) -> AsyncGenerator[Event, None]:
        pool = self._running(call)
        if call.facts.mode != "embedding":
            raise InvalidRequest(
                f"local model '{pool.name}' (provider '{self.name}') is a chat model: it does not serve embeddings; "
                "use a deployment of an embedding model (a GGUF that pools, such as one `modelgate models add` "
                "converted from a sentence-transformers folder)", param="model", code="model_not_supported")
        # The engine counts the tokens, checks each input against the context and ``dimensions``
        # against the model, and encodes base64 itself.
        body: dict[str, Any] = {"model": pool.name, "input": request.input, "encoding_format": request.encoding_format}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        return self._send(pool, call, "embeddings", body, None, self._embedding_events)


async def _split_think(events: AsyncGenerator[Event, None]) -> AsyncGenerator[Event, None]:
    """``events`` with the ``<think>...</think>`` prefix of the answer as reasoning."""
    splitter = ThinkTagSplitter()
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                for piece in splitter.feed(event.text):
                    yield piece
                continue
            if isinstance(event, Finish):
                for piece in splitter.flush():
                    yield piece
            yield event
    finally:
        await events.aclose()

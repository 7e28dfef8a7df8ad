"""Provider type ``local``: models this installation runs itself.

Each target of a local provider is a pool of engine replicas (``engines/pool.py``), started with
the gateway (``start``) and stopped with it (``close``). The replicas speak OpenAI's chat
completions, so a request goes out through the same translation as to any OpenAI-compatible
server (``openai_wire``), to the replica the pool admits it to; the answer's usage is the
engine's own exact count. A replica that dies while answering fails the request with a 502
saying so (the router fails over before the first content, as for any upstream).

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

**Tools.** Refused with a 400: naming the model where its chat template renders no tools, and
saying the engine does not run them yet where it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Iterable
from typing import Any

import orjson

from modelgate.engines.json_schema import UnsupportedSchema, grammar_schema, violation
from modelgate.engines.models import resolve_model
from modelgate.engines.pool import ReplicaPool, ReplicaWatcher
from modelgate.engines.replica import EngineSpec, Replica
from modelgate.engines.settings import EngineSettings
from modelgate.providers.base import UpstreamCall
from modelgate.providers.openai_compat import OpenAICompatProvider
from modelgate.providers.openai_wire import request_to_openai
from modelgate.providers.thinking import ThinkTagSplitter
from modelgate.schema.errors import InvalidRequest, UpstreamError, UpstreamMalformed, UpstreamUnreachable
from modelgate.schema.events import Event, Finish, TextDelta, Usage
from modelgate.schema.request import ChatRequest, EmbeddingRequest, ResponseFormat

EXIT_NOTICE_S = 1.0  # how long a failed request waits to learn whether its replica exited

PoolKey = tuple[str, EngineSettings, int | None]


class LocalProvider(OpenAICompatProvider):
    profile_name = "local"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pools: dict[PoolKey, ReplicaPool] = {}
        # Hears each replica start and end (the gateway records their uptime); set before start.
        self.watcher: ReplicaWatcher | None = None

    @staticmethod
    def _key(call: UpstreamCall) -> PoolKey:
        return (call.model, call.engine or EngineSettings(), call.facts.context_window)

    async def start(self, calls: Iterable[UpstreamCall]) -> None:
        for call in calls:
            key = self._key(call)
            if key not in self.pools:
                engine = key[1]
                spec = EngineSpec(model=resolve_model(call.model, self.settings.models_dir, engine.engine),
                                  engine=engine, context_window=key[2])
                watcher = self.watcher if engine.engine != "ray" else None
                self.pools[key] = pool = ReplicaPool(spec, self.name, watcher=watcher)
                await pool.start()

    async def close(self) -> None:
        await asyncio.gather(*(pool.stop() for pool in self.pools.values()))

    def chat(self, request: ChatRequest, call: UpstreamCall) -> AsyncGenerator[Event, None]:
        pool = self.pools.get(self._key(call))
        if pool is None:
            raise UpstreamUnreachable(f"local model '{call.model}' of provider '{self.name}' was not started "
                                      "with the gateway", provider=self.name)
        if request.tools:
            raise self._no_tools(pool.name, call)
        fmt = request.response_format
        structured = fmt is not None and fmt.type in ("json_object", "json_schema")
        if fmt is not None and fmt.type == "json_schema":
            try:
                grammar_schema({} if fmt.schema is None else fmt.schema)
            except UnsupportedSchema as error:
                raise InvalidRequest(f"local model '{pool.name}': response_format: {error}", param="response_format",
                                     code="unsupported_schema") from None
        body = request_to_openai(request, pool.name, self.profile, call.params, call.facts)
        events = self._chat(pool, body, call, request.stream)
        if "reasoning" in call.facts.capabilities and not structured:
            events = _split_think(events)
        if structured:
            assert fmt is not None
            events = self._checked(events, fmt, pool.name, hold=not request.stream)
        return events

    def _no_tools(self, model: str, call: UpstreamCall) -> InvalidRequest:
        if "tools" not in call.facts.capabilities:
            return InvalidRequest(
                f"local model '{model}' has no tool support: its chat template (tokenizer.chat_template) renders "
                "no tools; send the request without tools, or use a deployment of a model that has them",
                param="tools", code="tools_not_supported")
        return InvalidRequest(
            f"local model '{model}' has tool support in its chat template, but this gateway does not run tools on "
            "local models yet; send the request without tools, or use a deployment served with tool calling",
            param="tools", code="tools_not_supported")

    async def _checked(self, events: AsyncGenerator[Event, None], fmt: ResponseFormat, model: str,
                       hold: bool) -> AsyncGenerator[Event, None]:
        """``events``, the answer's text checked against ``fmt`` before its finish goes on; ``hold``:
        all events are held until then (a whole answer, so that a failure comes before any content
        and the router may still try a fallback)."""
        texts: list[str] = []
        held: list[Event] = []
        finish: Finish | None = None
        try:
            async for event in events:
                if isinstance(event, TextDelta):
                    texts.append(event.text)
                if isinstance(event, Finish):
                    finish = event
                if hold or finish is not None:
                    held.append(event)
                else:
                    yield event
        finally:
            await events.aclose()
        usage = next((e for e in held if isinstance(e, Usage)), None)
        problem = _format_problem("".join(texts), fmt, model, finish, usage)
        if problem is None:
            for event in held:
                yield event
            return
        if usage is not None:
            yield usage  # the tokens were spent: metering counts them
        raise UpstreamMalformed(problem, provider=self.name, code="structured_output_invalid",
                                upstream_healthy=True)

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


def _format_problem(text: str, fmt: ResponseFormat, model: str, finish: Finish | None,
                    usage: Usage | None) -> str | None:
    """Why ``text`` is not the JSON ``fmt`` asks for; None where it is."""
    what = f"the schema '{fmt.name}'" if fmt.type == "json_schema" and fmt.name else (
        "the schema" if fmt.type == "json_schema" else "a JSON object")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        if finish is not None and finish.reason == "length":
            spent = f" ({usage.output_tokens} tokens)" if usage is not None else ""
            return (f"local model '{model}' reached max_tokens{spent} before its JSON answer for {what} was "
                    "complete; raise max_tokens")
        return f"local model '{model}' answered text that is not JSON ({error}) where {what} was asked for"
    if fmt.type == "json_object":
        return None if isinstance(value, dict) else (
            f"local model '{model}' answered JSON that is not an object where response_format json_object asks "
            "for one")
    failed = violation(value, {} if fmt.schema is None else fmt.schema)
    return None if failed is None else f"local model '{model}' answered JSON that does not match {what}: {failed}"


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

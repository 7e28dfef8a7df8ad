"""Reasoning written into the content: split it out where the deployment says so.

Open reasoning models served without a reasoning parser (DeepSeek R1, Qwen3 and QwQ on plain
vLLM, Ollama or llama.cpp) put their thoughts in the content as ``<think>...</think>``. With
``reasoning: {split_think_tags: true}`` on a deployment, this stage turns that prefix into
``ReasoningDelta`` events and leaves the answer as ``TextDelta``: the same events a provider with a
reasoning field yields, so every surface renders it as reasoning.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from modelgate.pipeline.contract import Call, Handler
from modelgate.providers.thinking import ThinkTagSplitter
from modelgate.schema.events import Event, Finish, TextDelta
from modelgate.schema.request import ChatRequest


class SplitThinkTags:
    """Stage: split ``<think>`` tags out of the content of deployments that ask for it."""

    def __call__(self, call: Call, next: Handler) -> AsyncGenerator[Event, None]:
        if not isinstance(call.request, ChatRequest) or not call.deployment.reasoning.split_think_tags:
            return next(call)  # nothing to split: no wrapper around every event either
        return self._split(call, next)

    async def _split(self, call: Call, next: Handler) -> AsyncGenerator[Event, None]:
        splitters: dict[int, ThinkTagSplitter] = {}
        async for event in next(call):
            if isinstance(event, TextDelta):
                splitter = splitters.get(event.choice)
                if splitter is None:
                    splitter = splitters[event.choice] = ThinkTagSplitter(event.choice)
                for piece in splitter.feed(event.text):
                    yield piece
                continue
            if isinstance(event, Finish) and event.choice in splitters:
                # A tag held back at the end of the choice is released before its Finish.
                for piece in splitters[event.choice].flush():
                    yield piece
            yield event
        for splitter in splitters.values():  # choices the upstream never finished
            for piece in splitter.flush():
                yield piece

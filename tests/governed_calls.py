"""Calls and stand-in upstreams for testing pipeline stages without a server.

A ``Script`` is the end of the chain: it yields the events it was given and can fail where told,
as a provider (behind the router) does.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence

from modelgate.auth import Limits, Principal
from modelgate.catalog.facts import ModelFacts
from modelgate.config.settings import DeploymentSettings, PriceSettings, TargetSettings
from modelgate.pipeline.contract import Call
from modelgate.schema.errors import GatewayError
from modelgate.schema.events import Event, Finish, Start, TextDelta, Usage
from modelgate.schema.request import ChatRequest, EmbeddingRequest, Message, TextPart

# USD per million tokens, like gpt-4o's catalog entry.
GPT_4O = ModelFacts(input_price=2.5, output_price=10.0, cached_input_price=1.25, max_output_tokens=16384)


def deployment(name: str = "chat", *, rpm: int | None = None, tpm: int | None = None,
               price: PriceSettings | None = None, facts: ModelFacts = GPT_4O) -> DeploymentSettings:
    return DeploymentSettings(name=name, targets=[TargetSettings(provider="openai", model="gpt-4o", facts=facts)],
                              price=price, rpm=rpm, tpm=tpm)


def principal(key: Limits | None = None, project: Limits | None = None, key_id: str = "key_1",
              project_name: str | None = "p1") -> Principal:
    return Principal(key_id=key_id, project=project_name, key_limits=key or Limits(),
                     project_limits=project or Limits())


def chat(text: str = "Hello there, how are you?", *, max_tokens: int | None = None,
         stream: bool = False) -> ChatRequest:
    return ChatRequest(model="chat", messages=[Message(role="user", content=[TextPart(text)])],
                       max_tokens=max_tokens, stream=stream)


def call(request: ChatRequest | EmbeddingRequest | None = None, *, who: Principal | None = None,
         to: DeploymentSettings | None = None, request_id: str = "req_1") -> Call:
    return Call(request_id=request_id, request=request or chat(), deployment=to or deployment(),
                principal=who or principal())


USAGE = Usage(input_tokens=12, output_tokens=4)


def answer(text: str = "Fine, thanks.", usage: Usage | None = USAGE) -> list[Event]:
    events: list[Event] = [Start(model="gpt-4o-2024-08-06"), TextDelta(text), Finish("stop")]
    if usage is not None:
        events.append(usage)
    return events


class Script:
    """The terminal handler: records the call as the router does, then yields ``events``; raises
    ``fail_after`` once ``fail_at`` events went out."""

    def __init__(self, events: Sequence[Event], fail_at: int | None = None,
                 fail_with: GatewayError | None = None) -> None:
        self.events = list(events)
        self.fail_at = fail_at
        self.fail_with = fail_with
        self.calls = 0

    async def __call__(self, call: Call) -> AsyncGenerator[Event, None]:
        self.calls += 1
        call.attempts += 1
        call.provider = "openai"
        call.upstream_model = "gpt-4o"
        for index, event in enumerate(self.events):
            if index == self.fail_at and self.fail_with is not None:
                raise self.fail_with
            if isinstance(event, Start):
                call.upstream_model = event.model
            yield event
        if self.fail_at == len(self.events) and self.fail_with is not None:
            raise self.fail_with


async def drain(events: AsyncGenerator[Event, None]) -> list[Event]:
    return [event async for event in events]

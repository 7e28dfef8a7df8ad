"""The end of the chain: send the call to a deployment's provider."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from modelgate.pipeline.call import Call
from modelgate.providers.base import Provider, UpstreamCall
from modelgate.schema.events import Event, Start
from modelgate.schema.request import EmbeddingRequest


class Dispatch:
    """Sends each call to the first target of its deployment."""

    def __init__(self, providers: Mapping[str, Provider]) -> None:
        self.providers = providers

    async def __call__(self, call: Call) -> AsyncIterator[Event]:
        target = call.deployment.targets[0]
        provider = self.providers[target.provider]
        upstream = UpstreamCall(model=target.model, timeout=call.deployment.timeout,
                                facts=target.facts, params=call.deployment.params)
        call.attempts += 1
        call.provider = provider.name
        call.upstream_model = target.model
        request = call.request
        events = (provider.embed(request, upstream) if isinstance(request, EmbeddingRequest)
                  else provider.chat(request, upstream))
        async for event in events:
            if isinstance(event, Start):
                event.model = event.model or target.model
                call.upstream_model = event.model
            yield event

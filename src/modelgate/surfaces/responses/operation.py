"""``POST /v1/responses`` as a stateful operation of the lifecycle: one instance per request.

``parse`` reads the request; ``prepare`` puts the stored conversation that
``previous_response_id`` continues before the request's own input (a response another project
made is not found) and resolves ``item_reference``s; ``fold`` and ``stream`` answer; ``keep``
stores the response and its input items when ``store`` is true.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from modelgate.pipeline.contract import Call
from modelgate.schema.errors import InvalidRequest, NotFound
from modelgate.schema.request import ChatRequest
from modelgate.storage.responses import StoredResponse
from modelgate.surfaces.base import Core
from modelgate.surfaces.lifecycle import answered_by
from modelgate.surfaces.responses.history import Conversation, response_of_item, stored_item
from modelgate.surfaces.responses.items import Reference, Turn, to_messages
from modelgate.surfaces.responses.parse import ResponsesRequest, parse_responses_request
from modelgate.surfaces.responses.stream import ResponseAnswer, ResponseFold, ResponseStream


def response_id(request_id: str) -> str:
    return "resp_" + request_id.removeprefix("req_")


class CreateResponse:
    route = "responses"

    def __init__(self, core: Core, request_id: str) -> None:
        self.core = core
        self.id = response_id(request_id)
        self.parsed: ResponsesRequest | None = None
        self.answer: ResponseAnswer | None = None
        self.items: list[dict[str, Any]] = []  # the input items as stored

    def parse(self, body: Any, headers: Mapping[str, str]) -> ChatRequest:
        self.parsed = parse_responses_request(body, self.core.sealer)
        return self.parsed.request

    async def prepare(self, call: Call) -> None:
        parsed = self._parsed
        sealer = self.core.sealer
        history: list[Turn] = []
        conversation = Conversation([])
        if parsed.previous_id is not None:
            lineage = await self.core.responses.lineage(parsed.previous_id, call.principal.project)
            # An Anthropic message thread shares the store, not the format.
            if not lineage or any(stored.kind != "response" for stored in lineage):
                raise NotFound(f"Previous response with id '{parsed.previous_id[:100]}' not found.",
                               param="previous_response_id", code="previous_response_not_found")
            conversation = Conversation(lineage)
            history = conversation.turns(sealer, parsed.previous_id)
        own: list[Turn] = []
        base = self.id.removeprefix("resp_")
        for index, (turn, raw) in enumerate(zip(parsed.turns, parsed.items, strict=True)):
            if isinstance(turn, Reference):
                found = await self._find(turn, conversation, call.principal.project)
                if found is None:
                    self.items.append(stored_item(raw, f"{base}i{index:03x}"))
                    continue
                turn, raw = found.resolve(turn, sealer)
            own.append(turn)
            self.items.append(stored_item(raw, f"{base}i{index:03x}"))
        request = call.request
        assert isinstance(request, ChatRequest)
        request.messages += to_messages(history + own)
        if not any(m.role != "system" for m in request.messages):
            raise InvalidRequest("'input' has nothing to answer: send at least one message",
                                 param="input", code="missing_required_parameter")

    async def _find(self, reference: Reference, conversation: Conversation, project: str | None) -> Conversation | None:
        """Where the item ``reference`` names is: the conversation continued, else the stored
        response that made it (its id says which); None for a soft reference found nowhere."""
        if reference.id in conversation.by_id:
            return conversation
        response_id = response_of_item(reference.id)
        stored = await self.core.responses.get(response_id, project) if response_id else None
        if stored is not None and stored.kind == "response":
            found = Conversation([stored])
            if reference.id in found.by_id:
                return found
        return None if reference.soft else conversation  # which refuses it, naming the item

    async def keep(self, call: Call) -> None:
        parsed, answer = self._parsed, self.answer
        if not parsed.store or answer is None or answer.final is None:
            return
        await self.core.responses.put(StoredResponse(
            id=self.id, project=call.principal.project, kind="response", created_at=answer.created_at,
            previous_id=parsed.previous_id, body=orjson.dumps(answer.final), input_items=orjson.dumps(self.items)))

    def headers(self, call: Call) -> dict[str, str]:
        return answered_by(call)

    def fold(self, call: Call) -> ResponseFold:
        return ResponseFold(self._answer(call, streamed=False))

    def stream(self, call: Call) -> ResponseStream:
        return ResponseStream(self._answer(call, streamed=True))

    def _answer(self, call: Call, streamed: bool) -> ResponseAnswer:
        self.answer = ResponseAnswer(self.id, self._parsed, call.deployment.name, self.core.sealer,
                                     call.deployment.reasoning.show, streamed)
        return self.answer

    @property
    def _parsed(self) -> ResponsesRequest:
        assert self.parsed is not None, "parse runs first"
        return self.parsed

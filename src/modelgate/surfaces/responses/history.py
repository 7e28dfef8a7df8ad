"""Stored responses → the conversation so far; a request's own input items as they are stored.

``previous_response_id`` continues a conversation: each stored ancestor, oldest first,
contributes its input items and then its output items, read like a client's own items (their
reasoning items carry sealed state, which opens again). ``item_reference`` names an item of that
conversation by its id. A request's input items are stored with an id each, in the shape
``GET /v1/responses/{id}/input_items`` lists them.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelgate.schema.errors import InvalidRequest
from modelgate.storage.responses import StoredResponse
from modelgate.surfaces.base import Sealer
from modelgate.surfaces.responses.items import Reference, Turn, read_item

ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}
RESPONSE_ID_HEX = 24  # the hex digits of a response id (those of the request id it is made from)


class Conversation:
    """The items of a stored lineage, by id and in order."""

    def __init__(self, lineage: list[StoredResponse]) -> None:
        self.items: list[dict[str, Any]] = []
        for stored in lineage:
            self.items += orjson.loads(stored.input_items)
            self.items += orjson.loads(stored.body).get("output") or []
        self.by_id = {item["id"]: item for item in self.items if isinstance(item.get("id"), str)}

    def turns(self, sealer: Sealer, previous_id: str) -> list[Turn]:
        turns: list[Turn] = []
        for item in self.items:
            try:
                turn = read_item(item, "previous_response_id", sealer)
            except InvalidRequest as error:
                # Only a change of the gateway's key makes a stored item unreadable.
                raise InvalidRequest(f"The stored response '{previous_id}' can no longer be continued: "
                                     f"{error.message}", param="previous_response_id",
                                     code="invalid_value") from error
            if isinstance(turn, Turn):
                turns.append(turn)
        return turns

    def resolve(self, reference: Reference, sealer: Sealer) -> tuple[Turn, dict[str, Any]]:
        """The turn and the stored item that ``reference`` names."""
        item = self.by_id.get(reference.id)
        if item is None:
            raise InvalidRequest(f"Item with id '{reference.id[:100]}' not found. An item_reference names an item "
                                 "of the conversation that 'previous_response_id' continues.",
                                 param=f"{reference.where}.id", code="invalid_value")
        turn = read_item(item, reference.where, sealer)
        assert isinstance(turn, Turn), "stored items are never references"
        return turn, item


def response_of_item(item_id: str) -> str | None:
    """The id of the response whose output or input has the item ``item_id``: the gateway's item
    ids are a prefix, the response's own id, and three hex digits (output.py, ``stored_item``)."""
    prefix, _, rest = item_id.partition("_")
    if prefix not in ID_PREFIXES.values() or len(rest) != RESPONSE_ID_HEX + 3:
        return None
    return f"resp_{rest[:RESPONSE_ID_HEX]}"


def stored_item(raw: dict[str, Any], fallback_id: str) -> dict[str, Any]:
    """An input item as stored and listed: with an id, a type, and content as parts."""
    item = dict(raw)
    kind = item.setdefault("type", "message")
    if not isinstance(item.get("id"), str) or not item["id"]:
        item["id"] = f"{ID_PREFIXES.get(kind, 'item')}_{fallback_id}"
    if kind == "message":
        assistant = item.get("role") == "assistant"
        content = item.get("content")
        if isinstance(content, str):
            content = [{"type": "output_text" if assistant else "input_text", "text": content}]
        if assistant:
            content = [{"annotations": [], "logprobs": [], **part} if part.get("type") == "output_text" else part
                       for part in content or ()]
        item["content"] = content
    if kind == "reasoning":
        item.setdefault("summary", [])
    elif item.get("status") is None:
        item["status"] = "completed"
    return item

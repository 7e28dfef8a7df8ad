"""Stored responses: what ``previous_response_id`` continues from and ``GET /v1/responses/{id}`` reads.

A stored response belongs to the project of the key that made it: asked for by another project
(or by the master key, whose project is None, for a project's response) it does not exist.

This is the in-process store, kept in a dictionary: responses live as long as the process.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LINEAGE = 1000  # ancestors followed at most: a chain is built one request at a time


@dataclass(slots=True, kw_only=True)
class StoredResponse:
    id: str  # "resp_..." (or an Anthropic thread message id "msg_...")
    project: str | None  # the key's project; None for the master key
    kind: str  # "response" | "thread"
    created_at: int  # unix seconds
    previous_id: str | None  # previous_response_id / previous_message_id
    body: bytes  # the response object JSON as returned to a client, reasoning items with encrypted_content
    input_items: bytes  # JSON array of this request's own input items, each with an id


class MemoryResponseStore:
    """Stored responses in a dictionary of this process."""

    def __init__(self) -> None:
        self._responses: dict[str, StoredResponse] = {}

    async def put(self, stored: StoredResponse) -> None:
        self._responses[stored.id] = stored

    async def get(self, id: str, project: str | None) -> StoredResponse | None:
        stored = self._responses.get(id)
        return stored if stored is not None and stored.project == project else None

    async def delete(self, id: str, project: str | None) -> bool:
        if await self.get(id, project) is None:
            return False
        del self._responses[id]
        return True

    async def lineage(self, id: str, project: str | None) -> list[StoredResponse]:
        chain: list[StoredResponse] = []
        next_id: str | None = id
        while next_id is not None and len(chain) < MAX_LINEAGE:
            stored = await self.get(next_id, project)
            if stored is None:
                break
            chain.append(stored)
            next_id = stored.previous_id
        chain.reverse()
        return chain if chain and chain[-1].id == id else []

"""Anthropic message threads (beta ``message-threads-2026-08-12``), kept by the gateway for any
provider: a request sends ``thread: {type: "create"}`` with the whole conversation, ``system`` and
``tools``, and each later one ``thread: {type: "continue", previous_message_id}`` with only the
messages after that response, and without ``system`` and ``tools``, which the thread keeps
(https://platform.claude.com/docs/en/build-with-claude/message-threads). The SDK's thread helper
and its tool runner send these by default.

Each answered turn is stored (storage/responses.py) as a response of kind ``"thread"`` under the
message's id, in the project of the key that made it: ``input_items`` holds the turn's request
messages as sent, ``body`` the object ``{"message", "system", "tools"}``: the message as returned
and the thread's ``system`` and ``tools``. A continue puts, before its own messages, every earlier
turn's messages and the assistant message that answered them, oldest first, and takes ``system``
and ``tools`` from the thread.

Anthropic's errors, with ``error.details.error_code`` as the SDK reads them: an unknown
``previous_message_id`` (or another project's, or a response that is no thread turn) is a 404
``thread_not_found``, on which the SDK replays the whole conversation under a new thread; a
continue that sends a ``system`` or ``tools`` other than the thread's is a 400
``thread_fingerprint_mismatch``. Unlike Anthropic, which keeps a thread five minutes and lets each
response be continued once, the gateway keeps turns for the retention of stored responses
(``responses.retention_days``) and lets a response be continued more than once (a fork).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelgate.schema.errors import InvalidRequest, NotFound, ServiceUnavailable
from modelgate.storage import ResponseStore, StorageError, StoredResponse

MESSAGE_THREADS_BETA = "message-threads-2026-08-12"
THREAD_KIND = "thread"
# What a continue takes from the thread rather than from the request.
THREAD_FIELDS = ("system", "tools")


def has_threads_beta(headers: Mapping[str, str]) -> bool:
    beta = headers.get("anthropic-beta") or ""
    return MESSAGE_THREADS_BETA in (b.strip() for b in beta.split(","))


def without_threads_beta(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with the threads beta taken out of ``anthropic-beta``: the gateway keeps the
    thread itself, so an Anthropic upstream gets the whole conversation and no ``thread``."""
    found = dict(headers)
    rest = [b.strip() for b in found.get("anthropic-beta", "").split(",")
            if b.strip() and b.strip() != MESSAGE_THREADS_BETA]
    if rest:
        found["anthropic-beta"] = ",".join(rest)
    else:
        found.pop("anthropic-beta", None)
    return found


def thread_without_beta() -> InvalidRequest:
    return InvalidRequest(f"'thread' needs the message threads beta: send the header "
                          f"'anthropic-beta: {MESSAGE_THREADS_BETA}' (the SDK's betas=[...] does), or leave "
                          "out 'thread' and send the whole conversation", param="thread")


@dataclass(slots=True)
class Thread:
    """The ``thread`` field of a request."""

    previous_message_id: str | None  # None: a create


def read_thread(body: Any) -> Thread | None:
    """The request's ``thread``; None without one. 400 naming the field when it is malformed."""
    if not isinstance(body, dict) or body.get("thread") is None:
        return None
    raw = body["thread"]
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "create":
        return Thread(None)
    if kind == "continue":
        previous = raw.get("previous_message_id")
        if not isinstance(previous, str) or not previous:
            raise InvalidRequest("'thread.previous_message_id' is required with type 'continue': the id of the "
                                 "response this request continues", param="thread.previous_message_id")
        return Thread(previous)
    raise InvalidRequest("'thread' must be {\"type\": \"create\"} or {\"type\": \"continue\", "
                         "\"previous_message_id\": \"msg_...\"}", param="thread")


@dataclass(slots=True)
class ThreadTurn:
    """What one threaded request adds to its body, and what it stores once answered."""

    project: str | None
    previous_message_id: str | None
    history: list[Any] = field(default_factory=list)  # the earlier turns' messages, oldest first
    kept: dict[str, Any] = field(default_factory=dict)  # system and tools, as the thread has them
    sent: list[Any] = field(default_factory=list)  # this turn's own messages

    def body(self, body: dict[str, Any]) -> dict[str, Any]:
        """The request body the model gets: the thread's messages first, its system and tools."""
        messages = body.get("messages")
        self.sent = list(messages) if isinstance(messages, list) else []
        merged = {k: v for k, v in body.items() if k != "thread"}
        if self.previous_message_id is not None:
            for name in THREAD_FIELDS:
                merged.pop(name, None)
                if self.kept.get(name) is not None:
                    merged[name] = self.kept[name]
            if isinstance(messages, list):
                merged["messages"] = [*self.history, *messages]
        else:
            self.kept = {name: body.get(name) for name in THREAD_FIELDS}
        return merged

    def stored(self, message: dict[str, Any]) -> StoredResponse | None:
        """The turn to store for the answer ``message``; None for a refusal, which Anthropic does
        not keep either (the SDK starts a new thread after one)."""
        if message.get("stop_reason") == "refusal" or not isinstance(message.get("id"), str):
            return None
        return StoredResponse(
            id=message["id"], project=self.project, kind=THREAD_KIND, created_at=int(time.time()),
            previous_id=self.previous_message_id,
            body=orjson.dumps({"message": message, **{name: self.kept.get(name) for name in THREAD_FIELDS}}),
            input_items=orjson.dumps(self.sent))


async def load_turn(store: ResponseStore, thread: Thread, body: dict[str, Any], project: str | None) -> ThreadTurn:
    """The ``ThreadTurn`` of a request: for a continue, the thread read back from the store."""
    turn = ThreadTurn(project=project, previous_message_id=thread.previous_message_id)
    if thread.previous_message_id is None:
        return turn
    try:
        lineage = await store.lineage(thread.previous_message_id, project)
    except StorageError as error:
        raise ServiceUnavailable("The thread's earlier turns cannot be read now (the gateway's database does not "
                                 "answer); try again shortly, or send the whole conversation without 'thread'.",
                                 retry_after=1) from error
    if not lineage or lineage[-1].id != thread.previous_message_id or any(t.kind != THREAD_KIND for t in lineage):
        raise NotFound(f"No thread state was found for previous_message_id {thread.previous_message_id[:100]!r}: "
                       "it is unknown here, past its retention, or was made with another project's key. Send the "
                       "whole conversation again with thread {\"type\": \"create\"}.",
                       param="thread.previous_message_id", code="thread_not_found")
    for stored in lineage:
        turn.history += orjson.loads(stored.input_items)
        answer = orjson.loads(stored.body)
        turn.history.append({"role": "assistant", "content": answer["message"]["content"]})
    kept = orjson.loads(lineage[-1].body)
    turn.kept = {name: kept.get(name) for name in THREAD_FIELDS}
    changed = [name for name in THREAD_FIELDS if body.get(name) is not None and body[name] != turn.kept[name]]
    if changed:
        names = " and ".join(f"'{name}'" for name in changed)
        raise InvalidRequest(f"{names} cannot change on a thread: a continue takes them from the request that "
                             f"created the thread. Leave {names} out, or send the whole conversation with thread "
                             "{\"type\": \"create\"} to change them.", param=changed[0],
                             code="thread_fingerprint_mismatch")
    return turn

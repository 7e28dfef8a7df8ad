"""Canonical events → the output items of a response, and the stream events that build them.

One ``OutputBuilder`` serves a streamed and a whole answer alike: each canonical event yields the
Responses stream events it causes (without ``sequence_number``, which framing adds), and the
finished items pile up in ``items``, so a folded response is exactly what its stream built.

Items open and close in the order the answer comes: a reasoning block is a ``reasoning`` item
(a summary for a provider's reasoning, ``reasoning_text`` content for the raw reasoning of open
models), text is a ``message`` item, tool calls are ``function_call`` items (held open together,
as upstreams may interleave their arguments). Every reasoning item carries its state sealed in
``encrypted_content``; whether a client sees it is for the caller to decide (``render.py``).
Gemini's thought signatures of function calls, which the wire has no place for, go sealed into
one last reasoning item.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelgate.schema.events import Event, Finish, ReasoningDelta, Start, TextDelta, ToolCallDelta, Usage
from modelgate.surfaces.base import Sealer
from modelgate.surfaces.reasoning_state import ReasoningState
from modelgate.surfaces.responses.items import NAMESPACE_SEPARATOR

Wire = dict[str, Any]


@dataclass(slots=True)
class _Item:
    kind: str  # "message" | "summary" | "raw" | "function_call"
    id: str
    index: int  # output_index
    text: str = ""  # message text, reasoning text, or call arguments
    started: bool = False  # a reasoning item's part has been announced
    state: ReasoningState | None = None
    call_id: str = ""
    name: str = ""
    calls: dict[int, _Item] = field(default_factory=dict)


class OutputBuilder:
    """See the module docstring. ``ids_base`` makes the item ids of one response unique; with
    ``deltas`` false (a folded answer) the delta events, which nobody reads then, are not made."""

    def __init__(self, ids_base: str, sealer: Sealer, show_reasoning: bool, deltas: bool = True,
                 namespaces: frozenset[str] = frozenset()) -> None:
        self.items: list[Wire] = []
        self._namespaces = namespaces
        self._deltas = deltas
        self.model = ""
        self.usage: Usage | None = None
        self.finish: Finish | None = None
        self._base = ids_base
        self._sealer = sealer
        self._show = show_reasoning
        self._open: list[_Item] = []
        self._count = 0
        self._call_signatures: dict[str, str] = {}
        self._call_origin: str | None = None

    def add(self, event: Event) -> list[Wire]:
        if isinstance(event, TextDelta):
            return self._text(event) if event.choice == 0 else []
        if isinstance(event, ReasoningDelta):
            return self._reasoning(event) if event.choice == 0 else []
        if isinstance(event, ToolCallDelta):
            return self._call(event) if event.choice == 0 else []
        if isinstance(event, Start):
            self.model = event.model
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, Finish) and event.choice == 0:
            self.finish = event
        return []

    @property
    def cut(self) -> bool:
        """Whether the answer was cut short (the token limit or a content filter)."""
        return self.finish is not None and self.finish.reason in ("length", "content_filter")

    def close(self) -> list[Wire]:
        """The events that end the output: the open items closed, then the sealed call signatures."""
        out = self._close_open(incomplete=self.cut)
        if self._call_signatures:
            state = ReasoningState(origin=self._call_origin, calls=self._call_signatures)
            item = self._new("summary", "rs")
            item.state = state
            out.append({"type": "response.output_item.added", "output_index": item.index,
                        "item": {"id": item.id, "type": "reasoning", "summary": []}})
            out += self._finish(item, incomplete=False)
        return out

    # -- text ------------------------------------------------------------------------------

    def _text(self, event: TextDelta) -> list[Wire]:
        out: list[Wire] = []
        item = self._current("message")
        if item is None:
            out += self._close_open(incomplete=False)
            item = self._new("message", "msg")
            out.append({"type": "response.output_item.added", "output_index": item.index, "item": {
                "id": item.id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}})
            out.append({"type": "response.content_part.added", "item_id": item.id, "output_index": item.index,
                        "content_index": 0, "part": _output_text("")})
        if event.text:
            item.text += event.text
            if self._deltas:
                out.append({"type": "response.output_text.delta", "item_id": item.id,
                            "output_index": item.index, "content_index": 0, "delta": event.text, "logprobs": []})
        return out

    # -- reasoning -------------------------------------------------------------------------

    def _reasoning(self, event: ReasoningDelta) -> list[Wire]:
        out: list[Wire] = []
        item = self._current("summary") or self._current("raw")
        if item is None or event.block_start or event.redacted is not None:
            out += self._close_open(incomplete=False)
            item = self._new("raw" if event.origin is None else "summary", "rs")
            item.state = ReasoningState(origin=event.origin)
            added: Wire = {"id": item.id, "type": "reasoning", "summary": []}
            if item.kind == "raw":
                added["content"] = []
            out.append({"type": "response.output_item.added", "output_index": item.index, "item": added})
        state = item.state
        assert state is not None
        if event.signature:
            state.signature = (state.signature or "") + event.signature
        if event.redacted is not None:
            state.redacted = event.redacted
        if event.origin:
            state.origin = event.origin
        if event.id:
            state.id = event.id
        if event.text:
            state.text += event.text
            if self._show:
                out += self._reasoning_text(item, event.text)
        return out

    def _reasoning_text(self, item: _Item, delta: str) -> list[Wire]:
        out: list[Wire] = []
        where = {"item_id": item.id, "output_index": item.index}
        item.text += delta
        if not self._deltas:
            item.started = True
            return out
        if item.kind == "raw":
            if not item.started:
                out.append({"type": "response.content_part.added", **where, "content_index": 0,
                            "part": {"type": "reasoning_text", "text": ""}})
            out.append({"type": "response.reasoning_text.delta", **where, "content_index": 0, "delta": delta})
        else:
            if not item.started:
                out.append({"type": "response.reasoning_summary_part.added", **where, "summary_index": 0,
                            "part": {"type": "summary_text", "text": ""}})
            out.append({"type": "response.reasoning_summary_text.delta", **where, "summary_index": 0,
                        "delta": delta})
        item.started = True
        return out

    # -- tool calls ------------------------------------------------------------------------

    def _named(self, name: str) -> dict[str, str]:
        """A call's ``name``, and its ``namespace`` where it is a function of a namespace tool."""
        namespace, separator, inner = name.partition(NAMESPACE_SEPARATOR)
        if separator and inner and namespace in self._namespaces:
            return {"name": inner, "namespace": namespace}
        return {"name": name}

    def _call(self, event: ToolCallDelta) -> list[Wire]:
        out: list[Wire] = []
        group = self._current("function_call")
        calls = group.calls if group is not None else {}
        item = calls.get(event.index)
        if item is None:
            if group is None:
                out += self._close_open(incomplete=False)
            item = self._new("function_call", "fc")
            item.call_id = event.id or f"call_{item.id}"
            item.name = event.name or ""
            first = group or item
            first.calls[event.index] = item
            out.append({"type": "response.output_item.added", "output_index": item.index, "item": {
                "id": item.id, "type": "function_call", "status": "in_progress", "arguments": "",
                "call_id": item.call_id, **self._named(item.name)}})
        elif event.name:
            item.name += event.name
        if event.signature:
            self._call_signatures[item.call_id] = event.signature
            self._call_origin = event.origin or self._call_origin
        if event.arguments:
            item.text += event.arguments
            if self._deltas:
                out.append({"type": "response.function_call_arguments.delta", "item_id": item.id,
                            "output_index": item.index, "delta": event.arguments})
        return out

    # -- items -----------------------------------------------------------------------------

    def _new(self, kind: str, prefix: str) -> _Item:
        item = _Item(kind=kind, id=f"{prefix}_{self._base}{self._count:03x}", index=self._count)
        self._count += 1
        self._open.append(item)
        return item

    def _current(self, kind: str) -> _Item | None:
        first = self._open[0] if self._open else None
        return first if first is not None and first.kind == kind else None

    def _close_open(self, incomplete: bool) -> list[Wire]:
        out: list[Wire] = []
        for item in sorted(self._open, key=lambda i: i.index):
            out += self._finish(item, incomplete)
        self._open = []
        return out

    def _finish(self, item: _Item, incomplete: bool) -> list[Wire]:
        """The events that close ``item``; the item goes to ``items``."""
        where = {"item_id": item.id, "output_index": item.index}
        out: list[Wire] = []
        done: Wire
        if item.kind == "message":
            part = _output_text(item.text)
            out.append({"type": "response.output_text.done", **where, "content_index": 0, "text": item.text,
                        "logprobs": []})
            out.append({"type": "response.content_part.done", **where, "content_index": 0, "part": part})
            done = {"id": item.id, "type": "message", "status": "incomplete" if incomplete else "completed",
                    "content": [part], "role": "assistant"}
        elif item.kind == "function_call":
            named = self._named(item.name)
            out.append({"type": "response.function_call_arguments.done", **where, "name": named["name"],
                        "arguments": item.text})
            done = {"id": item.id, "type": "function_call", "status": "incomplete" if incomplete else "completed",
                    "arguments": item.text, "call_id": item.call_id, **named}
        else:
            done = {"id": item.id, "type": "reasoning", "summary": []}
            if item.kind == "raw":
                done["content"] = []
            if item.started and item.kind == "raw":
                part = {"type": "reasoning_text", "text": item.text}
                out.append({"type": "response.reasoning_text.done", **where, "content_index": 0, "text": item.text})
                out.append({"type": "response.content_part.done", **where, "content_index": 0, "part": part})
                done["content"] = [part]
            elif item.started:
                part = {"type": "summary_text", "text": item.text}
                out.append({"type": "response.reasoning_summary_text.done", **where, "summary_index": 0,
                            "text": item.text})
                out.append({"type": "response.reasoning_summary_part.done", **where, "summary_index": 0,
                            "part": part})
                done["summary"] = [part]
            assert item.state is not None
            done["encrypted_content"] = self._sealer.seal(item.state.payload())
        out.append({"type": "response.output_item.done", "output_index": item.index, "item": done})
        self.items.append(done)
        return out


def _output_text(text: str) -> Wire:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}

"""One response as it is answered: folded into the response object, or streamed as typed events.

A stream is ``response.created``, ``response.in_progress``, the events of the output items
(``output.py``), then ``response.completed``, or ``response.incomplete`` when the answer was cut
short; an answer that fails after the stream started ends with ``response.failed`` carrying the
error, never with a completion. Every event has its ``sequence_number``, from 0 up, and goes out
as ``event: <type>`` and ``data: <json>``, with no ``[DONE]``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from modelgate.http.sse import sse_event
from modelgate.schema.errors import GatewayError
from modelgate.schema.events import Event
from modelgate.surfaces.base import Sealer
from modelgate.surfaces.responses.output import OutputBuilder, Wire
from modelgate.surfaces.responses.parse import ResponsesRequest
from modelgate.surfaces.responses.render import incomplete_reason, response_object, visible, visible_response


class ResponseAnswer:
    """The response one request gets: its id, its output as it is built, and at the end the
    whole response object (``final``, reasoning state included, for the store)."""

    def __init__(self, response_id: str, parsed: ResponsesRequest, model: str, sealer: Sealer,
                 show_reasoning: bool, streamed: bool) -> None:
        self.id = response_id
        self.parsed = parsed
        self.created_at = int(time.time())
        self.model = model  # until the upstream names the model that answered
        self.output = OutputBuilder(response_id.removeprefix("resp_"), sealer, show_reasoning, deltas=streamed,
                                    namespaces=parsed.namespaces)
        self.final: dict[str, Any] | None = None

    def snapshot(self, status: str, error: GatewayError | None = None) -> dict[str, Any]:
        output = self.output
        reason = incomplete_reason(output.finish.reason if output.finish else None)
        finished = status in ("completed", "incomplete")
        return response_object(
            id=self.id, created_at=self.created_at, status=status, model=output.model or self.model,
            echo=self.parsed.echo, output=list(output.items), usage=output.usage if finished else None,
            incomplete_reason=reason if status == "incomplete" else None, error=error,
            completed_at=int(time.time()) if status == "completed" else None)

    def finish(self) -> list[Wire]:
        """The events that close the output; ``final`` is then the whole response."""
        events = self.output.close()
        self.final = self.snapshot("incomplete" if self.output.cut else "completed")
        return events


class ResponseFold:
    __slots__ = ("answer",)

    def __init__(self, answer: ResponseAnswer) -> None:
        self.answer = answer

    def add(self, event: Event) -> None:
        self.answer.output.add(event)

    def body(self) -> bytes:
        answer = self.answer
        answer.finish()
        assert answer.final is not None
        return orjson.dumps(visible_response(answer.final, answer.parsed.sealed_reasoning))


class ResponseStream:
    __slots__ = ("answer", "sequence", "started")

    def __init__(self, answer: ResponseAnswer) -> None:
        self.answer = answer
        self.sequence = 0
        self.started = False

    def render(self, event: Event) -> bytes:
        events = self.answer.output.add(event)  # first, so that a Start names the model in the head
        return self._head() + self._frames(events)

    def close(self) -> bytes:
        answer = self.answer
        frames = self._head() + self._frames(answer.finish())
        assert answer.final is not None
        end = "response.incomplete" if answer.final["status"] == "incomplete" else "response.completed"
        return frames + self._frames([{"type": end, "response": self._visible(answer.final)}])

    def fail(self, error: GatewayError) -> bytes:
        failed = self.answer.snapshot("failed", error)
        return self._head() + self._frames([{"type": "response.failed", "response": self._visible(failed)}])

    def _head(self) -> bytes:
        """``response.created`` and ``response.in_progress``, once, before anything else."""
        if self.started:
            return b""
        self.started = True
        return self._frames([{"type": "response.created", "response": self.answer.snapshot("in_progress")},
                             {"type": "response.in_progress", "response": self.answer.snapshot("in_progress")}])

    def _frames(self, events: list[Wire]) -> bytes:
        if not events:
            return b""
        sealed = self.answer.parsed.sealed_reasoning
        frames = []
        for event in events:
            event["sequence_number"] = self.sequence
            self.sequence += 1
            if not sealed and "item" in event:
                event["item"] = visible(event["item"], False)
            frames.append(sse_event(event["type"], orjson.dumps(event)))
        return b"".join(frames)

    def _visible(self, body: dict[str, Any]) -> dict[str, Any]:
        return visible_response(body, self.answer.parsed.sealed_reasoning)

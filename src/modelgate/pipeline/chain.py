"""Stages and how they wrap each other."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Protocol

from modelgate.pipeline.call import Call
from modelgate.schema.events import Event

Handler = Callable[[Call], AsyncGenerator[Event, None]]


class Stage(Protocol):
    """A pipeline stage: sees the call, calls ``next`` (or not), and passes events through.

    A stage may raise a ``GatewayError`` before calling ``next`` (a limit), watch events go by
    (metering), or call ``next`` again on failure (fallback). It must re-raise what it does not
    handle and never swallow ``CancelledError``.
    """

    def __call__(self, call: Call, next: Handler) -> AsyncGenerator[Event, None]: ...


def build_chain(stages: Sequence[Stage], terminal: Handler) -> Handler:
    handler = terminal
    for stage in reversed(stages):
        handler = _bind(stage, handler)
    return handler


def _bind(stage: Stage, next: Handler) -> Handler:
    def handler(call: Call) -> AsyncGenerator[Event, None]:
        return stage(call, next)
    return handler

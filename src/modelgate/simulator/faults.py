"""Fault specs: how a request asks the simulator to misbehave.

A fault comes from (highest priority first) the ``x-sim-fault`` request header, a runtime fault set through
``POST /sim/faults`` for the request's model, one set for ``"*"``, or the model's ``fault`` in the config.
The spec syntax is ``kind[=value][;option=value...]``:

``status=CODE``            answer CODE with an error body in the called API's own format (429 → rate limit,
                           529 → Anthropic ``overloaded_error``, 500/503, any 4xx/5xx).
                           Options: ``retry_after=S`` sends ``Retry-After: S`` as written, so a hostile value
                           goes too (``retry_after=nan``, ``retry_after=1e400``, ``retry_after=not-a-date``);
                           ``retry_after=date+S`` (or ``date-S``) sends the HTTP date S seconds from now;
                           ``retry_after_ms=MS`` sends ``retry-after-ms: MS``; ``message=TEXT`` replaces the error
                           message.
``timeout[=S]``            accept the request and never send headers: sleep S seconds (default 600) or until the
                           client goes away / the simulator stops, then drop the connection.
``cut=K``                  streaming: send K chunks, then abort the TCP connection without a terminator.
                           Non-stream: send headers and half of the body, then abort.
``malformed``              non-stream: 200 with a body that is not JSON. Streaming: the first ``data:`` line is
                           not JSON (the rest of the stream follows normally).
``error_after=K``          streaming: after K chunks send the API's mid-stream error (Anthropic ``event: error``
                           with ``overloaded_error``, OpenAI ``data: {"error": ...}``, Gemini ``data: {"error": ...}``)
                           and end the stream. Non-stream: same as ``status=500``.
``echo=FIELD``             answer 400 ``invalid_request_error`` whose message quotes the request body's FIELD as
                           sent (``Invalid value for 'FIELD': 'VALUE'.``), as upstreams that echo an invalid value do.
``safety``                 the reply is blocked: Gemini ``finishReason: SAFETY`` with safety ratings and no text,
                           OpenAI ``finish_reason: content_filter`` with empty content, Anthropic
                           ``stop_reason: refusal``.

Hostile upstreams, for the gateway's defences:

``dribble[=MS]``           the whole answer, status line and headers first, one byte every MS milliseconds
                           (default 100), then the connection closes.
``dribble_body=MS``        the status line and headers at once, then the body one byte every MS milliseconds.
``endless[=MS]``           streaming: the stream's frames up to its first content, then that content frame again
                           every MS milliseconds (default 20), never ending. Non-stream: the headers, then a body
                           that never ends (a space every MS milliseconds). Until the client goes away or the
                           simulator stops.
``echo_key[=K]``           an error that quotes the API key and the auth header the request carried, as a careless
                           upstream would: a 401 answer; with K, on a stream, the API's mid-stream error after K
                           chunks instead.
``model=VALUE``            the answer names VALUE as its model (``model``, Anthropic's ``message.model``, Gemini's
                           ``modelVersion``): VALUE as JSON where it is JSON (``model=42``, ``model=null``,
                           ``model="gpt\r\nx-evil: 1"``, ``model="\u6a21\u578b"``), else as text. (A ``;``
                           would end the spec.)

Pacing can be overridden per request with ``x-sim-latency-ms`` (non-stream delay), ``x-sim-ttft-ms`` (delay
before the first stream chunk) and ``x-sim-chunk-ms`` (gap between chunks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

import orjson

FaultKind = Literal["status", "timeout", "cut", "malformed", "error_after", "safety", "dribble", "dribble_body",
                    "endless", "echo_key", "model", "echo"]

DEFAULT_TIMEOUT_S = 600.0
DEFAULT_DRIBBLE_MS = 100.0
DEFAULT_ENDLESS_MS = 20.0


class FaultSpecError(ValueError):
    """A fault spec string that does not follow the documented syntax."""


@dataclass(frozen=True)
class Fault:
    """One parsed fault spec."""

    kind: FaultKind
    spec: str
    status: int = 500
    after: int = 0
    seconds: float = DEFAULT_TIMEOUT_S
    retry_after: str | None = None
    retry_after_ms: str | None = None
    message: str | None = None
    field: str | None = None  # echo: the body field quoted
    gap_ms: float = 0.0  # dribble, dribble_body, endless: the pause between bytes or frames
    model: object = None  # model: what the answer names as its model

    @property
    def mid_stream(self) -> bool:
        """The fault breaks a stream after ``after`` chunks (``cut``, ``error_after``, ``echo_key=K``)."""
        return self.kind in ("cut", "error_after") or (self.kind == "echo_key" and self.after >= 0)


def parse_fault(spec: str) -> Fault:
    """Parse ``spec`` (see the module docstring); raises :class:`FaultSpecError` naming the fix."""
    parts = [part.strip() for part in spec.strip().split(";") if part.strip()]
    if not parts:
        raise FaultSpecError("empty fault spec; use e.g. 'status=429', 'timeout', 'cut=3', 'malformed'")
    head, _, value = parts[0].partition("=")
    options: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, option_value = part.partition("=")
        if not sep:
            raise FaultSpecError(f"fault option {part!r} needs a value, e.g. 'retry_after=2'")
        options[key.strip()] = option_value.strip()
    unknown = set(options) - {"retry_after", "retry_after_ms", "message"}
    if unknown:
        raise FaultSpecError(f"unknown fault option(s) {sorted(unknown)}; use retry_after, retry_after_ms, message")
    kind = head.strip()
    if kind == "status":
        status = _int(value, "status")
        if not 400 <= status <= 599:
            raise FaultSpecError(f"status={status}: the status of a fault must be 400-599")
        return Fault(
            kind="status",
            spec=spec,
            status=status,
            retry_after=options.get("retry_after"),
            retry_after_ms=options.get("retry_after_ms"),
            message=options.get("message"),
        )
    if kind == "timeout":
        seconds = float(value) if value else DEFAULT_TIMEOUT_S
        return Fault(kind="timeout", spec=spec, seconds=min(seconds, DEFAULT_TIMEOUT_S))
    if kind in ("cut", "error_after"):
        after = _int(value, kind)
        if after < 0:
            raise FaultSpecError(f"{kind}={after}: the chunk count must be 0 or more")
        return Fault(kind="cut" if kind == "cut" else "error_after", spec=spec, after=after, status=500)
    if kind == "echo":
        if not value:
            raise FaultSpecError("echo needs the body field to quote, e.g. 'echo=reasoning_effort'")
        return Fault(kind="echo", spec=spec, status=400, field=value)
    if kind in ("malformed", "safety"):
        if value:
            raise FaultSpecError(f"{kind!r} takes no value")
        return Fault(kind="malformed" if kind == "malformed" else "safety", spec=spec)
    if kind in ("dribble", "dribble_body", "endless"):
        default = DEFAULT_ENDLESS_MS if kind == "endless" else DEFAULT_DRIBBLE_MS
        if not value and kind == "dribble_body":
            raise FaultSpecError("dribble_body needs the milliseconds between bytes, e.g. 'dribble_body=100'")
        gap = _milliseconds(value, kind) if value else default
        return Fault(kind=cast(FaultKind, kind), spec=spec, gap_ms=gap)
    if kind == "echo_key":
        after = _int(value, kind) if value else -1
        if value and after < 0:
            raise FaultSpecError(f"echo_key={after}: the chunk count must be 0 or more")
        return Fault(kind="echo_key", spec=spec, status=401, after=after)
    if kind == "model":
        if not value:
            raise FaultSpecError("model needs a value, e.g. 'model=42'")
        try:
            named: object = orjson.loads(value)
        except orjson.JSONDecodeError:
            named = value
        return Fault(kind="model", spec=spec, model=named)
    raise FaultSpecError(
        f"unknown fault {kind!r}; valid faults: status=CODE, timeout[=S], cut=K, malformed, error_after=K, safety, "
        "echo=FIELD, dribble[=MS], dribble_body=MS, endless[=MS], echo_key[=K], model=VALUE"
    )


def _milliseconds(value: str, name: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number <= 60_000:
        raise FaultSpecError(f"{name} needs milliseconds from 0 to 60000, got {value!r}")
    return number


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise FaultSpecError(f"{name} needs an integer value, got {value!r}") from None


@dataclass
class _RuntimeFault:
    fault: Fault
    remaining: int | None


class FaultBook:
    """Faults set at runtime through the control API, per model name or ``"*"``, optionally for N requests."""

    def __init__(self) -> None:
        self._faults: dict[str, _RuntimeFault] = {}

    def set(self, model: str, fault: Fault | None, count: int | None) -> None:
        """Install (or with ``fault=None`` clear) the fault for ``model``; ``count`` limits it to N requests."""
        if fault is None:
            self._faults.pop(model, None)
        else:
            self._faults[model] = _RuntimeFault(fault=fault, remaining=count)

    def clear(self) -> None:
        self._faults.clear()

    def take(self, model: str) -> Fault | None:
        """The runtime fault that applies to a request for ``model``, consuming one use of a counted fault."""
        for key in (model, "*"):
            entry = self._faults.get(key)
            if entry is None:
                continue
            if entry.remaining is not None:
                entry.remaining -= 1
                if entry.remaining <= 0:
                    del self._faults[key]
            return entry.fault
        return None

    def snapshot(self) -> dict[str, dict[str, object]]:
        return {key: {"fault": e.fault.spec, "remaining": e.remaining} for key, e in self._faults.items()}

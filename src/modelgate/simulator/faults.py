"""Fault specs: how a request asks the simulator to misbehave.

A fault comes from (highest priority first) the ``x-sim-fault`` request header, a runtime fault set through
``POST /sim/faults`` for the request's model, one set for ``"*"``, or the model's ``fault`` in the config.
The spec syntax is ``kind[=value][;option=value...]``:

``status=CODE``            answer CODE with an error body in the called API's own format (429 → rate limit,
                           529 → Anthropic ``overloaded_error``, 500/503, any 4xx/5xx).
                           Options: ``retry_after=S`` sends ``Retry-After: S``; ``retry_after_ms=MS`` sends
                           ``retry-after-ms: MS``; ``message=TEXT`` replaces the error message.
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

Pacing can be overridden per request with ``x-sim-latency-ms`` (non-stream delay), ``x-sim-ttft-ms`` (delay
before the first stream chunk) and ``x-sim-chunk-ms`` (gap between chunks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["status", "timeout", "cut", "malformed", "error_after", "safety", "echo"]

DEFAULT_TIMEOUT_S = 600.0


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
    raise FaultSpecError(
        f"unknown fault {kind!r}; valid faults: status=CODE, timeout[=S], cut=K, malformed, error_after=K, safety, "
        "echo=FIELD"
    )


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

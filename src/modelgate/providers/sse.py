"""Server-sent events: a decoder for upstream streams and the framing helpers for ours.

The decoder follows the WHATWG rules that matter for model APIs: ``data:`` lines of one event
are joined with newlines, ``event:`` names it, lines starting with ``:`` are comments
(keep-alives), a blank line ends the event, and both ``\\n`` and ``\\r\\n`` end lines.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass


@dataclass(slots=True)
class SSE:
    event: str | None
    data: str


async def iter_sse(lines: AsyncIterable[bytes]) -> AsyncIterator[SSE]:
    """Decode an async iterable of lines (as aiohttp's ``StreamReader`` gives) into events."""
    event: str | None = None
    data: list[str] = []
    async for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield SSE(event, "\n".join(data))
            event, data = None, []
            continue
        if line[0] == ":":
            continue
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:  # a stream that ends without the final blank line
        yield SSE(event, "\n".join(data))


def sse_data(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def sse_event(name: str, payload: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n"

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


async def iter_sse(chunks: AsyncIterable[bytes]) -> AsyncIterator[SSE]:
    """Decode a byte stream cut anywhere (``StreamReader.iter_any()``, or lines) into events.

    Lines are split here rather than by aiohttp's ``readline``, which refuses lines over its
    buffer size: a data line carrying an inline image can be megabytes long.
    """
    event: str | None = None
    data: list[str] = []
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end].decode("utf-8").rstrip("\r")
            start = end + 1
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
        del buffer[:start]
    tail = buffer.decode("utf-8").strip("\r\n")
    if tail.startswith("data:"):  # a stream that ends without its final newline
        data.append(tail[5:].lstrip(" "))
    if data:
        yield SSE(event, "\n".join(data))


def sse_data(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def sse_event(name: str, payload: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n"

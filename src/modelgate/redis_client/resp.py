"""RESP2, the Redis wire format: commands encoded as arrays of bulk strings, replies parsed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Arg = str | int | float | bytes


class RespError(Exception):
    """An error reply from Redis (the script failed, NOSCRIPT, a wrong password...)."""


def encode(args: Sequence[Arg]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


INCOMPLETE: Any = object()


def parse(buffer: bytearray, start: int) -> tuple[Any, int]:
    """One reply from ``buffer`` at ``start``: (reply, end), or (INCOMPLETE, start).

    An error reply is returned (not raised) as a ``RespError``: it answers one request of many.
    """
    end = buffer.find(b"\r\n", start)
    if end < 0:
        return INCOMPLETE, start
    kind, line = buffer[start:start + 1], bytes(buffer[start + 1:end])
    after = end + 2
    if kind == b"+":
        return line.decode(), after
    if kind == b"-":
        return RespError(line.decode()), after
    if kind == b":":
        return int(line), after
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, after
        if len(buffer) < after + size + 2:
            return INCOMPLETE, start
        return bytes(buffer[after:after + size]), after + size + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = parse(buffer, after)
            if item is INCOMPLETE:
                return INCOMPLETE, start
            items.append(item)
        return items, after
    raise RespError(f"unexpected reply from Redis: {bytes(buffer[start:end])!r}")

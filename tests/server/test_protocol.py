"""The gateway's HTTP protocol: a response's head and body leave in one write; streamed chunks are not held back."""

from __future__ import annotations

import asyncio

import uvloop

from modelgate.server.protocol import _GatheredWrites


class Recorder:
    """Stands in for the socket transport: records each write as the kernel would get it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_writes_of_one_turn_leave_together_and_the_next_turn_is_not_held() -> None:
    async def scenario() -> None:
        wire = Recorder()
        gathered = _GatheredWrites(wire, asyncio.get_running_loop())  # type: ignore[arg-type]
        gathered.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        gathered.write(b"{}")
        assert wire.writes == []  # held until the end of this turn
        await asyncio.sleep(0)
        assert wire.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        gathered.write(b"data: 1\n\n")  # a streamed chunk, written in a later turn
        await asyncio.sleep(0)
        assert wire.writes[1:] == [b"data: 1\n\n"]
        gathered.write(b"last")
        gathered.close()  # sends what waits, then closes
        assert wire.writes[2:] == [b"last"] and wire.closed
        gathered.write(b"too late")
        await asyncio.sleep(0)
        assert wire.writes[3:] == []  # nothing is written to a closing transport
        assert gathered.get_extra_info("peername") == "info:peername"  # the rest is the transport's own

    uvloop.run(scenario())

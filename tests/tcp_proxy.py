"""A TCP proxy in a background thread, to cut a real server off and bring it back.

``cut()`` closes every open connection and refuses new ones (they are accepted and closed at
once, as when a server is stopped); ``blackhole()`` keeps every connection open, accepts new ones,
and passes nothing either way (a server, or a network, that neither answers nor refuses);
``restore()`` forwards again, closing what the black hole held. The server behind is the real
one, untouched, so an outage can be as short or as long as a test needs.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from tests.support import bound_socket


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._socket = bound_socket()  # bound now: the port is known before the proxy starts
        self.port = int(self._socket.getsockname()[1])
        self.connections = 0
        self.swallowed = 0  # connections accepted by the black hole
        self._cut = False
        self._blackhole = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._held: set[asyncio.StreamWriter] = set()  # connections the black hole holds
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._socket.close()

    def _serve(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(self._accept, sock=self._socket))
        self._ready.set()
        loop.run_forever()
        # Stopped: close everything and let the pipes finish before the loop goes.
        server.close()
        for writer in list(self._writers | self._held):
            writer.transport.abort()
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(server.wait_closed())
        loop.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.close()
            return
        if self._blackhole:
            self.swallowed += 1
            await self._swallow(reader, writer)
            return
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._held.add(writer)
        try:
            while await reader.read(65536):
                pass
        except OSError:
            pass
        finally:
            self._held.discard(writer)
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self._blackhole:
                    continue  # read and dropped: the other side hears nothing
                writer.write(data)
                await writer.drain()
        except OSError:
            pass  # the other side went away (or the test cut it): close this side too
        finally:
            self._writers.discard(writer)
            writer.close()

    def _run(self, action: Any) -> None:
        done = threading.Event()

        def run() -> None:
            action()
            done.set()

        self._loop.call_soon_threadsafe(run)
        if not done.wait(30):
            raise RuntimeError("the proxy's loop did not run the action")

    def cut(self) -> None:
        def cut() -> None:
            self._cut = True
            for writer in list(self._writers):
                writer.transport.abort()
        self._run(cut)

    def blackhole(self) -> None:
        def blackhole() -> None:
            self._blackhole = True
        self._run(blackhole)

    def restore(self) -> None:
        def restore() -> None:
            if self._blackhole:
                # What passed through the black hole is lost: its connections end.
                for writer in list(self._writers | self._held):
                    writer.transport.abort()
            self._cut = False
            self._blackhole = False
        self._run(restore)

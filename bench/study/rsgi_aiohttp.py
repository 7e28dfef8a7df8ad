"""Granian's native RSGI interface (no ASGI message dicts) with aiohttp upstream."""

from __future__ import annotations

from typing import Any

import common

JSON = [("content-type", "application/json")]
SSE = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]


class Proxy:
    def __init__(self) -> None:
        self.session: Any = None

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.method == "GET":
            proto.response_bytes(200, JSON, b'{"status":"ok"}')
            return
        body = await proto()
        if self.session is None:
            self.session = common.aiohttp_session()
        async with self.session.post(common.UPSTREAM, data=body, headers=common.UPSTREAM_HEADERS) as r:
            if r.headers.get("Content-Type", "").startswith("text/event-stream"):
                transport = proto.response_stream(r.status, SSE)
                async for chunk in r.content.iter_any():
                    await transport.send_bytes(chunk)
                return
            proto.response_bytes(r.status, JSON, await r.read())


app = Proxy()

"""Raw ASGI pass-through (no framework) with aiohttp as the upstream client.

Serve with uvicorn (``--http httptools --loop uvloop``) or granian (``--interface asgi``).
``STUDY_TRANSLATE=1`` turns on the parse/rebuild/re-serialize path of a translating gateway.
"""

from __future__ import annotations

from typing import Any

import common

HEALTH = b'{"status":"ok"}'
JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


class Proxy:
    def __init__(self) -> None:
        self.session: Any = None  # made on first use, inside the server's event loop

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (msg := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            if self.session is not None:
                await self.session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] == "GET":
            await send({"type": "http.response.start", "status": 200, "headers": JSON})
            await send({"type": "http.response.body", "body": HEALTH})
            return
        body, more = b"", True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        if common.TRANSLATE:
            body = common.rebuild_request(body)
        if self.session is None:
            self.session = common.aiohttp_session()
        async with self.session.post(common.UPSTREAM, data=body, headers=common.UPSTREAM_HEADERS) as r:
            if r.headers.get("Content-Type", "").startswith("text/event-stream"):
                await send({"type": "http.response.start", "status": r.status, "headers": SSE})
                sse = common.SseRebuilder() if common.TRANSLATE else None
                async for chunk in r.content.iter_any():
                    out = sse.feed(chunk) if sse else chunk
                    if out:
                        await send({"type": "http.response.body", "body": out, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return
            data = await r.read()
            if common.TRANSLATE and r.status == 200:
                data = common.rebuild_response(data)
            await send({"type": "http.response.start", "status": r.status,
                        "headers": [*JSON, (b"content-length", str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": data})


app = Proxy()

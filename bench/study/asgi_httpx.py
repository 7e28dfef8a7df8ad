"""Raw ASGI pass-through with httpx2 (the client the installed openai SDK uses) upstream."""

from __future__ import annotations

from typing import Any

import common
import httpx2

HEALTH = b'{"status":"ok"}'
JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


class Proxy:
    def __init__(self) -> None:
        self.client: httpx2.AsyncClient | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            if self.client is not None:
                await self.client.aclose()
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
        if self.client is None:
            limits = httpx2.Limits(max_connections=1000, max_keepalive_connections=1000)
            self.client = httpx2.AsyncClient(limits=limits, timeout=600)
        req = self.client.build_request("POST", common.UPSTREAM, content=body, headers=common.UPSTREAM_HEADERS)
        r = await self.client.send(req, stream=True)
        try:
            if r.headers.get("content-type", "").startswith("text/event-stream"):
                await send({"type": "http.response.start", "status": r.status_code, "headers": SSE})
                async for chunk in r.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return
            data = await r.aread()
            await send({"type": "http.response.start", "status": r.status_code,
                        "headers": [*JSON, (b"content-length", str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": data})
        finally:
            await r.aclose()


app = Proxy()

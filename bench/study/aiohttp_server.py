"""aiohttp.web server + aiohttp client pass-through, on uvloop. ``python aiohttp_server.py PORT``."""

from __future__ import annotations

import sys

import common
import uvloop
from aiohttp import web


async def health(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    if common.TRANSLATE:
        body = common.rebuild_request(body)
    session = request.app["session"]
    async with session.post(common.UPSTREAM, data=body, headers=common.UPSTREAM_HEADERS) as r:
        if r.headers.get("Content-Type", "").startswith("text/event-stream"):
            resp = web.StreamResponse(status=r.status, headers={"Content-Type": "text/event-stream",
                                                                "Cache-Control": "no-cache"})
            await resp.prepare(request)
            async for chunk in r.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        data = await r.read()
        if common.TRANSLATE and r.status == 200:
            data = common.rebuild_response(data)
        return web.Response(body=data, status=r.status, content_type="application/json")


async def main(port: int) -> None:
    app = web.Application()
    app["session"] = common.aiohttp_session()
    app.router.add_get("/health", health)
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    try:
        await __import__("asyncio").Event().wait()
    finally:
        await app["session"].close()
        await runner.cleanup()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))

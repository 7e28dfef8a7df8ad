"""Starlette (routing, Request, Response) on uvicorn with aiohttp upstream: the framework's cost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import common
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


async def health(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def chat(request: Request) -> Response:
    body = await request.body()
    session = request.app.state.session
    r = await session.post(common.UPSTREAM, data=body, headers=common.UPSTREAM_HEADERS)
    if r.headers.get("Content-Type", "").startswith("text/event-stream"):

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in r.content.iter_any():
                    yield chunk
            finally:
                r.release()

        return StreamingResponse(relay(), status_code=r.status, media_type="text/event-stream")
    data = await r.read()
    r.release()
    return Response(data, status_code=r.status, media_type="application/json")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.session = common.aiohttp_session()
    yield
    await app.state.session.close()


app = Starlette(routes=[Route("/health", health), Route("/v1/chat/completions", chat, methods=["POST"])],
                lifespan=lifespan)

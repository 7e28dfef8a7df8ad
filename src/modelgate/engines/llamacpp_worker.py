"""The llamacpp engine's child process: one GGUF model behind OpenAI's chat completions, or, for an
embedding model, behind OpenAI's embeddings.

    python -m modelgate.engines.llamacpp_worker --model PATH [--name NAME] [--max-concurrency N]
                                                 [--n-ctx TOKENS] [--device cpu|cuda|auto]

It binds a port of 127.0.0.1 that the system picks and prints ``{"listening": PORT}`` on stdout,
then loads the model; ``GET /health`` answers 503 while it loads and 200 once it serves, with the
model's facts (its context window, and the format its chat template writes tool calls in, or null
where it renders no tools).
``POST /v1/chat/completions`` answers whole or streamed (SSE), with ``usage`` in both (the last
chunk of a stream, as OpenAI's ``stream_options.include_usage``); ``response_format`` json_object
or json_schema holds decoding to a grammar (``chat_request.py``); tool calls come as OpenAI's
``tool_calls``, each whole in one stream delta once the model has written all of it
(``llamacpp_chat.py``). The answers are a ``ChatService``'s (``llamacpp_service.py``): up to
``--max-concurrency`` requests run at once, each on a context of its own. The parent
(``replica.py``) admits no more than that; a request beyond it waits here.

A GGUF that pools its hidden states (``<arch>.pooling_type``, and no chat template: an embedding
model, ``catalog/gguf.py``) is loaded in llama.cpp's embedding mode and answers
``POST /v1/embeddings`` (``llamacpp_embed.py``); its health facts say ``"mode": "embedding"``
with its dimensions and pooling. Each kind of model answers the other's route with a 400 naming
what it serves.

It stops on SIGTERM or SIGINT, after the requests in flight, and when its stdin closes: the
gateway that started it is gone, however it went.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import sys

from aiohttp import web

from modelgate.engines.llamacpp_service import ChatService, Reply
from modelgate.engines.parent_watch import on_parent_gone

DRAIN_S = 30.0  # how long a stopping worker lets requests in flight finish


class Worker:
    """The HTTP face of a ``ChatService``."""

    def __init__(self, service: ChatService) -> None:
        self.service = service

    async def health(self, request: web.Request) -> web.Response:
        return _response(self.service.health())

    async def chat(self, request: web.Request) -> web.StreamResponse:
        reply = await self.service.reply(await request.read())
        if reply.chunks is None:
            return _response(reply)
        response = web.StreamResponse(headers={"content-type": reply.content_type, "cache-control": "no-cache"})
        try:
            await response.prepare(request)
            async for chunk in reply.chunks:
                await response.write(chunk)
        finally:
            await reply.chunks.aclose()  # a client gone mid-answer stops its generation
        await response.write_eof()
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        return _response(await self.service.embed(await request.read()))


def _response(reply: Reply) -> web.Response:
    return web.Response(body=reply.body, status=reply.status, content_type=reply.content_type)


async def serve(args: argparse.Namespace) -> int:
    service = ChatService(args.model, args.name, args.max_concurrency, args.n_ctx, args.device)
    worker = Worker(service)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/health", worker.health)
    app.router.add_post("/v1/chat/completions", worker.chat)
    app.router.add_post("/v1/embeddings", worker.embeddings)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=DRAIN_S, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    print(json.dumps({"listening": sock.getsockname()[1]}), flush=True)

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    if args.watch_stdin:
        def stop() -> None:
            loop.call_soon_threadsafe(stopping.set)

        on_parent_gone(stop)
    loading = asyncio.ensure_future(service.start())
    stopped = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({loading, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if loading.done() and loading.exception() is not None:
        error = loading.exception()
        print(f"modelgate engine: cannot load {args.model}: {error}", file=sys.stderr, flush=True)
        await runner.cleanup()
        return 3
    if loading.done():
        print(json.dumps({"ready": service.facts}), flush=True)
    await stopped
    await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelgate.engines.llamacpp_worker")
    parser.add_argument("--model", required=True, help="the GGUF file")
    parser.add_argument("--name", default=None, help="the model's name in answers (default: the file's stem)")
    parser.add_argument("--max-concurrency", type=int, default=4)
    parser.add_argument("--n-ctx", type=int, default=0, help="context window in tokens; 0: the model's own")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument("--watch-stdin", action="store_true", help="stop when stdin closes")
    args = parser.parse_args(argv)
    if args.name is None:
        from pathlib import Path

        args.name = Path(args.model).stem
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())

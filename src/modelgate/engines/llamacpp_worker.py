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
(``llamacpp_chat.py``). Up to ``--max-concurrency`` requests run at once, each on a ``Llama`` of
its own: the weights are mapped from the file once and shared, each has its own context (KV
cache). The parent (``replica.py``) admits no more than that; a request beyond it waits here.

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
import contextlib
import json
import logging
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("modelgate.engines.worker")

DRAIN_S = 30.0  # how long a stopping worker lets requests in flight finish
FALLBACK_CONTEXT = 512  # an embedding model's context where neither the deployment nor its GGUF gives one


class Engine:
    """The model, loaded once per context; contexts made as concurrency asks for them."""

    def __init__(self, path: str, name: str, max_concurrency: int, n_ctx: int, device: str) -> None:
        self.path = path
        self.name = name
        self.max_concurrency = max_concurrency
        self.n_ctx = n_ctx
        self.device = device
        self.ready = False
        self.facts: dict[str, Any] = {}
        self.embedding = False  # an embedding model (read from the GGUF as it loads)
        self.trained = 0  # the context the model was trained for, from the GGUF
        self._idle: asyncio.Queue[Any] = asyncio.Queue()
        self._made = 0
        self._making = asyncio.Lock()

    def _load(self) -> Any:
        import llama_cpp

        from modelgate.engines.llamacpp_chat import ChatModel
        from modelgate.engines.llamacpp_embed import EmbeddingModel

        offload = llama_cpp.llama_supports_gpu_offload()
        if self.device == "cuda" and not offload:
            raise RuntimeError("device: cuda, but this llama-cpp-python was built without GPU support; "
                               "install a CUDA build of llama-cpp-python or set device: cpu")
        layers = -1 if self.device == "cuda" or (self.device == "auto" and offload) else 0
        if not self.embedding:
            llm = llama_cpp.Llama(model_path=self.path, n_ctx=self.n_ctx, n_gpu_layers=layers, verbose=False)
            return ChatModel(llm)
        # An encoder sees a whole input at once: a batch holds a context's worth of tokens, and the
        # context no more than the positions the model was trained with (llama.cpp refuses a
        # GGUF that does not state them).
        context = min(self.n_ctx or self.trained, self.trained or self.n_ctx) or FALLBACK_CONTEXT
        llm = llama_cpp.Llama(model_path=self.path, embedding=True, n_ctx=context, n_batch=context,
                              n_ubatch=context, n_gpu_layers=layers, verbose=False)
        return EmbeddingModel(llm)

    def _facts(self, model: Any, started: float) -> dict[str, Any]:
        facts: dict[str, Any] = {"n_ctx": model.llm.n_ctx(), "n_ctx_train": model.llm._model.n_ctx_train(),
                                 "load_s": round(time.monotonic() - started, 3)}
        if self.embedding:
            return {**facts, "mode": "embedding", "dimensions": model.dimensions, "pooling": model.pooling,
                    "normalize": model.normalize}
        tools = model.tool_template
        return {**facts, "mode": "chat", "tool_format": tools.format if tools is not None else None}

    async def load(self) -> None:
        from modelgate.catalog.gguf import read_gguf

        started = time.monotonic()
        info = await asyncio.to_thread(read_gguf, self.path)
        self.embedding = info.embedding
        self.trained = info.context_length or 0
        model = await asyncio.to_thread(self._load)
        self._made = 1
        self._idle.put_nowait(model)
        self.facts = self._facts(model, started)
        self.ready = True

    async def take(self) -> Any:
        """A model context no request is using: an idle one, a new one, or the next one freed."""
        if self._idle.empty() and self._made < self.max_concurrency:
            async with self._making:
                if self._idle.empty() and self._made < self.max_concurrency:
                    self._made += 1
                    try:
                        return await asyncio.to_thread(self._load)
                    except BaseException:
                        self._made -= 1
                        raise
        return await self._idle.get()

    def give_back(self, model: Any) -> None:
        self._idle.put_nowait(model)


def _error(status: int, message: str, *, code: str | None = None, param: str | None = None,
           kind: str = "invalid_request_error") -> web.Response:
    body = {"error": {"message": message, "type": kind, "code": code, "param": param}}
    return web.json_response(body, status=status)


class Worker:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def health(self, request: web.Request) -> web.Response:
        if not self.engine.ready:
            return web.json_response({"status": "loading", "model": self.engine.name}, status=503)
        return web.json_response({"status": "ok", "model": self.engine.name, **self.engine.facts})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        from modelgate.engines.chat_request import BadRequest, read_job

        if not self.engine.ready:
            return _error(503, "the model is still loading", code="engine_loading", kind="server_error")
        if self.engine.embedding:
            return _error(400, f"local model '{self.engine.name}' is an embedding model: it serves /v1/embeddings, "
                          "not chat; send chat to a deployment of a chat model", code="model_not_supported",
                          param="model")
        try:
            job = read_job(await request.json())
        except json.JSONDecodeError:
            return _error(400, "the body is not JSON")
        except BadRequest as bad:
            return _error(400, str(bad), code=bad.code, param=bad.param)
        model = await self.engine.take()
        pieces: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        task = asyncio.ensure_future(self._run(model, job, pieces))
        # The context is free once its thread is done, which may be after this handler ends.
        task.add_done_callback(lambda _: self.engine.give_back(model))
        try:
            if job.stream:
                return await self._stream(request, pieces)
            return await self._whole(pieces)
        finally:
            job.cancelled.set()  # the answer is complete, or the client went away

    async def embeddings(self, request: web.Request) -> web.Response:
        from modelgate.engines.chat_request import BadRequest
        from modelgate.engines.embedding_request import read_embedding_job

        if not self.engine.ready:
            return _error(503, "the model is still loading", code="engine_loading", kind="server_error")
        if not self.engine.embedding:
            return _error(400, f"local model '{self.engine.name}' is a chat model: it serves /v1/chat/completions, "
                          "not embeddings; send embeddings to a deployment of an embedding model",
                          code="model_not_supported", param="model")
        try:
            job = read_embedding_job(await request.json())
        except json.JSONDecodeError:
            return _error(400, "the body is not JSON")
        except BadRequest as bad:
            return _error(400, str(bad), code=bad.code, param=bad.param)
        model = await self.engine.take()
        task = asyncio.ensure_future(asyncio.to_thread(model.run, job))

        def done(task: asyncio.Future[Any]) -> None:
            # The context is free once its thread is done, which may be after this handler ends
            # (the client went away): then nobody reads the outcome, and it is dropped here.
            self.engine.give_back(model)
            if not task.cancelled():
                task.exception()

        task.add_done_callback(done)
        try:
            embedded = await asyncio.shield(task)
        except BadRequest as bad:
            return _error(400, str(bad), code=bad.code, param=bad.param)
        except Exception as exc:  # told to the client as a 500; the worker serves on
            log.exception("embedding failed")
            return _error(500, f"{type(exc).__name__}: {exc}", code="engine_error", kind="server_error")
        finally:
            job.cancelled.set()  # the answer is complete, or the client went away
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(embedded.vectors)]
        tokens = embedded.prompt_tokens
        return web.json_response({"object": "list", "data": data, "model": self.engine.name,
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @staticmethod
    async def _run(model: Any, job: Any, pieces: asyncio.Queue[tuple[str, Any]]) -> None:
        from modelgate.engines.chat_request import BadRequest

        loop = asyncio.get_running_loop()

        def emit(piece: Any) -> None:  # text, or a ToolCall
            loop.call_soon_threadsafe(pieces.put_nowait, ("text", piece) if isinstance(piece, str) else ("call", piece))

        try:
            outcome = await asyncio.to_thread(model.run, job, emit)
        except BadRequest as bad:
            pieces.put_nowait(("bad", bad))
        except Exception as exc:  # told to the client as a 500; the worker serves on
            log.exception("generation failed")
            pieces.put_nowait(("failed", f"{type(exc).__name__}: {exc}"))
        else:
            pieces.put_nowait(("done", outcome))

    def _head(self) -> dict[str, Any]:
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": self.engine.name}

    async def _whole(self, pieces: asyncio.Queue[tuple[str, Any]]) -> web.Response:
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        async for kind, value in _drain(pieces):
            if kind == "text":
                texts.append(value)
                continue
            if kind == "call":
                calls.append(_call(value))
                continue
            if kind == "bad":
                return _error(400, str(value), code=value.code, param=value.param)
            if kind == "failed":
                return _error(500, value, code="engine_error", kind="server_error")
            message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or (None if calls else "")}
            if calls:
                message["tool_calls"] = calls
            body = {**self._head(), "object": "chat.completion", "choices": [{
                "index": 0, "message": message, "finish_reason": value.finish_reason}], "usage": _usage(value)}
            return web.json_response(body)
        raise AssertionError("the generation ended without an outcome")

    async def _stream(self, request: web.Request, pieces: asyncio.Queue[tuple[str, Any]]) -> web.StreamResponse:
        head = self._head()
        first = True
        calls = 0
        response: web.StreamResponse | None = None
        async for kind, value in _drain(pieces):
            if response is None:
                # Errors found before any text (a prompt too long) are answered with their status.
                if kind == "bad":
                    return _error(400, str(value), code=value.code, param=value.param)
                if kind == "failed":
                    return _error(500, value, code="engine_error", kind="server_error")
                response = web.StreamResponse(headers={"content-type": "text/event-stream",
                                                       "cache-control": "no-cache"})
                await response.prepare(request)
            if kind in ("text", "call"):
                delta: dict[str, Any] = {"content": value} if kind == "text" else {
                    "tool_calls": [{"index": calls, **_call(value)}]}
                calls += kind == "call"
                if first:
                    delta = {"role": "assistant", **delta}
                first = False
                await _send(response, {**head, "object": "chat.completion.chunk",
                                       "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            elif kind == "done":
                await _send(response, {**head, "object": "chat.completion.chunk",
                                       "choices": [{"index": 0, "delta": {} if not first else {"role": "assistant"},
                                                    "finish_reason": value.finish_reason}]})
                await _send(response, {**head, "object": "chat.completion.chunk", "choices": [],
                                       "usage": _usage(value)})
                await response.write(b"data: [DONE]\n\n")
            else:
                message = str(value)
                await _send(response, {"error": {"message": message, "type": "server_error", "code": "engine_error"}})
        assert response is not None
        await response.write_eof()
        return response


async def _drain(pieces: asyncio.Queue[tuple[str, Any]]) -> AsyncIterator[tuple[str, Any]]:
    """The pieces of one generation, up to and including its end (done, bad or failed)."""
    while True:
        kind, value = await pieces.get()
        yield kind, value
        if kind not in ("text", "call"):
            return


def _call(call: Any) -> dict[str, Any]:
    """A ToolCall as OpenAI writes one: in a message's tool_calls, or whole in one stream delta."""
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


async def _send(response: web.StreamResponse, chunk: dict[str, Any]) -> None:
    await response.write(b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n")


def _usage(outcome: Any) -> dict[str, int]:
    return {"prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens,
            "total_tokens": outcome.prompt_tokens + outcome.completion_tokens}


def _watch_stdin(stop: Callable[[], None]) -> None:
    """Call ``stop`` when stdin reaches its end: the parent closed it or died."""
    def watch() -> None:
        with contextlib.suppress(OSError, ValueError):
            while sys.stdin.buffer.read(4096):
                pass
        stop()

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


async def serve(args: argparse.Namespace) -> int:
    engine = Engine(args.model, args.name, args.max_concurrency, args.n_ctx, args.device)
    worker = Worker(engine)
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

        _watch_stdin(stop)
    loading = asyncio.ensure_future(engine.load())
    stopped = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({loading, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if loading.done() and loading.exception() is not None:
        error = loading.exception()
        print(f"modelgate engine: cannot load {args.model}: {error}", file=sys.stderr, flush=True)
        await runner.cleanup()
        return 3
    if loading.done():
        print(json.dumps({"ready": engine.facts}), flush=True)
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

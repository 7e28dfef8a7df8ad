"""A GGUF model under llama.cpp answering OpenAI's chat completions (or, for an embedding model,
its embeddings), apart from any HTTP server.

The llamacpp engine's child process (``llamacpp_worker.py``, under aiohttp) and each replica of
the ray engine (``ray_app.py``, under Ray Serve) both serve a ``ChatService``, so that a model
answers with the same bytes, text and token counts whichever engine runs it.

``reply`` takes a request body and gives a ``Reply``: a whole JSON answer (or an error, with its
status), or an SSE stream whose chunks end with the usage chunk (as OpenAI's
``stream_options.include_usage``) and ``data: [DONE]``. The body is read and checked by
``chat_request.py``; tool calls come as OpenAI's ``tool_calls``, in a whole answer's message or
each whole in one stream delta once the model has written all of it (``llamacpp_chat.py``), and
``health`` names the format the model's chat template writes them in (null where it renders no
tools).

A GGUF that pools its hidden states (``<arch>.pooling_type``, and no chat template: an embedding
model, ``catalog/gguf.py``) is loaded in llama.cpp's embedding mode and answers ``embed``
(``llamacpp_embed.py``); its health facts say ``"mode": "embedding"`` with its dimensions and
pooling. Each kind of model answers the other's request with a 400 naming what it serves.

Up to ``max_concurrency`` requests run at once, each on a ``Llama`` of its own: the weights are
mapped from the file once and shared, each has its own context (KV cache); a request beyond that
waits for a free one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("modelgate.engines.worker")

JSON = "application/json"
SSE = "text/event-stream"
FALLBACK_CONTEXT = 512  # an embedding model's context where neither the deployment nor its GGUF gives one


@dataclass(frozen=True, slots=True)
class Reply:
    """What a server sends for one request: ``body`` (JSON) with ``status``, or, for a stream
    that has begun, status 200 with ``chunks`` (SSE bytes, to the end of the answer)."""

    status: int
    body: bytes = b""
    chunks: AsyncGenerator[bytes, None] | None = None

    @property
    def content_type(self) -> str:
        return SSE if self.chunks is not None else JSON


def error_reply(status: int, message: str, *, code: str | None = None, param: str | None = None,
                kind: str = "invalid_request_error") -> Reply:
    """An error in OpenAI's shape."""
    return Reply(status, _json({"error": {"message": message, "type": kind, "code": code, "param": param}}))


class ChatService:
    """One GGUF model and its contexts, made as concurrency asks for them."""

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

    def _inspect(self) -> None:
        """Read from the GGUF what kind of model it is, before loading it."""
        from modelgate.catalog.gguf import read_gguf

        info = read_gguf(self.path)
        self.embedding = info.embedding
        self.trained = info.context_length or 0

    def open(self) -> None:
        """Load the model and its first context, blocking the thread (its loop's thread)."""
        started = time.monotonic()
        self._inspect()
        self._opened(self._load(), started)

    async def start(self) -> None:
        """Load the model and its first context in a thread, the loop serving meanwhile."""
        started = time.monotonic()
        await asyncio.to_thread(self._inspect)
        self._opened(await asyncio.to_thread(self._load), started)

    def _opened(self, model: Any, started: float) -> None:
        self._made = 1
        self._idle.put_nowait(model)
        facts: dict[str, Any] = {"n_ctx": model.llm.n_ctx(), "n_ctx_train": model.llm._model.n_ctx_train(),
                                 "load_s": round(time.monotonic() - started, 3)}
        if self.embedding:
            self.facts = {**facts, "mode": "embedding", "dimensions": model.dimensions, "pooling": model.pooling,
                          "normalize": model.normalize}
        else:
            tools = model.tool_template
            self.facts = {**facts, "mode": "chat", "tool_format": tools.format if tools is not None else None}
        self.ready = True

    def health(self) -> Reply:
        """200 with the model's facts once it serves, 503 while it loads."""
        if not self.ready:
            return Reply(503, _json({"status": "loading", "model": self.name}))
        return Reply(200, _json({"status": "ok", "model": self.name, **self.facts}))

    async def _take(self) -> Any:
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

    async def reply(self, raw: bytes) -> Reply:
        """The answer to a chat completions request body."""
        from modelgate.engines.chat_request import BadRequest, read_job

        if not self.ready:
            return error_reply(503, "the model is still loading", code="engine_loading", kind="server_error")
        if self.embedding:
            return error_reply(400, f"local model '{self.name}' is an embedding model: it serves /v1/embeddings, "
                               "not chat; send chat to a deployment of a chat model", code="model_not_supported",
                               param="model")
        try:
            body = json.loads(raw)
        except ValueError:  # not JSON, or not UTF-8
            return error_reply(400, "the body is not JSON")
        try:
            job = read_job(body)
        except BadRequest as bad:
            return error_reply(400, str(bad), code=bad.code, param=bad.param)
        model = await self._take()
        pieces: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        task = asyncio.ensure_future(_run(model, job, pieces))
        # The context is free once its thread is done, which may be after the answer is sent.
        task.add_done_callback(lambda _: self._idle.put_nowait(model))
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": self.name}
        try:
            if not job.stream:
                return await _whole(head, pieces)
            kind, value = await pieces.get()
        except BaseException:
            job.cancelled.set()
            raise
        # Errors found before any text (a prompt too long) are answered with their status.
        if kind in ("bad", "failed"):
            job.cancelled.set()
            return _ended(kind, value)
        return Reply(200, chunks=_stream(head, (kind, value), pieces, job.cancelled))

    async def embed(self, raw: bytes) -> Reply:
        """The answer to an embeddings request body."""
        from modelgate.engines.chat_request import BadRequest
        from modelgate.engines.embedding_request import read_embedding_job

        if not self.ready:
            return error_reply(503, "the model is still loading", code="engine_loading", kind="server_error")
        if not self.embedding:
            return error_reply(400, f"local model '{self.name}' is a chat model: it serves /v1/chat/completions, "
                               "not embeddings; send embeddings to a deployment of an embedding model",
                               code="model_not_supported", param="model")
        try:
            body = json.loads(raw)
        except ValueError:  # not JSON, or not UTF-8
            return error_reply(400, "the body is not JSON")
        try:
            job = read_embedding_job(body)
        except BadRequest as bad:
            return error_reply(400, str(bad), code=bad.code, param=bad.param)
        model = await self._take()
        task = asyncio.ensure_future(asyncio.to_thread(model.run, job))

        def done(task: asyncio.Future[Any]) -> None:
            # The context is free once its thread is done, which may be after the answer is sent
            # (the client went away): then nobody reads the outcome, and it is dropped here.
            self._idle.put_nowait(model)
            if not task.cancelled():
                task.exception()

        task.add_done_callback(done)
        try:
            embedded = await asyncio.shield(task)
        except BadRequest as bad:
            return error_reply(400, str(bad), code=bad.code, param=bad.param)
        except Exception as exc:  # told to the client as a 500; the server serves on
            log.exception("embedding failed")
            return error_reply(500, f"{type(exc).__name__}: {exc}", code="engine_error", kind="server_error")
        finally:
            job.cancelled.set()  # the answer is complete, or the client went away
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(embedded.vectors)]
        tokens = embedded.prompt_tokens
        return Reply(200, _json({"object": "list", "data": data, "model": self.name,
                                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))


async def _run(model: Any, job: Any, pieces: asyncio.Queue[tuple[str, Any]]) -> None:
    """Generate in a thread, passing each piece on (``text``, or a whole tool ``call``); the last
    piece is the outcome: ``done`` (with the counts), ``bad`` (the request cannot run) or ``failed``."""
    from modelgate.engines.chat_request import BadRequest

    loop = asyncio.get_running_loop()

    def emit(piece: Any) -> None:  # text, or a ToolCall
        loop.call_soon_threadsafe(pieces.put_nowait, ("text", piece) if isinstance(piece, str) else ("call", piece))

    try:
        outcome = await asyncio.to_thread(model.run, job, emit)
    except BadRequest as bad:
        pieces.put_nowait(("bad", bad))
    except Exception as exc:  # told to the client as a 500; the server serves on
        log.exception("generation failed")
        pieces.put_nowait(("failed", f"{type(exc).__name__}: {exc}"))
    else:
        pieces.put_nowait(("done", outcome))


def _ended(kind: str, value: Any) -> Reply:
    if kind == "bad":
        return error_reply(400, str(value), code=value.code, param=value.param)
    return error_reply(500, value, code="engine_error", kind="server_error")


async def _whole(head: dict[str, Any], pieces: asyncio.Queue[tuple[str, Any]]) -> Reply:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    while True:
        kind, value = await pieces.get()
        if kind == "text":
            texts.append(value)
            continue
        if kind == "call":
            calls.append(_call(value))
            continue
        if kind != "done":
            return _ended(kind, value)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or (None if calls else "")}
        if calls:
            message["tool_calls"] = calls
        return Reply(200, _json({**head, "object": "chat.completion", "choices": [{
            "index": 0, "message": message, "finish_reason": value.finish_reason}], "usage": _usage(value)}))


async def _stream(head: dict[str, Any], first: tuple[str, Any], pieces: asyncio.Queue[tuple[str, Any]],
                  cancelled: threading.Event) -> AsyncGenerator[bytes, None]:
    """The SSE chunks of an answer, from its first piece; closing it early stops the generation."""
    chunk = {**head, "object": "chat.completion.chunk"}
    began = False
    calls = 0
    kind, value = first
    try:
        while True:
            if kind in ("text", "call"):
                delta: dict[str, Any] = {"content": value} if kind == "text" else {
                    "tool_calls": [{"index": calls, **_call(value)}]}
                calls += kind == "call"
                if not began:
                    delta = {"role": "assistant", **delta}
                began = True
                yield _event({**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            elif kind == "done":
                yield _event({**chunk, "choices": [{"index": 0, "delta": {} if began else {"role": "assistant"},
                                                    "finish_reason": value.finish_reason}]})
                yield _event({**chunk, "choices": [], "usage": _usage(value)})
                yield b"data: [DONE]\n\n"
                return
            else:
                yield _event({"error": {"message": str(value), "type": "server_error", "code": "engine_error"}})
                return
            kind, value = await pieces.get()
    finally:
        cancelled.set()  # the answer is complete, or the client went away


def _call(call: Any) -> dict[str, Any]:
    """A ToolCall as OpenAI writes one: in a message's tool_calls, or whole in one stream delta."""
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def _event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + _json(chunk) + b"\n\n"


def _usage(outcome: Any) -> dict[str, int]:
    return {"prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens,
            "total_tokens": outcome.prompt_tokens + outcome.completion_tokens}

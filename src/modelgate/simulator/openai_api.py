"""The OpenAI-compatible surface: ``/v1/chat/completions``, ``/v1/responses``, ``/v1/embeddings``,
``/v1/moderations`` (:mod:`modelgate.simulator.moderations`), ``/v1/models``.

Also the base of the Azure surface (:mod:`modelgate.simulator.azure_api`), which differs only in paths, auth
header, error wording and content-filter annotations.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from typing import Any

import orjson
from aiohttp import web

from modelgate.simulator import openai_responses
from modelgate.simulator.config import ModelSpec
from modelgate.simulator.exchange import Exchange, endpoint
from modelgate.simulator.moderations import judgement, moderations
from modelgate.simulator.openai_chat import ChatOptions, render_chunks, render_completion, to_prompt
from modelgate.simulator.replies import Reply, generate_reply, scripted
from modelgate.simulator.state import SimState
from modelgate.simulator.surface import SimError, Surface
from modelgate.simulator.tokens import count_tokens

# OpenAI's error `type` per status (observed values; the SDK only looks at the status code).
_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "requests",
}
_ERROR_CODES: dict[int, str] = {429: "rate_limit_exceeded"}


class OpenAISurface(Surface):
    """OpenAI wire format: Bearer auth, ``{"error": {message, type, param, code}}`` errors, ``x-request-id``."""

    name = "openai"
    request_id_header = "x-request-id"

    def api_key(self, request: web.Request) -> str | None:
        authorization = request.headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        return (token.strip() or None) if scheme.lower() == "bearer" else None

    def auth_error(self, key: str | None) -> SimError:
        if key is None:
            return SimError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        return SimError(
            401,
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )

    def error_body(self, error: SimError, request_id: str) -> dict[str, Any]:
        return {"error": self._error_object(error.status, error.message, error.param, error.code)}

    def _error_object(self, status: int, message: str, param: str | None, code: str | None) -> dict[str, Any]:
        default_type = "server_error" if status >= 500 else "invalid_request_error"
        return {
            "message": message,
            "type": _ERROR_TYPES.get(status, default_type),
            "param": param,
            "code": code if code is not None else _ERROR_CODES.get(status),
        }

    def stream_error_frame(self, request_id: str, message: str | None = None) -> bytes:
        # The openai SDK raises APIError when a data payload is an object with an "error" key.
        error = self._error_object(
            500, message or "The server had an error while processing your request (simulated).", None, "server_error"
        )
        return b"data: " + orjson.dumps({"error": error}) + b"\n\n"

    def carries_content(self, data: Any) -> bool:
        choices = data.get("choices") if isinstance(data, dict) else None
        deltas = [choice.get("delta") or {} for choice in choices or () if isinstance(choice, dict)]
        return any(value for delta in deltas for key, value in delta.items() if key != "role")


class ResponsesSurface(OpenAISurface):
    """The Responses API's variant: a failure after the stream started is an ``error`` event."""

    def stream_error_frame(self, request_id: str, message: str | None = None) -> bytes:
        return self.stream_error_frame_at(request_id, message, 0)

    def stream_error_frame_at(self, request_id: str, message: str | None, sent: int) -> bytes:
        return openai_responses.error_event(
            sent, message or "The server had an error while processing your request (simulated).")

    def carries_content(self, data: Any) -> bool:
        return isinstance(data, dict) and data.get("type") in _RESPONSE_CONTENT_EVENTS


_RESPONSE_CONTENT_EVENTS = frozenset({"response.output_text.delta", "response.function_call_arguments.delta",
                                      "response.reasoning_summary_text.delta"})


def scripted_reply(spec: ModelSpec, question: str) -> str | None:
    """A scripted model's reply to ``question``: its answer for the first key it contains, else
    its one ``reply``; None for a model that is not scripted. A reply ``TOOL:name:{json}`` is
    sent as that tool call (``replies.scripted``)."""
    for key, answer in spec.answers.items():
        if key in question:
            return answer
    return spec.reply


async def chat_completions(
    exchange: Exchange, body: dict[str, Any], *, model: str | None = None, azure: bool = False
) -> web.StreamResponse:
    """Serve one chat completion; ``model`` overrides the body's (Azure deployments)."""
    model = model or body.get("model")
    if not isinstance(model, str) or not model:
        raise SimError(400, "you must provide a model parameter", param="model", code="missing_required_parameter")
    await exchange.bind_model(model)
    prompt = to_prompt(body, model, exchange.spec, exchange.safety)
    check_context(exchange, prompt.prompt_tokens)
    n = int(body.get("n") or 1)
    if not 1 <= n <= 128:
        raise SimError(400, f"{n} is not a valid value for 'n'; it must be between 1 and 128.", param="n")
    if exchange.spec.judge:  # a classifier asked with a rubric: the severities of the user's text
        replies = [Reply(text=judgement(prompt.last_user_text)) for _ in range(n)]
    elif (text := scripted_reply(exchange.spec, prompt.last_user_text)) is not None:
        replies = [scripted(text) for _ in range(n)]
    else:
        replies = [generate_reply(prompt, index) for index in range(n)]
    options = ChatOptions(
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        reasoning_field=exchange.spec.reasoning_field,
        azure=azure,
    )
    if body.get("stream"):
        return await exchange.send_stream(render_chunks(prompt, replies, options))
    return await exchange.send_json(render_completion(prompt, replies, options))


async def responses(exchange: Exchange, body: dict[str, Any], *, model: str | None = None) -> web.StreamResponse:
    """Serve one Responses API request (``model`` overrides the body's: Azure deployments)."""
    model = model or body.get("model")
    if not isinstance(model, str) or not model:
        raise SimError(400, "Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    await exchange.bind_model(model)
    state = exchange.state
    prompt, options = openai_responses.to_prompt(body, model, exchange.spec, exchange.safety, state.signer,
                                                 state.signed_calls)
    check_context(exchange, prompt.prompt_tokens, param="input")
    reply = generate_reply(prompt)
    if body.get("stream"):
        return await exchange.send_stream(
            openai_responses.render_events(prompt, reply, options, state.signer, state.signed_calls))
    return await exchange.send_json(
        openai_responses.render_response(prompt, reply, options, state.signer, state.signed_calls))


def check_context(exchange: Exchange, prompt_tokens: int, param: str = "messages") -> None:
    window = exchange.spec.context_window
    if prompt_tokens > window:
        raise SimError(
            400,
            f"This model's maximum context length is {window} tokens. However, your messages resulted in "
            f"{prompt_tokens} tokens. Please reduce the length of the messages.",
            param=param,
            code="context_length_exceeded",
        )


async def embeddings(exchange: Exchange, body: dict[str, Any], *, model: str | None = None) -> web.StreamResponse:
    """Deterministic unit-length embeddings, float or base64 (little-endian float32) encoded."""
    model = model or body.get("model")
    if not isinstance(model, str) or not model:
        raise SimError(400, "you must provide a model parameter", param="model", code="missing_required_parameter")
    await exchange.bind_model(model)
    inputs = _embedding_inputs(body.get("input"))
    native = exchange.spec.embedding_dimensions
    dimensions = body.get("dimensions", native)
    if not isinstance(dimensions, int) or not 1 <= dimensions <= native:
        raise SimError(
            400,
            f"Invalid value for 'dimensions': {dimensions!r}; this model supports 1 to {native}.",
            param="dimensions",
            code="invalid_value",
        )
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise SimError(
            400,
            f"Invalid value for 'encoding_format': {encoding!r}; use 'float' or 'base64'.",
            param="encoding_format",
            code="invalid_value",
        )
    data = []
    tokens = 0
    for index, item in enumerate(inputs):
        tokens += len(item) if isinstance(item, list) else count_tokens(item)
        vector = embedding_vector(model, item, dimensions)
        value: list[float] | str = vector
        if encoding == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    check_context(exchange, tokens)
    return await exchange.send_json(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def _embedding_inputs(raw: Any) -> list[str | list[int]]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw:
        if all(isinstance(i, int) for i in raw):
            return [raw]
        if all(isinstance(i, str) for i in raw) or all(
            isinstance(i, list) and all(isinstance(t, int) for t in i) for i in raw
        ):
            return list(raw)
    raise SimError(
        400,
        "'input' must be a non-empty string, array of strings, array of tokens, or array of token arrays.",
        param="input",
        code="invalid_value",
    )


def embedding_vector(model: str, item: str | list[int], dimensions: int) -> list[float]:
    """A unit-length vector derived from a hash of ``model`` and ``item``, exactly representable as float32."""
    seed = orjson.dumps([model, item])
    raw: list[float] = []
    counter = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(seed + counter.to_bytes(4, "little")).digest()
        raw.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    values = raw[:dimensions]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    # Round through float32 so the float and base64 encodings decode to identical numbers.
    return [struct.unpack("<f", struct.pack("<f", v / norm))[0] for v in values]


async def list_models(exchange: Exchange, body: dict[str, Any]) -> web.StreamResponse:
    config = exchange.state.config
    names = sorted({*config.models, *config.reasoning_models})
    created = int(time.time())
    return await exchange.send_json(
        {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": created, "owned_by": "modelgate-simulator"} for n in names
            ],
        }
    )


def add_openai_routes(app: web.Application, state: SimState) -> None:
    surface = OpenAISurface()

    async def chat(exchange: Exchange, body: dict[str, Any]) -> web.StreamResponse:
        return await chat_completions(exchange, body)

    async def embed(exchange: Exchange, body: dict[str, Any]) -> web.StreamResponse:
        return await embeddings(exchange, body)

    async def respond(exchange: Exchange, body: dict[str, Any]) -> web.StreamResponse:
        return await responses(exchange, body)

    app.router.add_post("/v1/chat/completions", endpoint(state, surface, chat))
    app.router.add_post("/v1/responses", endpoint(state, ResponsesSurface(), respond))
    app.router.add_post("/v1/embeddings", endpoint(state, surface, embed))
    app.router.add_post("/v1/moderations", endpoint(state, surface, moderations))
    app.router.add_get("/v1/models", endpoint(state, surface, list_models))

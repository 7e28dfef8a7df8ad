"""The Anthropic surface: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

Auth is ``x-api-key`` (or ``Authorization: Bearer``); ``anthropic-version`` is required. Thinking happens only
when the request asks for it (``thinking: {type: enabled|adaptive}``), as on the real API. The structured-outputs
beta's ``output_format`` is taken with ``anthropic-beta: structured-outputs-2025-11-13``. Responses carry a
``request-id`` header; errors are ``{"type": "error", "error": {"type", "message"}, "request_id"}``.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiohttp import web

from modelgate.simulator.anthropic_messages import prompt_usage, to_prompt, validate
from modelgate.simulator.anthropic_render import MessageParts, build_blocks, render_events, render_message
from modelgate.simulator.exchange import Exchange, endpoint
from modelgate.simulator.replies import generate_reply
from modelgate.simulator.state import SimState
from modelgate.simulator.surface import SimError, Surface

STRUCTURED_OUTPUTS_BETA = "structured-outputs-2025-11-13"
_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class AnthropicSurface(Surface):
    """Anthropic wire format."""

    name = "anthropic"
    request_id_header = "request-id"

    def new_request_id(self) -> str:
        return f"req_011C{uuid.uuid4().hex[:20]}"

    def api_key(self, request: web.Request) -> str | None:
        key = request.headers.get("x-api-key")
        if key:
            return key
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return (token.strip() or None) if scheme.lower() == "bearer" else None

    def auth_error(self, key: str | None) -> SimError:
        return SimError(401, "x-api-key header is required" if key is None else "invalid x-api-key")

    def error_body(self, error: SimError, request_id: str) -> dict[str, Any]:
        default = "api_error" if error.status >= 500 else "invalid_request_error"
        return {
            "type": "error",
            "error": {"type": _ERROR_TYPES.get(error.status, default), "message": error.message},
            "request_id": request_id,
        }

    def stream_error_frame(self, request_id: str, message: str | None = None) -> bytes:
        body = {
            "type": "error",
            "error": {"type": "overloaded_error", "message": message or "Overloaded"},
            "request_id": request_id,
        }
        return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"

    def carries_content(self, data: Any) -> bool:
        return isinstance(data, dict) and data.get("type") == "content_block_delta"


def _require_version(exchange: Exchange) -> None:
    if not exchange.request.headers.get("anthropic-version"):
        raise SimError(400, "anthropic-version: header is required")


async def _model(exchange: Exchange, body: dict[str, Any]) -> str:
    _require_version(exchange)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise SimError(400, "model: Field required")
    await exchange.bind_model(model)
    return model


def _check_context(exchange: Exchange, total: int) -> None:
    window = exchange.spec.context_window
    if total > window:
        raise SimError(400, f"prompt is too long: {total} tokens > {window} maximum")


def _beta_output_format(exchange: Exchange, body: dict[str, Any]) -> dict[str, Any]:
    """The body with the structured-outputs beta's ``output_format`` read as ``output_config.format``;
    the field is refused without that beta in ``anthropic-beta``, and beside ``output_config.format``."""
    output_format = body.get("output_format")
    if output_format is None:
        return body
    betas = {b.strip() for b in exchange.request.headers.get("anthropic-beta", "").split(",")}
    if STRUCTURED_OUTPUTS_BETA not in betas:
        raise SimError(400, "output_format: Extra inputs are not permitted")
    config = body.get("output_config") or {}
    if config.get("format") is not None:
        raise SimError(400, "output_format and output_config.format cannot both be given")
    return {**body, "output_config": {**config, "format": output_format}}


async def messages(exchange: Exchange, body: dict[str, Any]) -> web.StreamResponse:
    model = await _model(exchange, body)
    body = _beta_output_format(exchange, body)
    state = exchange.state
    history = validate(body, state.signer)
    _check_context(exchange, prompt_usage(body, history, model, None).total)
    usage = prompt_usage(body, history, model, state.prompt_cache)
    prompt = to_prompt(body, history, model, usage, exchange.safety)
    reply = generate_reply(prompt)
    redact = "redact" in prompt.last_user_text.lower()
    parts = MessageParts(model=model, reply=reply, usage=usage, blocks=build_blocks(reply, state.signer, redact=redact))
    if body.get("stream"):
        return await exchange.send_stream(render_events(parts))
    return await exchange.send_json(render_message(parts))


async def count_tokens_route(exchange: Exchange, body: dict[str, Any]) -> web.StreamResponse:
    model = await _model(exchange, body)
    history = validate(body, exchange.state.signer, require_max_tokens=False)
    return await exchange.send_json({"input_tokens": prompt_usage(body, history, model, None).total})


def add_anthropic_routes(app: web.Application, state: SimState) -> None:
    surface = AnthropicSurface()
    app.router.add_post("/v1/messages", endpoint(state, surface, messages))
    app.router.add_post("/v1/messages/count_tokens", endpoint(state, surface, count_tokens_route))

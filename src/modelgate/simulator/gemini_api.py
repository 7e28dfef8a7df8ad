"""The Gemini surface: ``POST /v1beta/models/{model}:generateContent``, ``:streamGenerateContent?alt=sse`` and
``:countTokens`` (also under ``/v1/``).

Auth is the ``x-goog-api-key`` header or the ``key`` query parameter. As on the real API, a wrong key is a 400
``INVALID_ARGUMENT`` with reason ``API_KEY_INVALID`` and a missing one a 403 ``PERMISSION_DENIED`` (not 401).
Errors are ``{"error": {"code", "message", "status"}}``; streams are ``data:`` lines of whole
GenerateContentResponse objects with no terminator.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from modelgate.simulator.exchange import Exchange, endpoint
from modelgate.simulator.gemini_content import (
    Rendered,
    check_contents,
    get_field,
    prompt_tokens,
    render_chunks,
    render_response,
    thinking_of,
    to_prompt,
)
from modelgate.simulator.replies import generate_reply
from modelgate.simulator.state import SimState
from modelgate.simulator.surface import SimError, Surface

_STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class GeminiSurface(Surface):
    """Gemini Developer API wire format."""

    name = "gemini"
    request_id_header = "x-request-id"

    def api_key(self, request: web.Request) -> str | None:
        return request.headers.get("x-goog-api-key") or request.query.get("key") or None

    def auth_error(self, key: str | None) -> SimError:
        if key is None:
            return SimError(
                403,
                "Method doesn't allow unregistered callers (callers without established identity)."
                " Please use API Key or other form of API consumer identity to call this API.",
            )
        return SimError(400, "API key not valid. Please pass a valid API key.", code="API_KEY_INVALID")

    def error_body(self, error: SimError, request_id: str) -> dict[str, Any]:
        status = _STATUS_NAMES.get(error.status, "INTERNAL" if error.status >= 500 else "FAILED_PRECONDITION")
        body: dict[str, Any] = {"code": error.status, "message": error.message, "status": status}
        if error.code == "API_KEY_INVALID":
            body["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ]
        return {"error": body}

    def stream_error_frame(self, request_id: str, message: str | None = None) -> bytes:
        error = {"code": 503, "message": message or "The model is overloaded. Please try again later.",
                 "status": "UNAVAILABLE"}
        return b"data: " + orjson.dumps({"error": error}) + b"\n\n"

    def carries_content(self, data: Any) -> bool:
        candidates = data.get("candidates") if isinstance(data, dict) else None
        return any(
            isinstance(candidate, dict) and not candidate.get("finishReason")
            and bool((candidate.get("content") or {}).get("parts"))
            for candidate in candidates or ()
        )


def _split_target(exchange: Exchange) -> tuple[str, str]:
    model, _, action = exchange.request.match_info["target"].partition(":")
    if not model or action not in ("generateContent", "streamGenerateContent", "countTokens"):
        raise SimError(404, f"Method not found: models/{exchange.request.match_info['target']}")
    return model, action


async def models_action(exchange: Exchange, body: dict[str, Any]) -> web.StreamResponse:
    model, action = _split_target(exchange)
    await exchange.bind_model(model)
    state = exchange.state
    if action == "countTokens":
        request = get_field(body, "generateContentRequest") or body
        contents = check_contents(request, model, state.signer, state.signed_calls, exchange.spec.reasoning)
        total = prompt_tokens(request, contents)
        return await exchange.send_json(
            {"totalTokens": total, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]}
        )
    contents = check_contents(body, model, state.signer, state.signed_calls, exchange.spec.reasoning)
    tokens = prompt_tokens(body, contents)
    window = exchange.spec.context_window
    if tokens > window:
        raise SimError(
            400, f"The input token count ({tokens}) exceeds the maximum number of tokens allowed ({window})."
        )
    thinking = thinking_of(body, exchange.spec.reasoning)
    prompt = to_prompt(body, contents, model, thinking, tokens, exchange.safety)
    context = Rendered(model=model, prompt=prompt, thinking=thinking)
    if action == "streamGenerateContent":
        if exchange.request.query.get("alt") != "sse":
            raise SimError(400, "The simulator streams only with ?alt=sse (the JSON-array form is not simulated).")
        chunks = render_chunks(context, generate_reply(prompt), state.signer, state.signed_calls)
        return await exchange.send_stream([b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in chunks])
    count = int(get_field(get_field(body, "generationConfig"), "candidateCount") or 1)
    replies = [generate_reply(prompt, index) for index in range(count)]
    return await exchange.send_json(render_response(context, replies, state.signer, state.signed_calls))


def add_gemini_routes(app: web.Application, state: SimState) -> None:
    surface = GeminiSurface()
    for version in ("v1beta", "v1"):
        app.router.add_post(f"/{version}/models/{{target}}", endpoint(state, surface, models_action))

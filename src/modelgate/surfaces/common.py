"""What every surface does alike: request ids and the headers that say what answered."""

from __future__ import annotations

import secrets

from modelgate.pipeline.call import Call


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def answered_by(call: Call) -> dict[str, str]:
    """Response headers naming what answered, with the request id."""
    return {
        "x-request-id": call.request_id,
        "x-modelgate-deployment": call.deployment.name,
        "x-modelgate-provider": call.provider or "",
        "x-modelgate-model": call.upstream_model or "",
        "x-modelgate-attempts": str(call.attempts),
        **call.response_headers,
    }

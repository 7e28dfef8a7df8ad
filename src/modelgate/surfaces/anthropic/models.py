"""Deployments as Anthropic's ``ModelInfo`` list, for the anthropic SDK's ``models.list()``.

Both SDKs list models at ``GET /v1/models``; the OpenAI surface answers in this shape when the
request carries ``anthropic-version``, as every anthropic SDK request does.
"""

from __future__ import annotations

from datetime import UTC, datetime


def anthropic_model(name: str, created: int, context_window: int | None,
                    max_output_tokens: int | None) -> dict[str, object]:
    model: dict[str, object] = {
        "id": name, "type": "model", "display_name": name,
        "created_at": datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z"),
    }
    if context_window:
        model["max_input_tokens"] = context_window
    if max_output_tokens:
        model["max_tokens"] = max_output_tokens
    return model


def anthropic_model_list(models: list[dict[str, object]]) -> dict[str, object]:
    return {"data": models, "has_more": False,
            "first_id": models[0]["id"] if models else None, "last_id": models[-1]["id"] if models else None}

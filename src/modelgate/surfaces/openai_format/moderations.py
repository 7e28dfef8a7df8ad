"""OpenAI's ``/v1/moderations``: its request into a ``ModerationRequest``, its answer from the events.

The request is ``{"model", "input"}``, ``input`` a string or an array of strings (OpenAI's
multimodal inputs, image parts, are refused: the checks judge text). ``model`` names a
deployment and is required here: a gateway has no moderation model of its own to fall back on.
The answer has every category of OpenAI's moderation object, those the classifier did not judge
with a score of 0 and not flagged, as OpenAI's own ``text-moderation`` models give no image
categories.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelgate.schema.errors import InvalidRequest
from modelgate.schema.events import ChatResult
from modelgate.schema.request import ModerationRequest
from modelgate.surfaces.fields import bad

# OpenAI's moderation categories (https://platform.openai.com/docs/api-reference/moderations/object).
CATEGORIES = ("harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
              "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
              "violence/graphic")


def parse_moderation_request(body: Any) -> ModerationRequest:
    if not isinstance(body, dict):
        raise bad("The request body must be a JSON object.", "body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required: the name of a deployment whose content policy has a moderation "
                             "check, or of a deployment of an OpenAI moderation model (GET /v1/models lists them)",
                             param="model", code="missing_required_parameter")
    raw = body.get("input")
    if isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(item, str) for item in raw):
        inputs = list(raw)
    elif isinstance(raw, list) and raw and all(isinstance(item, dict) for item in raw):
        raise InvalidRequest("'input' of typed parts (text and images) is not supported: give a string or an array "
                             "of strings", param="input", code="invalid_value")
    else:
        raise InvalidRequest("'input' is required: a string or a non-empty array of strings",
                             param="input", code="invalid_value")
    return ModerationRequest(model=model, input=inputs)


def moderations_body(result: ChatResult, response_id: str) -> bytes:
    results = []
    for judged in result.moderations or ():
        flags = {name: judged.flagged.get(name, False) for name in CATEGORIES}
        results.append({
            "flagged": any(flags.values()),
            "categories": flags,
            "category_scores": {name: judged.scores.get(name, 0.0) for name in CATEGORIES},
            "category_applied_input_types": {name: ["text"] for name in CATEGORIES},
        })
    return orjson.dumps({"id": response_id, "model": result.model, "results": results})

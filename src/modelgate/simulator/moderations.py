"""``/v1/moderations``: deterministic harm scores, driven by keywords, for reproducible tests.

Each input's score in each of OpenAI's categories is the highest of the keywords it contains
(``KEYWORDS``: a word that starts with the keyword counts, in any case), a small floor otherwise.
A model whose spec says ``judge: true`` answers chat requests with the same scores read as
severities, as a classifier asked with a rubric would: ``{"hate": "safe", "sexual": "safe",
"violence": "high", "self_harm": "safe"}``.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import orjson
from aiohttp import web

from modelgate.simulator.exchange import Exchange
from modelgate.simulator.surface import SimError

CATEGORIES = ("harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
              "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
              "violence/graphic")
KEYWORDS: dict[str, tuple[str, float]] = {
    "murder": ("violence", 0.95), "kill": ("violence", 0.85), "weapon": ("violence", 0.6), "fight": ("violence", 0.3),
    "gore": ("violence/graphic", 0.9),
    "slur": ("hate", 0.9), "vermin": ("hate", 0.85), "inferior": ("hate", 0.6), "stereotype": ("hate", 0.3),
    "idiot": ("harassment", 0.55),
    "explicit": ("sexual", 0.85), "nude": ("sexual", 0.6), "flirt": ("sexual", 0.3),
    "suicide": ("self-harm", 0.9), "starve": ("self-harm", 0.5),
}
FLOOR = 0.0001
FLAGGED_FROM = 0.5
# The judge's severities from scores, and the rubric's categories from OpenAI's.
SEVERITIES = ((0.8, "high"), (0.5, "medium"), (0.2, "low"))
JUDGED = {"hate": ("hate", "hate/threatening", "harassment", "harassment/threatening"),
          "sexual": ("sexual", "sexual/minors"), "violence": ("violence", "violence/graphic"),
          "self_harm": ("self-harm", "self-harm/intent", "self-harm/instructions")}
_WORD = re.compile(r"[a-z][a-z-]*")


def scores(text: str) -> dict[str, float]:
    found = {name: FLOOR for name in CATEGORIES}
    for word in _WORD.findall(text.lower()):
        for keyword, (category, score) in KEYWORDS.items():
            if word.startswith(keyword) and score > found[category]:
                found[category] = score
    return found


def judgement(text: str) -> str:
    """The JSON a judge answers for ``text``: each rubric category's severity."""
    found = scores(text)
    answer = {}
    for ours, theirs in JUDGED.items():
        top = max(found[name] for name in theirs)
        answer[ours] = next((severity for bound, severity in SEVERITIES if top >= bound), "safe")
    return orjson.dumps(answer).decode()


def _inputs(raw: Any) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(item, str) for item in raw):
        return list(raw)
    raise SimError(400, "'input' must be a string or a non-empty array of strings.", param="input",
                   code="invalid_value")


async def moderations(exchange: Exchange, body: dict[str, Any]) -> web.StreamResponse:
    model = body.get("model") or "omni-moderation-latest"
    if not isinstance(model, str):
        raise SimError(400, "'model' must be a string.", param="model", code="invalid_value")
    await exchange.bind_model(model)
    results = []
    for text in _inputs(body.get("input")):
        found = scores(text)
        results.append({
            "flagged": any(score >= FLAGGED_FROM for score in found.values()),
            "categories": {name: score >= FLAGGED_FROM for name, score in found.items()},
            "category_scores": found,
            "category_applied_input_types": {name: ["text"] for name in found},
        })
    return await exchange.send_json({"id": f"modr-{secrets.token_hex(12)}", "model": model, "results": results})

"""The ``moderation`` check: harm categories with severities, from a classifier deployment.

The classifier is a deployment of the gateway, called through the gateway's own chain (so the
caller's key, its limits, budgets and metering apply to it, and its usage is recorded as a call
of its own):

- where every provider of that deployment serves OpenAI's ``/v1/moderations`` (``type: openai``),
  a ``ModerationRequest`` is sent and each category's score is read as a severity by
  ``SCORE_SEVERITIES``;
- otherwise the deployment is asked as a judge: a chat request with a fixed rubric (``RUBRIC``)
  that must answer one JSON object of the four categories' severities and nothing else.

Whatever keeps an answer from being read (the classifier failing, an answer of another shape) is
``ModerationFailed``: the policy's ``on_error`` says what that means.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson

from modelgate.config.safety import CATEGORIES, SEVERITIES
from modelgate.config.settings import DeploymentSettings
from modelgate.pipeline.contract import Call, Handler, Principal
from modelgate.schema.errors import GatewayError
from modelgate.schema.events import ModerationResult, ModerationScores, TextDelta
from modelgate.schema.request import ChatRequest, Message, ModerationRequest, ResponseFormat, TextPart

Severities = dict[str, str]  # category → "safe" | "low" | "medium" | "high"

RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}
# OpenAI's categories (https://platform.openai.com/docs/api-reference/moderations/object) read as
# ours, each ours the highest score of its OpenAI categories; harassment is counted as hate, as
# Azure's hate category covers it.
OPENAI_CATEGORIES: Mapping[str, tuple[str, ...]] = {
    "hate": ("hate", "hate/threatening", "harassment", "harassment/threatening"),
    "sexual": ("sexual", "sexual/minors"),
    "violence": ("violence", "violence/graphic"),
    "self_harm": ("self-harm", "self-harm/intent", "self-harm/instructions"),
}
# A score from this value up is that severity: below 0.2 safe, from 0.2 low, from 0.5 medium,
# from 0.8 high. OpenAI's own ``flagged`` falls between medium and high on most of its models.
SCORE_SEVERITIES: tuple[tuple[float, str], ...] = ((0.8, "high"), (0.5, "medium"), (0.2, "low"))
JUDGE_MAX_TOKENS = 100  # the rubric's answer is about 60 tokens
# The rubric's answer as a JSON schema: upstreams with structured output (OpenAI, Anthropic,
# Gemini, local models held to a grammar) then cannot answer anything else. The answer is still
# read strictly, for those that take the schema as a hint only.
JUDGEMENT_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {name: {"type": "string", "enum": list(SEVERITIES)} for name in CATEGORIES},
    "required": list(CATEGORIES),
    "additionalProperties": False,
}

RUBRIC = (
    "You are a content safety classifier. Rate the text in the user message for each category:\n"
    "- hate: attacks or demeaning of people for who they are, harassment, slurs\n"
    "- sexual: sexual content or acts\n"
    "- violence: physical harm, weapons, threats, gore\n"
    "- self_harm: suicide, self-injury, eating disorders\n"
    "Severity is one of: safe (none), low (mild or educational mention), medium (explicit or "
    "endorsing), high (graphic, instructional or targeting a person).\n"
    "Answer with one JSON object and nothing else, in exactly this form:\n"
    '{"hate": "safe", "sexual": "safe", "violence": "safe", "self_harm": "safe"}'
)


class ModerationFailed(Exception):
    """The classifier gave no answer that can be read; the message says why."""


def severity_of(score: float) -> str:
    for bound, severity in SCORE_SEVERITIES:
        if score >= bound:
            return severity
    return "safe"


def severities_from_scores(scores: Mapping[str, float]) -> Severities:
    """OpenAI's ``category_scores`` as our four categories' severities."""
    return {ours: severity_of(max((scores.get(name, 0.0) for name in theirs), default=0.0))
            for ours, theirs in OPENAI_CATEGORIES.items()}


def parse_judgement(text: str) -> Severities:
    """A judge's answer: exactly one JSON object naming each category once with a severity."""
    try:
        answer = orjson.loads(text.strip())
    except orjson.JSONDecodeError:
        raise ModerationFailed(f"the judge's answer is not JSON: {text[:80]!r}") from None
    if not isinstance(answer, dict) or set(answer) != set(CATEGORIES):
        raise ModerationFailed(f"the judge's answer is not an object of exactly {', '.join(CATEGORIES)}: "
                               f"{text[:80]!r}")
    wrong = [name for name, value in answer.items() if value not in SEVERITIES]
    if wrong:
        raise ModerationFailed(f"the judge gave {', '.join(wrong)} a severity other than "
                               f"{', '.join(SEVERITIES)}: {text[:80]!r}")
    return {name: str(answer[name]) for name in CATEGORIES}


@dataclass(frozen=True, slots=True)
class ModerationCheck:
    """One ``moderation`` entry of a policy: which deployment judges, and from what it acts."""

    deployment: str
    categories: tuple[str, ...]
    severity: str  # the least severity of a category that counts as a finding
    action: str  # "block" | "annotate"
    policy: str

    def found(self, severities: Severities) -> list[str]:
        """The configured categories that reach the check's severity."""
        least = RANK[self.severity]
        return [name for name in self.categories if RANK[severities[name]] >= least]


class Classifier:
    """Asks classifier deployments through the gateway's chain.

    ``handler`` is the chain itself, set once it is built (the chain holds the stage this
    serves). ``deployment`` gives a deployment's settings by name (None: there is none now);
    ``serves_moderations`` whether every provider of a deployment answers ``/v1/moderations``.
    """

    def __init__(self, deployment: Callable[[str], DeploymentSettings | None],
                 serves_moderations: Callable[[str], bool]) -> None:
        self.handler: Handler | None = None
        # Each classifier call is a request of its own, with its own usage record: its id is the
        # caller's with a number (a stream's choice may be judged many times).
        self._numbers = itertools.count(1)
        self._deployment = deployment
        self._serves_moderations = serves_moderations

    async def severities(self, name: str, texts: list[str], caller: Call) -> list[Severities]:
        """Each of ``texts`` judged by deployment ``name``, on behalf of ``caller``."""
        deployment = self._deployment(name)
        if deployment is None or self.handler is None:
            raise ModerationFailed(f"the classifier deployment '{name}' does not exist")
        # The caller's key pays and is limited; its project's own policy is not run on the
        # classifier's call (it would classify the classification).
        principal = dataclasses.replace(caller.principal, safety=None)
        try:
            if self._serves_moderations(name):
                return await self._scores(deployment, texts, caller, principal)
            return list(await asyncio.gather(*(self._judge(deployment, text, caller, principal) for text in texts)))
        except GatewayError as error:
            raise ModerationFailed(f"the classifier deployment '{name}' failed: {error}") from error

    async def _scores(self, deployment: DeploymentSettings, texts: list[str], caller: Call,
                      principal: Principal) -> list[Severities]:
        assert self.handler is not None
        call = Call(request_id=f"{caller.request_id}-m{next(self._numbers)}", request=ModerationRequest(
            model=deployment.name, input=texts), deployment=deployment, principal=principal, route="moderations")
        results: list[ModerationResult] | None = None
        async for event in self.handler(call):
            if isinstance(event, ModerationScores):
                results = event.results
        if results is None or len(results) != len(texts):
            raise ModerationFailed(f"the classifier deployment '{deployment.name}' answered "
                                   f"{0 if results is None else len(results)} results for {len(texts)} texts")
        return [severities_from_scores(result.scores) for result in results]

    async def _judge(self, deployment: DeploymentSettings, text: str, caller: Call,
                     principal: Principal) -> Severities:
        assert self.handler is not None
        request = ChatRequest(
            model=deployment.name, max_tokens=JUDGE_MAX_TOKENS, temperature=0.0,
            messages=[Message("system", [TextPart(RUBRIC)]), Message("user", [TextPart(text)])],
            response_format=ResponseFormat(type="json_schema", name="harm_severities", schema=JUDGEMENT_SCHEMA,
                                           strict=True))
        call = Call(request_id=f"{caller.request_id}-m{next(self._numbers)}", request=request, deployment=deployment,
                    principal=principal)
        pieces = [event.text async for event in self.handler(call)
                  if isinstance(event, TextDelta) and event.choice == 0]
        return parse_judgement("".join(pieces))

"""Moderation checks over one request, or over one choice of its answer as it goes by.

A ``Moderation`` asks the classifier of each of one side's moderation checks about a text and
keeps, per check, the highest severity seen of each category. A ``ModeratedChoice`` stands after
a choice's other output checks: the text they let out is held until a sentence ends (or
``MAX_UNJUDGED`` characters have gathered), judged, and only then sent; so a stream waits for at
most a sentence and one classifier call, and no text is sent before it is judged. An answer that
is not streamed is judged whole, once, as its choice finishes.
"""

from __future__ import annotations

import asyncio
import logging
import re

from modelgate.pipeline.contract import Call
from modelgate.safety.moderation import RANK, Classifier, ModerationCheck, ModerationFailed, Severities
from modelgate.schema.errors import GatewayError, UpstreamError
from modelgate.schema.events import Event, Finish, ModerationResult, TextDelta
from modelgate.schema.verdicts import Verdict

log = logging.getLogger("modelgate.safety")

# The most text of a stream held for want of a sentence end before it is judged all the same.
MAX_UNJUDGED = 400
SENTENCE_END = re.compile(r"[.!?\n](?=\s)")


class Moderation:
    """The moderation checks of one side of a policy, over the texts of one request or choice."""

    __slots__ = ("blocked", "call", "checks", "classifier", "failed", "found", "on_error", "severities")

    def __init__(self, checks: tuple[ModerationCheck, ...], classifier: Classifier, call: Call,
                 on_error: str) -> None:
        self.checks = checks
        self.classifier = classifier
        self.call = call
        self.on_error = on_error
        self.severities: list[Severities] = [{name: "safe" for name in c.categories} for c in checks]
        self.found: list[set[str]] = [set() for _ in checks]
        self.failed = [False] * len(checks)
        self.blocked = False

    async def judge(self, text: str) -> None:
        """``text`` judged by every check; ``blocked`` once a blocking check finds a category
        at its severity, or one fails under ``on_error: block``."""
        if text.strip():
            await asyncio.gather(*(self._judge(index, check, text) for index, check in enumerate(self.checks)))

    async def _judge(self, index: int, check: ModerationCheck, text: str) -> None:
        try:
            (judged,) = await self.classifier.severities(check.deployment, [text], self.call)
        except ModerationFailed as problem:
            log.warning("the moderation check of policy %r could not judge a text (on_error: %s): %s",
                        check.policy, self.on_error, problem)
            self.failed[index] = True
            if self.on_error == "block":
                self.found[index].add("error")
                self.blocked = True
            return
        kept = self.severities[index]
        for name in check.categories:
            if RANK[judged[name]] > RANK[kept[name]]:
                kept[name] = judged[name]
        found = check.found(judged)
        self.found[index].update(found)
        if found and check.action == "block":
            self.blocked = True

    def blocking_policies(self) -> list[str]:
        return list(dict.fromkeys(check.policy for check, found in zip(self.checks, self.found, strict=True)
                                  if found and (check.action == "block" or "error" in found)))

    def verdicts(self) -> list[Verdict]:
        return [Verdict("moderation", "block" if "error" in found else check.action, tuple(sorted(found)),
                        tuple(severities.items()), failed)
                for check, found, severities, failed in zip(self.checks, self.found, self.severities, self.failed,
                                                           strict=True)]


class ModeratedChoice:
    """One choice's text and tool calls, as its other output checks let them out, held until judged.

    ``events`` takes what those checks give back for the choice and returns what may be sent;
    ``blocked`` says the choice was ended for a finding (its ``Finish("content_filter")`` given).
    """

    __slots__ = ("blocked", "calls", "index", "moderation", "pending", "streaming")

    def __init__(self, index: int, moderation: Moderation, streaming: bool) -> None:
        self.index = index
        self.moderation = moderation
        self.streaming = streaming
        self.pending = ""
        self.calls: list[Event] = []  # tool calls, sent with the choice's end
        self.blocked = False

    async def events(self, events: list[Event], ended: bool) -> list[Event]:
        """``events`` of the choice (``ended``: the last the choice will have), judged."""
        out: list[Event] = []
        finish: Finish | None = None
        for event in events:
            if isinstance(event, TextDelta):
                self.pending += event.text
            elif isinstance(event, Finish):
                if event.reason == "content_filter":  # another check ended it: nothing held goes out
                    self.pending, self.calls = "", []
                    return [event]
                finish = event
                ended = True
            else:
                self.calls.append(event)
        if self.blocked:
            return []
        if ended:
            text, self.pending = self.pending, ""
            await self.moderation.judge(text)
            if self.moderation.blocked:
                return self._blocked()
            if text:
                out.append(TextDelta(text, self.index))
            out.extend(self.calls)
            if finish is not None:
                out.append(finish)
            return out
        if self.streaming:
            cut = _judgeable(self.pending)
            if cut:
                text, self.pending = self.pending[:cut], self.pending[cut:]
                await self.moderation.judge(text)
                if self.moderation.blocked:
                    return self._blocked()
                out.append(TextDelta(text, self.index))
        return out

    def _blocked(self) -> list[Event]:
        self.blocked = True
        self.pending, self.calls = "", []
        return [Finish("content_filter", self.index)]


def _judgeable(text: str) -> int:
    """How much of ``text`` to judge now: up to its last sentence end, or up to its last space
    once ``MAX_UNJUDGED`` characters have gathered; 0: wait for more."""
    ends = [match.end() for match in SENTENCE_END.finditer(text)]
    if ends:
        return ends[-1]
    if len(text) >= MAX_UNJUDGED:
        space = max(text.rfind(" "), text.rfind("\n"))
        return space + 1 if space > 0 else len(text)
    return 0


# Our categories in OpenAI's names, and the score that stands for each severity in an answer of
# ``/v1/moderations`` made from a policy's checks: the lowest score of that severity
# (moderation.SCORE_SEVERITIES), so that a client reading the scores back gets the same severity.
OPENAI_NAMES = {"hate": "hate", "sexual": "sexual", "violence": "violence", "self_harm": "self-harm"}
SEVERITY_SCORES = {"safe": 0.0, "low": 0.2, "medium": 0.5, "high": 0.8}


async def moderation_results(checks: tuple[ModerationCheck, ...], classifier: Classifier, call: Call,
                             texts: list[str]) -> list[ModerationResult]:
    """``texts`` judged by every one of ``checks``, as ``/v1/moderations`` answers: per text, each
    category's highest severity as a score, flagged where a check's severity is reached. A check
    that cannot judge is an error here (the client asked for the judgement itself)."""
    results = [ModerationResult({}, {}) for _ in texts]
    for check in checks:
        try:
            judged = await classifier.severities(check.deployment, texts, call)
        except ModerationFailed as problem:
            if isinstance(problem.__cause__, GatewayError):
                raise problem.__cause__ from None
            raise UpstreamError(f"The moderation check of policy '{check.policy}' could not judge the input: "
                                f"{problem}", provider=check.deployment, code="moderation_failed") from None
        for result, severities in zip(results, judged, strict=True):
            found = check.found(severities)
            for name in check.categories:
                theirs = OPENAI_NAMES[name]
                result.scores[theirs] = max(result.scores.get(theirs, 0.0), SEVERITY_SCORES[severities[name]])
                result.flagged[theirs] = result.flagged.get(theirs, False) or name in found
    return results

"""The content-safety stage: a deployment's policy, and its caller's project's, over its requests
and its answers (two policies run as one: ``Policy.joined``).

Input: every text part of every message (all roles), tool call arguments and tool results are
checked before the call goes on; a finding of a blocking check refuses the request
(``ContentFiltered``, 400), a redacting check's findings reach the upstream as placeholders. The
prompt shield (shield.py) scores user and tool messages only, in a worker thread: a policy with
one checks the request as the first step of the events it returns, so the refusal comes where an
upstream's would.

Output: the text of each choice is held back (``HeldText``) and released only once what it
contains is known; tool call arguments are held whole until their choice finishes. A blocking
finding ends the choice with ``Finish("content_filter")`` and drops the rest of its content; a
streamed choice keeps what was sent before, which held nothing flagged. Reasoning text is passed
on unchecked.

Moderation checks (moderated.py) ask a classifier deployment: on the request's user and tool
texts, as one text, after the other input checks and the prompt shield and before the call goes
on; on each choice's text after the other output checks, a sentence at a time on streams and
whole otherwise.

The verdicts go on ``call.safety`` for the surfaces to report and metering to record. A call
that no policy applies to gets ``next(call)`` itself: no wrapper around its events, nothing
scanned.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping

from modelgate.pipeline.contract import Call, Handler
from modelgate.safety.moderated import ModeratedChoice, Moderation, moderation_results
from modelgate.safety.moderation import Classifier, ModerationCheck
from modelgate.safety.policy import HeldText, Inspection, Policy
from modelgate.safety.shield import Shield, ShieldUnavailable, scored_texts
from modelgate.schema.errors import ContentFiltered
from modelgate.schema.events import Event, Finish, ModerationScores, ReasoningDelta, Start, TextDelta, ToolCallDelta
from modelgate.schema.request import ChatRequest, ModerationRequest, TextPart, ToolCallPart
from modelgate.schema.verdicts import SafetyReport, Verdict

log = logging.getLogger("modelgate.safety")


class ContentSafety:
    """Stage: runs the policy that the call's deployment names (``safety:``), and the one its
    project names, if any (both, as one, when they differ). ``classifier`` asks the deployments
    of moderation checks (None: the policies have none); ``shields`` are the prompt shield's
    classifiers the policies were compiled with, by their ``model:``."""

    def __init__(self, policies: Mapping[str, Policy], classifier: Classifier | None = None,
                 shields: Mapping[str | None, Shield] | None = None) -> None:
        self._policies = policies
        self.classifier = classifier
        self.shields = shields or {}  # the prompt shield's classifiers the policies were compiled with
        self._joined: dict[tuple[str, str], Policy] = {}
        self._missing: set[str] = set()

    @property
    def policies(self) -> Mapping[str, Policy]:
        return self._policies

    @policies.setter
    def policies(self, policies: Mapping[str, Policy]) -> None:
        """Policies compiled again (a blocklist changed): those joined before are made anew."""
        self._policies = policies
        self._joined = {}

    def __call__(self, call: Call, next: Handler) -> AsyncGenerator[Event, None]:
        deployment, project = call.deployment.safety, call.principal.safety
        if deployment is None and project is None:
            return next(call)
        if isinstance(call.request, ModerationRequest):
            policy = self._policy(deployment, project)
            checks = (policy.input_moderation or policy.output_moderation) if policy is not None else ()
            # A deployment with no moderation checks answers itself (an OpenAI moderation model's).
            return self._moderations(call, checks, call.request.input) if checks else next(call)
        if not isinstance(call.request, ChatRequest):
            return next(call)
        policy = self._policy(deployment, project)
        if policy is None:
            return next(call)
        report = call.safety = SafetyReport(policy.name)
        if policy.shielded:
            return self._shielded(call, next, policy, report)
        if policy.input:
            try:
                report.prompt = check_request(call.request, policy)
            except ContentFiltered as refusal:
                report.prompt = list(refusal.verdicts)  # for the usage record
                raise
        if policy.input_moderation:
            return self._moderated(call, next, policy, report)
        if not policy.checks_output:
            return next(call)
        return self._checked(call, next, policy, report)

    async def _moderations(self, call: Call, checks: tuple[ModerationCheck, ...],
                           texts: list[str]) -> AsyncGenerator[Event, None]:
        """``/v1/moderations`` answered from the policy's moderation checks (its input checks,
        or its output checks where it has none on input)."""
        if self.classifier is None:
            raise RuntimeError("a policy with moderation checks needs the stage's classifier")
        results = await moderation_results(checks, self.classifier, call, texts)
        yield Start(model=call.deployment.name)
        yield ModerationScores(results)

    def _moderation(self, checks: tuple[ModerationCheck, ...], call: Call, policy: Policy) -> Moderation:
        if self.classifier is None:
            raise RuntimeError("a policy with moderation checks needs the stage's classifier")
        return Moderation(checks, self.classifier, call, policy.on_error)

    async def _moderated(self, call: Call, next: Handler, policy: Policy,
                         report: SafetyReport) -> AsyncGenerator[Event, None]:
        """The request's user and tool texts judged, as one, before the call goes on."""
        assert isinstance(call.request, ChatRequest)
        moderation = self._moderation(policy.input_moderation, call, policy)
        await moderation.judge("\n\n".join(message.text() for message in call.request.messages
                                            if message.role in ("user", "tool")))
        report.prompt.extend(moderation.verdicts())
        if moderation.blocked:
            blocking = moderation.blocking_policies()
            if all(v.found == ("error",) for v in moderation.verdicts() if v.filtered):
                message = (f"The request could not be checked by the moderation check of the content policy "
                           f"'{blocking[0]}' (its classifier failed), which refuses what it cannot check "
                           "(on_error: block). Try again, or ask the gateway's operator.")
            else:
                message = _blocked_message(blocking, report.prompt)
            raise ContentFiltered(message, policy=blocking[0], verdicts=report.prompt)
        events = self._checked(call, next, policy, report) if policy.checks_output else next(call)
        async for event in events:
            yield event

    def _policy(self, deployment: str | None, project: str | None) -> Policy | None:
        if project is not None and project not in self._policies:
            # A project stored with a policy the config no longer has: its deployment's still runs.
            if project not in self._missing:
                self._missing.add(project)
                log.warning("a project names content policy %r, which the config does not have; its "
                            "requests run under their deployment's policy alone", project)
            project = None
        if project is None or project == deployment:
            return self._policies[deployment] if deployment is not None else None
        if deployment is None:
            return self._policies[project]
        joined = self._joined.get((deployment, project))
        if joined is None:
            joined = self._joined[(deployment, project)] = self._policies[deployment].joined(self._policies[project])
        return joined

    async def _shielded(self, call: Call, next: Handler, policy: Policy,
                        report: SafetyReport) -> AsyncGenerator[Event, None]:
        """The request checked with the prompt shield's awaited, then the call as ``__call__`` goes on
        (its moderation checks, then its output checks)."""
        assert isinstance(call.request, ChatRequest)
        try:
            report.prompt = await check_request_shielded(call.request, policy)
        except ContentFiltered as refusal:
            report.prompt = list(refusal.verdicts)
            raise
        if policy.input_moderation:
            events = self._moderated(call, next, policy, report)
        else:
            events = self._checked(call, next, policy, report) if policy.checks_output else next(call)
        async for event in events:
            yield event

    async def _checked(self, call: Call, next: Handler, policy: Policy,
                       report: SafetyReport) -> AsyncGenerator[Event, None]:
        streaming = isinstance(call.request, ChatRequest) and call.request.stream
        choices: dict[int, ChoiceGuard] = {}
        judged: dict[int, ModeratedChoice] = {}

        def guard(index: int) -> ChoiceGuard:
            found = choices.get(index)
            if found is None:
                found = choices[index] = ChoiceGuard(index, policy, streaming, report)
                if policy.output_moderation:
                    judged[index] = ModeratedChoice(
                        index, self._moderation(policy.output_moderation, call, policy), streaming)
            return found

        async def passed(choice: ChoiceGuard, events: list[Event], ended: bool) -> list[Event]:
            gate = judged.get(choice.index)
            if gate is None or (not events and not ended):
                return events
            out = await gate.events(events, ended)
            if gate.blocked or ended or choice.done:
                verdicts = report.choices.get(choice.index) or choice.inspection.verdicts()
                report.choices[choice.index] = [*verdicts, *gate.moderation.verdicts()]
                if gate.blocked:
                    choice.stop()
            return out

        async for event in next(call):
            if isinstance(event, TextDelta):
                choice = guard(event.choice)
                for out in await passed(choice, choice.text(event.text), False):
                    yield out
            elif isinstance(event, ToolCallDelta):
                guard(event.choice).tool_call(event)
            elif isinstance(event, Finish):
                choice = guard(event.choice)
                if choice.done:
                    continue
                for out in await passed(choice, choice.finish(event), True):
                    yield out
            elif not (isinstance(event, ReasoningDelta) and event.choice in choices and choices[event.choice].done):
                yield event  # what it starts with, usage, reasoning (unchecked) of a choice still going
        for choice in choices.values():  # choices the upstream never finished
            if not choice.done:
                for out in await passed(choice, choice.finish(None), True):
                    yield out


class ChoiceGuard:
    """One choice of an answer going by: its text held back, its tool calls held whole. Its
    verdicts go on the report as it ends, before its ``Finish`` goes on."""

    __slots__ = ("calls", "done", "held", "index", "inspection", "report")

    def __init__(self, index: int, policy: Policy, streaming: bool, report: SafetyReport) -> None:
        self.index = index
        self.report = report
        self.inspection = Inspection(policy.output)
        self.held = HeldText(self.inspection, policy.hold_back if streaming else None)
        self.calls: list[ToolCallDelta] = []
        self.done = False  # finished, or blocked: nothing more of it goes on

    def text(self, text: str) -> list[Event]:
        if self.done:
            return []
        released = self.held.feed(text)
        if self.inspection.blocked:
            return self._blocked()
        return [TextDelta(released, self.index)] if released else []

    def tool_call(self, delta: ToolCallDelta) -> None:
        if not self.done:
            self.calls.append(delta)

    def finish(self, finish: Finish | None) -> list[Event]:
        if self.done:
            return []
        released = self.held.flush()
        calls = _checked_calls(self.calls, self.inspection)
        if self.inspection.blocked:
            return self._blocked()
        self.done = True
        self.report.choices[self.index] = self.inspection.verdicts()
        out: list[Event] = [TextDelta(released, self.index)] if released else []
        out.extend(calls)
        if finish is not None:
            out.append(finish)
        return out

    def _blocked(self) -> list[Event]:
        self.done = True
        self.report.choices[self.index] = self.inspection.verdicts()
        self.stop()
        return [Finish("content_filter", self.index)]

    def stop(self) -> None:
        """Nothing more of this choice goes on (it was blocked)."""
        self.done = True
        self.calls.clear()
        self.held.pending = ""


def _checked_calls(deltas: list[ToolCallDelta], inspection: Inspection) -> list[ToolCallDelta]:
    """The held tool calls of a choice, one delta each, their arguments checked whole."""
    calls: dict[int, ToolCallDelta] = {}
    for delta in deltas:
        call = calls.get(delta.index)
        if call is None:
            calls[delta.index] = ToolCallDelta(delta.index, delta.id, delta.name, delta.arguments, delta.signature,
                                               delta.origin, delta.choice)
            continue
        call.id = call.id or delta.id
        call.name = (call.name or "") + (delta.name or "") if delta.name else call.name
        call.arguments += delta.arguments
        call.signature = delta.signature or call.signature
        call.origin = delta.origin or call.origin
    for call in calls.values():
        call.arguments = inspection.text(call.arguments)
    return [calls[i] for i in sorted(calls)]


def check_request(request: ChatRequest, policy: Policy) -> list[Verdict]:
    """The request's text parts, tool call arguments and tool results checked, redacted in place;
    ``ContentFiltered`` when a blocking check finds something."""
    inspection = Inspection(policy.input)
    try:
        _scan_request(request, inspection)
    except Exception as problem:
        return _unchecked(policy, inspection, problem)
    return _settled(inspection)


async def check_request_shielded(request: ChatRequest, policy: Policy) -> list[Verdict]:
    """``check_request`` with the prompt shield's checks as well, run after the others (the
    texts scored are the original ones, before any redaction, and none is scored when another
    check has already refused the request)."""
    inspection = Inspection(policy.input)
    texts = scored_texts(request)
    try:
        _scan_request(request, inspection)
        if not inspection.blocked:
            await inspection.shield(texts)
    except Exception as problem:
        return _unchecked(policy, inspection, problem)
    return _settled(inspection)


def _scan_request(request: ChatRequest, inspection: Inspection) -> None:
    for message in request.messages:
        for part in message.content:
            if isinstance(part, TextPart):
                part.text = inspection.text(part.text)
            elif isinstance(part, ToolCallPart):
                part.arguments = inspection.text(part.arguments)


def _unchecked(policy: Policy, inspection: Inspection, problem: Exception) -> list[Verdict]:
    """A check that could not run: the policy says whether the request may pass unchecked."""
    if isinstance(problem, ShieldUnavailable):
        log.warning("content policy %r could not check a request: %s", policy.name, problem)
    else:
        log.exception("content policy %r could not check a request", policy.name)  # a bug of ours
    if policy.on_error == "allow":
        return inspection.verdicts()
    raise ContentFiltered(f"The request could not be checked by the content policy '{policy.name}', which "
                          "refuses what it cannot check (on_error: block). Try again, or ask the "
                          "gateway's operator.", policy=policy.name, verdicts=inspection.verdicts()) from problem


def _settled(inspection: Inspection) -> list[Verdict]:
    verdicts = inspection.verdicts()
    if inspection.blocked:
        blocking = inspection.blocking_policies()
        raise ContentFiltered(_blocked_message(blocking, verdicts), policy=blocking[0], verdicts=verdicts)
    return verdicts


def _blocked_message(policies: list[str], verdicts: list[Verdict]) -> str:
    found = "; ".join(f"text that reads as an attempt to override the model's instructions ({v.check}: "
                      f"{', '.join(v.found)})" if v.check == "prompt_shield" else f"{v.check} ({', '.join(v.found)})"
                      for v in verdicts if v.filtered)
    named = " and ".join(f"'{p}'" for p in policies)
    return (f"The request was blocked by the content {'policy' if len(policies) == 1 else 'policies'} {named}: "
            f"it contains {found}. Remove that content from the messages and send the request again.")

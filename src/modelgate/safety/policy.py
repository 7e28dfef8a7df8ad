"""Policies from the config, compiled once into checks, and the inspection of texts under them.

A ``Check`` is one entry of a policy's ``input:`` or ``output:``: a finder (pii.py, blocklist.py),
or the prompt shield's classifier and its threshold (shield.py), and the action its findings call
for; a ``moderation`` entry is a ``ModerationCheck`` instead (moderation.py), which asks a
classifier deployment and so runs apart, awaited (moderated.py). An ``Inspection`` runs a policy's
checks over the texts of one request or of one choice of an answer, keeps what each check found
(by kind, never the text) and gives each text back with the findings of redacting checks replaced
by placeholders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from modelgate.config.safety import BlocklistSettings, CheckSettings, SafetySettings
from modelgate.safety.blocklist import BlocklistFinder, Entries
from modelgate.safety.moderation import ModerationCheck
from modelgate.safety.pii import PLACEHOLDERS, PIIFinder
from modelgate.safety.shield import Shield
from modelgate.safety.spans import Span, replaced, without_overlaps
from modelgate.schema.verdicts import Verdict

INLINE = "inline"  # the name a blocklist check's own terms and patterns are reported by
# The least text a stream's window lets out at once: each release scans the window again, so
# releasing a few words at a time rather than each as it comes spares three scans in four.
RELEASE_STEP = 16


class Finder(Protocol):
    def find(self, text: str) -> list[Span]: ...


@dataclass(frozen=True, slots=True)
class Check:
    kind: str  # "pii" | "blocklist" | "prompt_shield"
    action: str  # "block" | "redact" | "annotate"
    finder: Finder | None  # None for the prompt shield, which scores whole texts in a worker thread
    policy: str  # the policy it is a check of
    shield: Shield | None = None
    threshold: float = 0.5  # prompt_shield: the score from which a text is an attack


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    input: tuple[Check, ...]
    output: tuple[Check, ...]
    hold_back: int
    on_error: str  # "block" | "allow"
    input_moderation: tuple[ModerationCheck, ...] = ()
    output_moderation: tuple[ModerationCheck, ...] = ()

    @property
    def shielded(self) -> bool:
        """Whether its input checks include the prompt shield (which makes the check awaitable)."""
        return any(check.shield is not None for check in self.input)

    def joined(self, other: Policy) -> Policy:
        """This policy and ``other`` as one: the checks of both, the wider window, and ``block``
        on error where either says so (a project's policy adds to its deployment's)."""
        return Policy(f"{self.name}+{other.name}", self.input + other.input, self.output + other.output,
                      max(self.hold_back, other.hold_back),
                      "block" if "block" in (self.on_error, other.on_error) else "allow",
                      self.input_moderation + other.input_moderation,
                      self.output_moderation + other.output_moderation)

    @property
    def checks_output(self) -> bool:
        return bool(self.output or self.output_moderation)


def compile_check(settings: CheckSettings, lists: Mapping[str, BlocklistSettings], policy: str,
                  shields: Mapping[str | None, Shield] | None = None) -> Check:
    if settings.check == "prompt_shield":
        shield = (shields or {}).get(settings.model)
        if shield is None:
            raise ValueError(f"no Shield for the prompt_shield model {settings.model or 'by default'} "
                             "(compile_policies(shields=...))")
        return Check("prompt_shield", settings.action, None, policy, shield, settings.threshold)
    if settings.check == "pii":
        return Check("pii", settings.action, PIIFinder(settings.entities), policy)
    sources = []
    if settings.terms or settings.patterns:
        sources.append(Entries(INLINE, settings.terms, settings.patterns))
    if settings.blocklist is not None:
        named = lists[settings.blocklist]
        sources.append(Entries(settings.blocklist, named.terms, named.patterns))
    return Check("blocklist", settings.action, BlocklistFinder(sources), policy)


def moderation_check(settings: CheckSettings, policy: str) -> ModerationCheck:
    assert settings.deployment is not None  # the config refuses a moderation check without one
    return ModerationCheck(settings.deployment, settings.categories, settings.severity, settings.action, policy)


def compile_policies(settings: SafetySettings, lists: Mapping[str, BlocklistSettings] | None = None,
                     shields: Mapping[str | None, Shield] | None = None) -> dict[str, Policy]:
    """Every policy of the config, each check's expressions compiled once; ``lists`` replace the
    terms and patterns of the config's lists of the same names (those set through the admin API).
    ``shields`` are the classifiers of the prompt_shield checks, by their ``model:`` (None: the
    default), each shared by the checks that name it."""
    in_force = {**settings.blocklists, **(lists or {})}
    return {
        name: Policy(name, tuple(compile_check(c, in_force, name, shields) for c in policy.input
                                 if c.check != "moderation"),
                     tuple(compile_check(c, in_force, name, shields) for c in policy.output
                           if c.check != "moderation"),
                     policy.stream_hold_back, policy.on_error,
                     tuple(moderation_check(c, name) for c in policy.input if c.check == "moderation"),
                     tuple(moderation_check(c, name) for c in policy.output if c.check == "moderation"))
        for name, policy in settings.policies.items()
    }


class Inspection:
    """The checks of one side of a policy over the texts of one request, or of one choice."""

    __slots__ = ("blocked", "checks", "found")

    def __init__(self, checks: tuple[Check, ...]) -> None:
        self.checks = checks
        self.found: list[set[str]] = [set() for _ in checks]
        self.blocked = False

    def scan(self, text: str) -> list[tuple[Span, int]]:
        """Every finding in ``text`` with the index of the check that made it (findings of
        different checks may overlap). Nothing is recorded: see ``settle``."""
        spans: list[tuple[Span, int]] = []
        for index, check in enumerate(self.checks):
            if check.finder is not None:
                spans.extend((span, index) for span in check.finder.find(text))
        return spans

    async def shield(self, texts: list[tuple[str, str]]) -> None:
        """The prompt shield's checks over ``texts`` (each with the name of what it may hold,
        ``jailbreak`` or ``indirect_attack``): a text scored at or above a check's threshold is a
        finding of that check. Each classifier scores each text once, in a worker thread."""
        shielding = [(index, check) for index, check in enumerate(self.checks) if check.shield is not None]
        if not shielding or not texts:
            return
        scores: dict[int, list[float]] = {}
        for _, check in shielding:
            assert check.shield is not None
            if id(check.shield) not in scores:
                scores[id(check.shield)] = await check.shield.ascores([text for _, text in texts])
        for index, check in shielding:
            for (label, _), score in zip(texts, scores[id(check.shield)], strict=True):
                if score >= check.threshold:
                    self.found[index].add(label)
                    self.blocked = self.blocked or check.action == "block"

    def settle(self, findings: list[tuple[Span, int]]) -> None:
        """Record findings that can no longer change: what they are, and whether one blocks."""
        for span, index in findings:
            self.found[index].add(span.label)
            if self.checks[index].action == "block":
                self.blocked = True

    def redacted(self, text: str, findings: list[tuple[Span, int]]) -> str:
        """``text`` with each finding of a redacting check inside it replaced by its placeholder."""
        spans = [s for s, i in findings if self.checks[i].action == "redact" and s.end <= len(text)]
        return replaced(text, without_overlaps(spans), PLACEHOLDERS) if spans else text

    def text(self, text: str) -> str:
        """A whole text checked: its findings recorded, and it as it may be sent on."""
        findings = self.scan(text)
        if not findings:
            return text
        self.settle(findings)
        return self.redacted(text, findings)

    def blocking_policies(self) -> list[str]:
        """The policies whose blocking checks found something, in order, each once."""
        return list(dict.fromkeys(check.policy for check, found in zip(self.checks, self.found, strict=True)
                                  if found and check.action == "block"))

    def verdicts(self) -> list[Verdict]:
        return [Verdict(check.kind, check.action, tuple(sorted(found)))
                for check, found in zip(self.checks, self.found, strict=True)]


class HeldText:
    """The text of one streamed choice, held back so that no finding is sent before it is known.

    ``feed`` takes the next piece of text and gives back what may be sent now; ``flush`` what is
    left at the end. Text is released only up to a point that is at least ``hold_back``
    characters before the end of what has arrived, never inside a word (a key or an email
    address is held whole, whatever its length), and never inside a finding that reaches past
    that point: a finding is acted on only once it can no longer grow. Text goes out
    ``RELEASE_STEP`` characters or more at a time. ``hold_back`` None holds everything until
    ``flush`` (an answer that is not streamed).
    """

    __slots__ = ("hold_back", "inspection", "pending")

    def __init__(self, inspection: Inspection, hold_back: int | None) -> None:
        self.inspection = inspection
        self.hold_back = hold_back
        self.pending = ""

    def feed(self, text: str) -> str:
        self.pending += text
        if self.hold_back is None:
            return ""
        pending = self.pending
        cut = len(pending) - self.hold_back
        if cut < RELEASE_STEP:  # the cut only moves back from here: nothing can go yet
            return ""
        while 0 < cut < len(pending) and not pending[cut - 1].isspace() and not pending[cut].isspace():
            cut -= 1
        if cut < RELEASE_STEP:
            return ""
        findings = self.inspection.scan(pending)
        settled = [(s, i) for s, i in findings if s.end <= cut]
        for span, _ in findings:
            if span.start < cut < span.end:
                cut = span.start
        self.inspection.settle(settled)
        if self.inspection.blocked or cut <= 0:
            return ""
        self.pending = pending[cut:]
        return self.inspection.redacted(pending[:cut], settled)

    def flush(self) -> str:
        text, self.pending = self.pending, ""
        return self.inspection.text(text)

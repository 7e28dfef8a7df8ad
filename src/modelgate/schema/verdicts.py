"""What a content policy's checks found in a request and in its answer (modelgate/safety/).

The stage that runs the checks fills a ``SafetyReport`` on the call; each surface says it in its
own words (the OpenAI format as Azure's ``prompt_filter_results`` and ``content_filter_results``).
A verdict names what was found (an entity kind, a blocklist's name), never the text itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Verdict:
    """One check of a policy over a request, or over one choice of its answer."""

    check: str  # "pii" | "blocklist" | "prompt_shield" | "moderation"
    action: str  # "block" | "redact" | "annotate"
    # What it found, sorted: entity kinds ("email", "iban"), the names of the blocklists matched,
    # for the prompt shield "jailbreak" and "indirect_attack", or the harm categories that reached
    # the moderation check's severity ("error": the check failed and its policy blocks what it
    # cannot check).
    found: tuple[str, ...] = ()
    # moderation: each configured category's severity ("safe", "low", "medium", "high").
    severities: tuple[tuple[str, str], ...] = ()
    failed: bool = False  # the check could not run (its policy's on_error said what followed)

    @property
    def detected(self) -> bool:
        return bool(self.found)

    @property
    def filtered(self) -> bool:
        """Whether the content was withheld for it."""
        return self.detected and self.action == "block"

    @property
    def redacted(self) -> bool:
        return self.detected and self.action == "redact"


@dataclass(slots=True)
class SafetyReport:
    """The verdicts of one call under the policy ``policy``: of its prompt, and of each choice
    of the answer once that choice has finished."""

    policy: str
    prompt: list[Verdict] = field(default_factory=list)
    choices: dict[int, list[Verdict]] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """What the policy did, in a word and the checks that did it, for usage reports:
        ``blocked:blocklist``, ``redacted:pii``, ``annotated:pii,blocklist`` or ``clean``."""
        verdicts = [*self.prompt, *(v for choice in self.choices.values() for v in choice)]
        for outcome, checks in (("blocked", {v.check for v in verdicts if v.filtered}),
                                ("redacted", {v.check for v in verdicts if v.redacted}),
                                ("annotated", {v.check for v in verdicts if v.detected})):
            if checks:
                return f"{outcome}:{','.join(sorted(checks))}"
        return "clean"

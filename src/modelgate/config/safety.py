"""The ``safety:`` section: content policies, the checks each runs, and named blocklists.

A policy lists the checks run on a request (``input``) and on its answer (``output``); a
deployment names the policy it runs under (``safety: NAME``). The checks themselves live in
``modelgate/safety/``; this module only reads and validates their settings, so that a wrong
entity, a regex that does not compile or a threshold out of range stops the server before it
starts, with the key that is wrong.

A ``moderation`` check's ``deployment:`` must name a deployment (checked with ``deployments:``,
which are read after this section: ``moderation_problems``). ``prompt_shield`` judges requests
only: it belongs under ``input:``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from modelgate.config.fields import INVALID, Key, Reader, Shape, join, shape_of

CHECKS = ("pii", "blocklist", "prompt_shield", "moderation")
AVAILABLE_CHECKS = ("pii", "blocklist", "prompt_shield", "moderation")
ACTIONS = ("block", "redact", "annotate")
# What the pii check finds; a redacted one becomes [EMAIL], [PHONE], ... (safety/pii.py).
ENTITIES = ("email", "phone", "credit_card", "iban", "ssn", "ip", "secret")
CATEGORIES = ("hate", "sexual", "violence", "self_harm")
SEVERITIES = ("safe", "low", "medium", "high")
ON_ERROR = ("block", "allow")
# The longest text of each entity that spaces break into several words (a single word is held
# back whole, whatever its length): an IBAN in groups of four, a card number in groups, a phone
# number in the international format, an SSN.
LONGEST_SPACED = {"iban": 42, "credit_card": 23, "phone": 25, "ssn": 11}
DEFAULT_HOLD_BACK = 64
# The keys each check takes besides check: and action:.
CHECK_KEYS: Mapping[str, frozenset[str]] = {
    "pii": frozenset({"entities"}),
    "blocklist": frozenset({"terms", "patterns", "list"}),
    "prompt_shield": frozenset({"threshold", "model"}),
    "moderation": frozenset({"deployment", "categories", "severity"}),
}


def _threshold(value: float) -> str | None:
    return None if 0 <= value <= 1 else f"must be a score between 0 and 1, got {value!r}"


def _entities(values: list[str]) -> str | None:
    unknown = [v for v in values if v not in ENTITIES]
    if unknown:
        return f"unknown entity {', '.join(map(repr, unknown))}; known: {', '.join(ENTITIES)}"
    return None if values else f"is empty; name at least one of {', '.join(ENTITIES)} or remove the key for all"


def _categories(values: list[str]) -> str | None:
    unknown = [v for v in values if v not in CATEGORIES]
    if unknown:
        return f"unknown category {', '.join(map(repr, unknown))}; known: {', '.join(CATEGORIES)}"
    return None


@dataclass(slots=True, kw_only=True)
class CheckSettings:
    """One check of a policy, as the config gives it; the keys that do not belong to ``check``
    are refused when it is read."""

    check: Annotated[str, Key(choices=CHECKS, doc=f"one of {', '.join(CHECKS)}")]
    action: Annotated[str, Key(choices=ACTIONS, doc=f"what a finding means: {', '.join(ACTIONS)}")]
    # pii: the entities looked for.
    entities: Annotated[tuple[str, ...], Key(f"a list of {', '.join(ENTITIES)}", _entities)] = ENTITIES
    # blocklist: words and phrases (case- and accent-insensitive, whole words), regular expressions,
    # and the name of a list under safety.blocklists (the config key is ``list``).
    terms: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    blocklist: str | None = None
    # prompt_shield: the score from which a prompt counts as an attack.
    threshold: Annotated[float, Key("a score between 0 and 1", _threshold)] = 0.5
    # prompt_shield: the folder of an ONNX classifier to use in place of the default (absolute once read).
    model: str | None = None
    # moderation: the classifier deployment, the categories and the severity from which to act.
    deployment: str | None = None
    categories: Annotated[tuple[str, ...], Key(f"a list of {', '.join(CATEGORIES)}", _categories)] = CATEGORIES
    severity: Annotated[str, Key(choices=SEVERITIES)] = "medium"


@dataclass(slots=True, kw_only=True)
class BlocklistSettings:
    """A named list of terms and patterns that a blocklist check uses as ``list: NAME``."""

    terms: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


def _hold_back(value: int) -> str | None:
    return None if value >= 0 else "must be 0 or more characters (0: nothing held back beyond a word)"


CHECK: Shape[CheckSettings] = Shape(CheckSettings, by_hand=("list",))


def read_checks(reader: Reader, value: Any, path: str, earlier: Mapping[str, Any]) -> Any:
    """A policy's ``input:`` or ``output:`` list of checks."""
    if not reader.expect(value, list, path, "a list of checks such as {check: pii, action: redact}"):
        return INVALID
    checks: list[CheckSettings] = []
    for index, body in enumerate(value):
        check = read_check(reader, body, f"{path}[{index}]")
        if check is not None:
            checks.append(check)
    return checks


def read_check(reader: Reader, body: Any, path: str) -> CheckSettings | None:
    """One check; None when it cannot be used (the problems are reported)."""
    values = CHECK.values(reader, body, path, what="a mapping with check: and action:")
    if values is None:
        return None
    check = CHECK.build(reader, body, values, path)
    if check is None:
        return None
    ok = True
    for key in sorted((set(body) & CHECK.keys) - {"check", "action"} - CHECK_KEYS[check.check]):
        owners = [name for name, keys in CHECK_KEYS.items() if key in keys] or ["none"]
        reader.fail(join(path, key), f"does not apply to check {check.check} (it is a key of check "
                    f"{owners[0]}): remove it")
        ok = False
    if check.action == "redact" and check.check != "pii":
        reader.fail(join(path, "action"), f"redact is only for check pii (it has placeholders such as [EMAIL]); "
                    f"use block or annotate for check {check.check}")
        ok = False
    if check.check == "blocklist":
        ok = _blocklist_checked(reader, body, check, path) and ok
    if check.check == "moderation" and not check.deployment:
        reader.fail(join(path, "deployment"), "a moderation check needs deployment: NAME, the deployment of the "
                    "classifier (an OpenAI moderation model, or a chat model asked as a judge)")
        ok = False
    if check.model is not None:
        folder = reader.path(check.model)
        if not (folder / "model.onnx").is_file():
            reader.fail(join(path, "model"), f"{folder} has no model.onnx; give the folder of a classifier exported "
                        "to ONNX (model.onnx, tokenizer.json, config.json), or remove the key for the default model")
            ok = False
        check.model = str(folder)
    if check.check not in AVAILABLE_CHECKS:
        reader.fail(join(path, "check"), f"{check.check} is not available in this build yet; "
                    f"use one of {', '.join(AVAILABLE_CHECKS)}, or remove this check")
        ok = False
    return check if ok else None


def _blocklist_checked(reader: Reader, body: Mapping[str, Any], check: CheckSettings, path: str) -> bool:
    named = body.get("list")
    if named is not None:
        if not isinstance(named, str) or not named:
            reader.fail(join(path, "list"), "expected the name of a list under safety.blocklists")
            return False
        check.blocklist = named
    if not check.terms and not check.patterns and check.blocklist is None:
        reader.fail(path, "a blocklist check needs terms:, patterns: or list: NAME (a list under safety.blocklists)")
        return False
    return _terms_checked(reader, check.terms, join(path, "terms")) & \
        _patterns_checked(reader, check.patterns, join(path, "patterns"))


def _terms_checked(reader: Reader, terms: tuple[str, ...], path: str) -> bool:
    ok = True
    for index, term in enumerate(terms):
        if not term.strip():
            reader.fail(f"{path}[{index}]", "is empty; give a word or phrase, or remove it")
            ok = False
    return ok


def _patterns_checked(reader: Reader, patterns: tuple[str, ...], path: str) -> bool:
    ok = True
    for index, pattern in enumerate(patterns):
        try:
            compiled = re.compile(pattern)
        except re.error as problem:
            reader.fail(f"{path}[{index}]", f"is not a valid regular expression ({problem}); fix it, or give "
                        "the text as one of terms: to match it literally")
            ok = False
            continue
        if compiled.fullmatch(""):
            reader.fail(f"{path}[{index}]", f"{pattern!r} matches empty text, so it would flag everything; "
                        "make it match at least one character")
            ok = False
    return ok


@dataclass(slots=True, kw_only=True)
class PolicySettings:
    """A content policy: the checks on requests and answers, and how streams are held back."""

    input: Annotated[list[CheckSettings], Key("a list of checks", read=read_checks)] = field(default_factory=list)
    output: Annotated[list[CheckSettings], Key("a list of checks", read=read_checks)] = field(default_factory=list)
    # Characters of a streamed answer held back so that a match split across chunks is caught
    # before any of it is sent (a word is never cut, whatever its length).
    stream_hold_back: Annotated[int, Key("a whole number of characters", _hold_back)] = DEFAULT_HOLD_BACK
    # What a check that fails to run means for the request.
    on_error: Annotated[str, Key(choices=ON_ERROR)] = "block"


def read_blocklist(reader: Reader, body: Any, path: str) -> BlocklistSettings | None:
    """One list's terms and patterns, in the config or set through the admin API; None when
    one of them cannot be used (the problems are reported)."""
    made = shape_of(BlocklistSettings).read(reader, body, path, what="a mapping with terms: and patterns:")
    if made is None:
        return None
    terms_ok = _terms_checked(reader, made.terms, join(path, "terms"))
    return made if _patterns_checked(reader, made.patterns, join(path, "patterns")) and terms_ok else None


def read_blocklists(reader: Reader, value: Any, path: str, earlier: Mapping[str, Any]) -> Any:
    if not reader.expect(value, dict, path, "a mapping of list name to {terms, patterns}"):
        return INVALID
    lists: dict[str, BlocklistSettings] = {}
    for name, body in value.items():
        # An empty entry (NAME: {} or NAME:) names a list whose terms are set through the admin API.
        made = read_blocklist(reader, body if body is not None else {}, join(path, name))
        if made is not None:
            lists[str(name)] = made
    return lists


def read_policies(reader: Reader, value: Any, path: str, earlier: Mapping[str, Any]) -> Any:
    """``policies:`` by name; each blocklist check's ``list:`` must name one of ``blocklists:``."""
    if not reader.expect(value, dict, path, "a mapping of policy name to {input, output}"):
        return INVALID
    lists: Mapping[str, BlocklistSettings] = earlier.get("blocklists", {})
    policies: dict[str, PolicySettings] = {}
    for name, body in value.items():
        where = join(path, name)
        policy = shape_of(PolicySettings).read(reader, body, where, what="a mapping with input: and output:")
        if policy is None:
            continue
        if not policy.input and not policy.output:
            reader.fail(where, "has no checks; list some under input: or output:, or remove the policy")
        needed = hold_back_needed(policy.output, lists)
        if policy.stream_hold_back < needed:
            reader.fail(join(where, "stream_hold_back"), f"must be at least {needed} characters for the output checks "
                        f"(their longest finding of several words), got {policy.stream_hold_back}; raise it or "
                        "remove the key for the default, 64")
        for side in ("input", "output"):
            given = body.get(side)
            for index, check in enumerate(given if isinstance(given, list) else ()):
                if side == "output" and isinstance(check, dict) and check.get("check") == "prompt_shield":
                    reader.fail(f"{where}.output[{index}].check", "prompt_shield judges what is sent to a model "
                                "(user messages, documents and tool results), not its answers: move it under input:")
                named = check.get("list") if isinstance(check, dict) else None
                if isinstance(named, str) and named not in lists:
                    known = ", ".join(lists) or "none are defined"
                    reader.fail(f"{where}.{side}[{index}].list", f"'{named}' is not a list under "
                                f"safety.blocklists ({known}); define it there or give terms: inline")
        policies[str(name)] = policy
    return policies


def hold_back_needed(checks: list[CheckSettings], lists: Mapping[str, BlocklistSettings]) -> int:
    """The window a stream needs so that no finding of several words is released in part."""
    needed = 0
    for check in checks:
        if check.check == "pii":
            needed = max(needed, *(LONGEST_SPACED.get(e, 0) for e in check.entities))
        elif check.check == "blocklist":
            named = lists.get(check.blocklist or "")
            terms = [*check.terms, *(named.terms if named else ())]
            needed = max(needed, *(len(t.strip()) for t in terms if len(t.split()) > 1), 0)
    return needed


@dataclass(slots=True, kw_only=True)
class SafetySettings:
    """Content policies (docs/safety.md). Read before ``deployments:``, whose ``safety:`` names one."""

    blocklists: Annotated[dict[str, BlocklistSettings], Key(read=read_blocklists)] = field(default_factory=dict)
    policies: Annotated[dict[str, PolicySettings], Key(read=read_policies)] = field(default_factory=dict)


def moderation_problems(settings: SafetySettings, deployments: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, problem) for each moderation check whose ``deployment:`` is not a deployment, or is
    one whose own policy runs a moderation check (its classifier call would be checked by a
    classifier again, without end). ``deployments``: by name, each with its ``safety``."""
    problems: list[tuple[str, str]] = []
    for name, policy in settings.policies.items():
        for side, checks in (("input", policy.input), ("output", policy.output)):
            for index, check in enumerate(checks):
                if check.check != "moderation" or check.deployment is None:
                    continue
                where = f"safety.policies.{name}.{side}[{index}].deployment"
                target = deployments.get(check.deployment)
                if target is None:
                    problems.append((where, f"'{check.deployment}' is not a deployment; name one of: "
                                     f"{', '.join(deployments) or 'none are defined'}"))
                    continue
                own = settings.policies.get(target.safety) if target.safety else None
                if own is not None and any(c.check == "moderation" for c in (*own.input, *own.output)):
                    problems.append((where, f"deployment '{check.deployment}' runs policy '{target.safety}', which "
                                     "has a moderation check itself; give the classifier's deployment a policy "
                                     "without one, or none"))
    return problems

"""The labelled evaluation set of bench/safety/eval.jsonl: every line well-formed, and the pii and
blocklist checks' results on it the same as its labels.

This is the regression test of those checks on realistic text: a change that makes a check miss
an entity of the set, or flag a near-miss, fails here. The few lines where a check and its label
knowingly differ are listed, each with the reason; such a line that starts to agree fails too, so
that the list stays true.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelgate.config.safety import ENTITIES
from modelgate.safety.blocklist import BlocklistFinder, Entries
from modelgate.safety.pii import PIIFinder

EVAL_SET = Path(__file__).resolve().parents[2] / "bench" / "safety" / "eval.jsonl"
ROLES = {"user", "system", "developer", "tool"}
# Each check's own keys, besides id, check, tag and text.
KEYS = {"pii": {"entities"}, "blocklist": {"terms", "patterns", "flagged"},
        "prompt_shield": {"role", "lang", "flagged"}}
# Lines where the check and the label differ, and why the check cannot tell.
KNOWN_DISAGREEMENTS = {
    "pii-199": "a four-part version number whose parts are all 255 or less is an IPv4 address by its form",
}


def read_set() -> list[dict[str, Any]]:
    lines = []
    for number, raw in enumerate(EVAL_SET.read_text(encoding="utf-8").splitlines(), 1):
        line = json.loads(raw)
        assert isinstance(line, dict), f"line {number} is not an object"
        lines.append(line)
    return lines


LINES = read_set()


def label_problems(line: dict[str, Any]) -> list[str]:
    """What is wrong with one line's label (nothing, for a well-formed line)."""
    problems = []
    check = line.get("check")
    if check not in KEYS:
        return [f"check {check!r} is not one of {sorted(KEYS)}"]
    if not str(line.get("id", "")).startswith(f"{check}-"):
        problems.append(f"id {line.get('id')!r} does not start with {check}-")
    for key in ("text", "tag"):
        if not isinstance(line.get(key), str) or not line[key].strip():
            problems.append(f"{key} is not a non-empty string")
    extra = set(line) - {"id", "check", "tag", "text"} - KEYS[check]
    if extra:
        problems.append(f"keys {sorted(extra)} do not belong to a {check} line")
    if check == "pii":
        entities = line.get("entities")
        if not isinstance(entities, list) or entities != sorted(set(entities)) or not set(entities) <= set(ENTITIES):
            problems.append(f"entities {entities!r} is not a sorted list of distinct entities of {sorted(ENTITIES)}")
        return problems
    if not isinstance(line.get("flagged"), bool):
        problems.append("flagged is not true or false")
    if check == "blocklist":
        terms, patterns = line.get("terms", []), line.get("patterns", [])
        if not all(isinstance(v, list) and all(isinstance(s, str) and s for s in v) for v in (terms, patterns)):
            problems.append("terms and patterns are not lists of non-empty strings")
        elif not terms and not patterns:
            problems.append("a blocklist line needs terms or patterns")
    else:
        if line.get("role") not in ROLES:
            problems.append(f"role {line.get('role')!r} is not one of {sorted(ROLES)}")
        if not isinstance(line.get("lang"), str) or not line["lang"]:
            problems.append("lang is not a language code")
    return problems


def test_every_line_is_labelled_well() -> None:
    problems = [f"{line.get('id')}: {problem}" for line in LINES for problem in label_problems(line)]
    assert problems == []
    ids = [line["id"] for line in LINES]
    assert len(ids) == len(set(ids)), "ids repeat"


def test_each_check_has_positives_and_negatives_and_pii_every_entity() -> None:
    for check in KEYS:
        labels = [bool(line["entities"]) if check == "pii" else line["flagged"] for line in LINES
                  if line["check"] == check]
        assert labels.count(True) >= 20 and labels.count(False) >= 20, check
    entities = {entity for line in LINES if line["check"] == "pii" for entity in line["entities"]}
    assert entities == set(ENTITIES)
    assert len(LINES) >= 400


def pii_disagreement(line: dict[str, Any], finder: PIIFinder) -> str | None:
    found = sorted({span.label for span in finder.find(line["text"])})
    return None if found == line["entities"] else f"found {found}, labelled {line['entities']}"


def blocklist_disagreement(line: dict[str, Any]) -> str | None:
    finder = BlocklistFinder([Entries("inline", line.get("terms", []), line.get("patterns", []))])
    flagged = bool(finder.find(line["text"]))
    return None if flagged == line["flagged"] else f"flagged {flagged}, labelled {line['flagged']}"


def test_pii_and_blocklist_checks_agree_with_the_labels() -> None:
    finder = PIIFinder(ENTITIES)
    disagreements = {}
    for line in LINES:
        if line["check"] == "pii":
            why = pii_disagreement(line, finder)
        elif line["check"] == "blocklist":
            why = blocklist_disagreement(line)
        else:
            continue
        if why is not None:
            disagreements[line["id"]] = f"{why}: {line['text'][:80]!r}"
    assert set(disagreements) == set(KNOWN_DISAGREEMENTS), disagreements


@pytest.mark.parametrize("line", [
    {"id": "pii-x", "check": "pii", "tag": "t", "text": "a", "entities": ["email", "card"]},
    {"id": "pii-x", "check": "pii", "tag": "t", "text": "a", "entities": ["phone", "email"]},
    {"id": "blocklist-x", "check": "blocklist", "tag": "t", "text": "a", "flagged": True},
    {"id": "prompt_shield-x", "check": "prompt_shield", "tag": "t", "text": "a", "role": "boss", "lang": "en",
     "flagged": False},
    {"id": "pii-x", "check": "moderation", "tag": "t", "text": "a"},
    {"id": "x", "check": "pii", "tag": "t", "text": "", "entities": [], "flagged": False},
])
def test_a_malformed_label_is_caught(line: dict[str, Any]) -> None:
    assert label_problems(line) != []

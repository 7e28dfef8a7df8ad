"""A content policy's verdicts in Azure OpenAI's content-filter shapes, which Azure and Foundry
clients already read (https://learn.microsoft.com/azure/ai-foundry/openai/concepts/content-filter).

- ``content_filter_results``: per check, ``pii`` as Azure's binary detectors are given
  (``{"filtered", "detected"}``, with the entity kinds found and whether they were redacted) and
  blocklists as ``custom_blocklists`` (``{"filtered", "details": [{"filtered", "id"}]}``, the ids
  being the lists' names, ``inline`` for a policy's own terms); the prompt shield as Azure's Prompt
  Shields, ``jailbreak`` (user messages) and ``indirect_attack`` (documents and tool results), each
  ``{"filtered", "detected"}``.
- moderation: each category judged (``hate``, ``sexual``, ``violence``, ``self_harm``) as Azure
  gives its harm categories, ``{"filtered", "severity"}``; a check that could not run adds
  Azure's ``error: {"code": "content_filter_error", "message"}``.
- ``prompt_filter_results``: ``[{"prompt_index": 0, "content_filter_results": {...}}]``, the
  whole prompt judged as one.
- A blocked prompt: ``innererror: {"code": "ResponsibleAIPolicyViolation",
  "content_filter_result": {...}}`` (singular, as Azure spells it there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelgate.schema.errors import ContentFiltered
from modelgate.schema.verdicts import SafetyReport, Verdict

POLICY_VIOLATION = "ResponsibleAIPolicyViolation"


SEVERITY_ORDER = ("safe", "low", "medium", "high")


def filter_results(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for verdict in verdicts:
        if verdict.check != "moderation":
            continue
        for category, severity in verdict.severities:
            seen = results.get(category)
            filtered = verdict.filtered and category in verdict.found
            if seen is None:
                results[category] = {"filtered": filtered, "severity": severity}
            else:
                seen["filtered"] = seen["filtered"] or filtered
                if SEVERITY_ORDER.index(severity) > SEVERITY_ORDER.index(seen["severity"]):
                    seen["severity"] = severity
        if verdict.failed:
            results["error"] = {"code": "content_filter_error",
                                "message": "The moderation check could not run; the content was "
                                           + ("not passed." if verdict.filtered else "passed unchecked.")}
    pii = [v for v in verdicts if v.check == "pii"]
    if pii:
        entities = sorted({e for v in pii for e in v.found})
        results["pii"] = {"filtered": any(v.filtered for v in pii), "detected": bool(entities),
                          "redacted": any(v.redacted for v in pii), "entities": entities}
    lists = [v for v in verdicts if v.check == "blocklist"]
    if lists:
        details: dict[str, bool] = {}
        for verdict in lists:
            for name in verdict.found:
                details[name] = details.get(name, False) or verdict.filtered
        results["custom_blocklists"] = {"filtered": any(details.values()),
                                        "details": [{"filtered": f, "id": n} for n, f in details.items()]}
    shields = [v for v in verdicts if v.check == "prompt_shield"]
    if shields:
        for name in ("jailbreak", "indirect_attack"):
            results[name] = {"filtered": any(v.filtered and name in v.found for v in shields),
                             "detected": any(name in v.found for v in shields)}
    return results


def prompt_filter_results(report: SafetyReport | None) -> list[dict[str, Any]] | None:
    if report is None or not report.prompt:
        return None
    return [{"prompt_index": 0, "content_filter_results": filter_results(report.prompt)}]


def choice_filter_results(report: SafetyReport | None, choice: int) -> dict[str, Any] | None:
    if report is None:
        return None
    verdicts = report.choices.get(choice)
    return filter_results(verdicts) if verdicts else None


def inner_error(error: ContentFiltered) -> dict[str, Any]:
    return {"code": POLICY_VIOLATION, "content_filter_result": filter_results(error.verdicts)}

"""The safety: section: policies, checks and lists read and validated, with errors that name the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelgate.config import ConfigError, parse_settings
from modelgate.config.safety import ENTITIES

PROVIDERS = {"openai": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}}


def config(section: dict[str, Any], **deployment: Any) -> dict[str, Any]:
    return {"providers": PROVIDERS, "safety": section,
            "deployments": [{"name": "chat", "provider": "openai", "model": "gpt-4o", **deployment}]}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(data, {})
    return str(caught.value).splitlines()[1:]


def test_the_issue_shape_loads_and_a_deployment_names_its_policy() -> None:
    settings = parse_settings(config({
        "blocklists": {"codenames": {"terms": ["Project Falcon"], "patterns": [r"(?i)\bfalcon-\d+\b"]}},
        "policies": {"standard": {
            "input": [{"check": "pii", "action": "redact", "entities": ["email", "phone", "credit_card"]},
                      {"check": "blocklist", "action": "block", "terms": ["forbidden"], "list": "codenames"}],
            "output": [{"check": "pii", "action": "redact"}],
            "stream_hold_back": 48, "on_error": "allow"}}}, safety="standard"), {})
    policy = settings.safety.policies["standard"]
    assert settings.deployments["chat"].safety == "standard"
    assert policy.input[0].entities == ("email", "phone", "credit_card")
    assert policy.input[1].blocklist == "codenames" and policy.input[1].terms == ("forbidden",)
    assert policy.output[0].entities == ENTITIES  # all of them, when none are named
    assert (policy.stream_hold_back, policy.on_error) == (48, "allow")
    assert settings.safety.blocklists["codenames"].patterns == (r"(?i)\bfalcon-\d+\b",)


def test_a_deployment_without_safety_has_no_policy() -> None:
    settings = parse_settings(config({}), {})
    assert settings.deployments["chat"].safety is None and settings.safety.policies == {}


def test_an_unknown_policy_is_named_with_the_known_ones() -> None:
    found = problems(config({"policies": {"standard": {"input": [{"check": "pii", "action": "block"}]}}},
                            safety="strict"))
    assert found == ["  deployments.chat.safety: 'strict' is not a policy under safety.policies (standard); "
                     "define it there or remove safety:"]


def test_every_wrong_check_is_reported_with_its_key() -> None:
    found = "\n".join(problems(config({"policies": {"p": {"input": [
        {"check": "pii", "action": "redact", "entities": ["email", "passport"]},
        {"check": "blocklist", "action": "block", "patterns": ["(unclosed", "a*"]},
        {"check": "blocklist", "action": "redact", "terms": ["x"]},
        {"check": "blocklist", "action": "block"},
        {"check": "blocklist", "action": "block", "list": "missing"},
        {"check": "pii", "action": "block", "terms": ["x"]},
        {"check": "toxicity", "action": "block"},
        {"check": "pii", "action": "hide"},
    ], "stream_hold_back": -1, "on_error": "ignore"}}})))
    assert "safety.policies.p.input[0].entities: unknown entity 'passport'; known: email, phone" in found
    assert "safety.policies.p.input[1].patterns[0]: is not a valid regular expression" in found
    assert "safety.policies.p.input[1].patterns[1]: 'a*' matches empty text" in found
    assert "safety.policies.p.input[2].action: redact is only for check pii" in found
    assert "safety.policies.p.input[3]: a blocklist check needs terms:, patterns: or list: NAME" in found
    assert ("safety.policies.p.input[4].list: 'missing' is not a list under safety.blocklists (none are "
            "defined); define it there or give terms: inline") in found
    assert ("safety.policies.p.input[5].terms: does not apply to check pii (it is a key of check blocklist): "
            "remove it") in found
    assert "safety.policies.p.input[6].check: must be one of pii, blocklist, prompt_shield, moderation" in found
    assert "safety.policies.p.input[7].action: must be one of block, redact, annotate, got 'hide'" in found
    assert "safety.policies.p.stream_hold_back: must be 0 or more characters" in found
    assert "safety.policies.p.on_error: must be one of block, allow, got 'ignore'" in found


def test_prompt_shield_and_moderation_checks_are_validated_and_accepted() -> None:
    found = problems(config({"policies": {"p": {
        "input": [{"check": "prompt_shield", "action": "block", "threshold": 1.5}],
        "output": [{"check": "moderation", "action": "block", "deployment": "chat",
                    "categories": ["hate", "spam"], "severity": "extreme"},
                   {"check": "prompt_shield", "action": "annotate"}]}}}))
    assert "  safety.policies.p.input[0].threshold: must be a score between 0 and 1, got 1.5" in found
    assert ("  safety.policies.p.output[1].check: prompt_shield judges what is sent to a model (user messages, "
            "documents and tool results), not its answers: move it under input:") in found
    assert "  safety.policies.p.output[0].categories: unknown category 'spam'; known: hate, sexual, violence, " \
           "self_harm" in found
    assert "  safety.policies.p.output[0].severity: must be one of safe, low, medium, high, got 'extreme'" in found
    # Both checks run in this build: neither is refused by name.
    assert not any(".check:" in p and "not available" in p for p in found)
    assert not any("input[0].check" in p or "output[0].check" in p for p in found)


def test_a_policy_with_the_prompt_shield_and_moderation_loads() -> None:
    settings = parse_settings(config({"policies": {"p": {
        "input": [{"check": "prompt_shield", "action": "block", "threshold": 0.7},
                  {"check": "moderation", "action": "block", "deployment": "chat"}],
        "output": [{"check": "moderation", "action": "annotate", "deployment": "chat", "severity": "high"}]}}}), {})
    policy = settings.safety.policies["p"]
    assert [(c.check, c.action) for c in policy.input] == [("prompt_shield", "block"), ("moderation", "block")]
    assert (policy.input[0].threshold, policy.input[0].model) == (0.7, None)
    assert (policy.input[1].deployment, policy.output[0].severity) == ("chat", "high")


def test_a_moderation_check_loads_and_names_a_deployment() -> None:
    settings = parse_settings(config({"policies": {"p": {
        "output": [{"check": "moderation", "action": "block", "deployment": "chat",
                    "categories": ["hate", "violence"], "severity": "high"}]}}}), {})
    check = settings.safety.policies["p"].output[0]
    assert (check.deployment, check.categories, check.severity) == ("chat", ("hate", "violence"), "high")


def test_a_moderation_check_without_a_usable_deployment_is_refused() -> None:
    found = problems(config({"policies": {
        "p": {"input": [{"check": "moderation", "action": "block"}],
              "output": [{"check": "moderation", "action": "block", "deployment": "guard"}]},
        "q": {"input": [{"check": "moderation", "action": "annotate", "deployment": "chat"}]}}}, safety="q"))
    assert ("  safety.policies.p.input[0].deployment: a moderation check needs deployment: NAME, the deployment "
            "of the classifier (an OpenAI moderation model, or a chat model asked as a judge)") in found
    assert "  safety.policies.p.output[0].deployment: 'guard' is not a deployment; name one of: chat" in found
    assert ("  safety.policies.q.input[0].deployment: deployment 'chat' runs policy 'q', which has a moderation "
            "check itself; give the classifier's deployment a policy without one, or none") in found


def test_a_policy_without_checks_and_a_bad_list_are_reported() -> None:
    found = problems(config({"blocklists": {"words": {"terms": [" "], "patterns": ["[z-a]"]}},
                             "policies": {"empty": {"stream_hold_back": 10}}}))
    assert "  safety.blocklists.words.terms[0]: is empty; give a word or phrase, or remove it" in found
    assert any(p.startswith("  safety.blocklists.words.patterns[0]: is not a valid regular expression") for p in found)
    assert "  safety.policies.empty: has no checks; list some under input: or output:, or remove the policy" in found


def test_the_stream_window_must_hold_the_longest_finding_of_several_words() -> None:
    found = problems(config({"policies": {"p": {
        "output": [{"check": "pii", "action": "redact", "entities": ["email", "iban"]},
                   {"check": "blocklist", "action": "block", "terms": ["a rather long forbidden phrase indeed", "x"]}],
        "stream_hold_back": 20}}}))
    assert found == ["  safety.policies.p.stream_hold_back: must be at least 42 characters for the output checks "
                     "(their longest finding of several words), got 20; raise it or remove the key for the "
                     "default, 64"]
    emails_only = {"output": [{"check": "pii", "action": "redact", "entities": ["email", "secret"]}],
                   "stream_hold_back": 0}  # single words: held whole whatever the window
    assert parse_settings(config({"policies": {"p": emails_only}}), {}).safety.policies["p"].stream_hold_back == 0


def first_yaml_block(path: Path, heading: str) -> str:
    """The first YAML example under ``heading`` of a document, as a reader copies it."""
    text = path.read_text()
    section = text[text.index(heading):]
    start = section.index("```yaml\n") + 8
    return section[start:section.index("```", start)]


@pytest.mark.parametrize(("doc", "heading"), [("docs/safety.md", "## Configure"), ("docs/safety.md", "## Moderation"),
                                              ("README.md", "## Content safety")])
def test_the_documented_examples_load(doc: str, heading: str) -> None:
    example = first_yaml_block(Path(__file__).parents[2] / doc, heading)
    providers = {"openai": {"type": "openai", "api_key": "k"}, "anthropic": {"type": "anthropic", "api_key": "k"}}
    settings = parse_settings({"providers": providers, **yaml.safe_load(example)}, {})
    assert settings.deployments["chat"].safety == "standard"
    assert settings.safety.policies["standard"].input and settings.safety.policies["standard"].output

"""The scorers on answers whose right score is known; ``make_scorers`` names what it cannot make."""

from __future__ import annotations

from typing import Any

import pytest

from modelgate.evals.dataset import Item
from modelgate.evals.scorers import (
    Answer,
    Contains,
    Exact,
    JSONSchema,
    Judge,
    Numeric,
    Regex,
    ScorerError,
    Similarity,
    ToolCall,
    make_scorers,
)


def item(**fields: Any) -> Item:
    return Item(index=0, id="i", messages=[{"role": "user", "content": "What is it?"}], **fields)


async def score(scorer: Any, answer: str, **fields: Any) -> tuple[float | None, bool | None, str]:
    found = await scorer.score(item(**fields), Answer(text=answer))
    return found.score, found.passed, found.detail


async def test_exact_and_normalised() -> None:
    assert await score(Exact(), "Paris", expected="Paris") == (1.0, True, "exact")
    assert await score(Exact(), "  paris. ", expected="Paris") == (1.0, True, "normalised")
    assert (await score(Exact(), "Lyon", expected="Paris"))[:2] == (0.0, False)
    assert (await score(Exact(), "Paris"))[:2] == (None, None)  # nothing to compare with: not a failure


async def test_contains_regex_numeric() -> None:
    assert (await score(Contains(), "It is PARIS, of course", expected="paris"))[:2] == (1.0, True)
    assert (await score(Contains(), "Lyon", expected="paris"))[:2] == (0.0, False)
    assert (await score(Regex(), "Order #12345 shipped", expected=r"#\d{5}\b"))[:2] == (1.0, True)
    assert (await score(Regex(), "no order", expected=r"#\d{5}"))[:2] == (0.0, False)
    assert (await score(Regex(), "x", expected="("))[0] is None  # not a pattern: said, not failed
    assert (await score(Numeric(), "First 3, then the answer is 1,234.5", expected=1234.5))[:2] == (1.0, True)
    assert (await score(Numeric(), "about 3.2", expected=3.14159, tolerance=0.1))[:2] == (1.0, True)
    assert (await score(Numeric(), "about 3.3", expected=3.14159, tolerance=0.1))[:2] == (0.0, False)
    assert (await score(Numeric(), "none", expected=3))[:2] == (0.0, False)
    assert (await score(Numeric(), "3", expected="three"))[0] is None


async def test_json_schema() -> None:
    form = {"type": "json_schema", "json_schema": {"name": "p", "schema": {
        "type": "object", "required": ["age"], "properties": {"age": {"type": "integer", "minimum": 0}}}}}
    assert (await score(JSONSchema(), '{"age": 3}', response_format=form))[:2] == (1.0, True)
    failed = await score(JSONSchema(), '{"age": -1}', response_format=form)
    assert failed[:2] == (0.0, False) and "minimum" in failed[2]
    assert (await score(JSONSchema(), "not json", response_format=form))[:2] == (0.0, False)
    assert (await score(JSONSchema(), "{}", response_format={"type": "json_object"}))[:2] == (1.0, True)
    assert (await score(JSONSchema(), "{}"))[0] is None


async def test_tool_call() -> None:
    want = {"name": "get_weather", "arguments": {"city": "Paris"}}
    right = Answer(text="", tool_calls=[{"name": "get_weather", "arguments": '{"city": "Paris"}'}])
    wrong_args = Answer(text="", tool_calls=[{"name": "get_weather", "arguments": '{"city": "Rome"}'}])
    wrong_name = Answer(text="", tool_calls=[{"name": "get_time", "arguments": "{}"}])
    assert (await ToolCall().score(item(expected_json=want), right)).passed is True
    assert (await ToolCall().score(item(expected_json=want), wrong_args)).passed is False
    assert (await ToolCall().score(item(expected_json=want), wrong_name)).passed is False
    assert (await ToolCall().score(item(expected_json=want), Answer(text="sunny"))).detail == "no tool call"


async def test_judge_and_similarity_ask_their_deployment() -> None:
    asked: list[dict[str, Any]] = []

    async def ask(deployment: str, body: dict[str, Any]) -> tuple[str, float]:
        asked.append(body)
        return 'Here: {"score": 7, "reasoning": "close"}', 0.002

    judged = await Judge(ask, "grader").score(item(rubric="names the capital", expected="Paris"), Answer(text="Paris"))
    assert (judged.score, judged.passed, judged.detail, judged.price) == (0.7, True, "close", 0.002)
    prompt = asked[0]["messages"][0]["content"]
    assert "names the capital" in prompt and "Reference answer: Paris" in prompt and "Answer to grade: Paris" in prompt
    assert asked[0]["response_format"]["type"] == "json_schema" and asked[0]["model"] == "grader"

    async def babble(deployment: str, body: dict[str, Any]) -> tuple[str, float]:
        return "I think it is fine", 0.001

    unsure = await Judge(babble, "grader").score(item(), Answer(text="x"))
    assert unsure.score is None and "not a grade" in unsure.detail and unsure.price == 0.001

    async def embed(deployment: str, texts: list[str]) -> tuple[list[list[float]], float]:
        return [[1.0, 0.0] if "Paris" in t else [0.6, 0.8] for t in texts], 0.0001

    same = await Similarity(embed, "e").score(item(expected="Paris"), Answer(text="Paris, France"))
    other = await Similarity(embed, "e").score(item(expected="Paris"), Answer(text="Rome"))
    assert (same.score, same.passed) == (1.0, True) and (other.score, other.passed) == (0.6, False)


def test_make_scorers_names_what_it_cannot_make() -> None:
    async def ask(deployment: str, body: dict[str, Any]) -> tuple[str, float]:
        raise AssertionError("not asked")

    async def embed(deployment: str, texts: list[str]) -> tuple[list[list[float]], float]:
        raise AssertionError("not asked")

    made = make_scorers(["exact", "judge:g", "similarity:e"], ask, embed, ["g", "e"])
    assert [s.name for s in made] == ["exact", "judge", "similarity"]
    for specs, said in ((["judge"], "judge:DEPLOYMENT"), (["judge:nope"], "not a deployment"),
                        (["colour"], "unknown scorer 'colour'"), (["exact:x"], "unknown scorer")):
        with pytest.raises(ScorerError, match=said):
            make_scorers(specs, ask, embed, ["g", "e"])

"""Scorers: each gives an answer a score from 0 to 1 and says whether it passes.

A scorer is one class with a ``name`` and an async ``score(item, answer)``; ``SCORERS`` names the
built-in ones, and ``make_scorers`` builds them from the command line's ``--scorers`` (``judge:NAME``
and ``similarity:NAME`` name the deployment they ask). Adding one is a class and a line in
``SCORERS``. A scorer that cannot score an item (no ``expected`` to compare with) says so in its
detail and gives None: it is left out of that item's averages, never counted as a failure.

    exact        the answer equals ``expected`` (1), or does once case, spacing and punctuation at
                 the ends are set aside (also passes, "normalised")
    contains     ``expected`` appears in the answer, whatever the case
    regex        ``expected`` is a pattern the answer matches (re.search)
    numeric      the last number in the answer is within ``tolerance`` of ``expected``
    json_schema  the answer is JSON valid against the item's ``response_format`` schema
    tool_call    the first tool call has ``expected_json``'s name and arguments
    similarity   cosine similarity of the answer's and ``expected``'s embeddings, by an
                 embeddings deployment (a local sentence-embedding model: offline)
    judge        a deployment scores the answer by the item's ``rubric`` (0 to 10, with its
                 reasons, as a JSON object it must return); its own cost is recorded
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from jsonschema.exceptions import SchemaError, best_match
from jsonschema.validators import validator_for

from modelgate.evals.dataset import Item

PASS = 0.5  # a score at least this passes, for scorers whose score is not 0 or 1


@dataclass(slots=True, kw_only=True)
class Answer:
    text: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"name", "arguments"} (arguments JSON text)


@dataclass(slots=True, kw_only=True)
class Score:
    score: float | None  # 0..1; None: this scorer has nothing to score this item by
    passed: bool | None
    detail: str = ""
    price: float = 0.0  # what scoring it was charged (a judge's call)

    def json(self) -> dict[str, Any]:
        return {"score": self.score, "passed": self.passed, "detail": self.detail}


# What a scorer that asks a deployment is given: ask(deployment, body) → (the answer's text, what it
# was charged), body being a Chat Completions request.
Ask = Callable[[str, dict[str, Any]], Awaitable[tuple[str, float]]]
Embed = Callable[[str, list[str]], Awaitable[tuple[list[list[float]], float]]]


class Scorer(Protocol):
    name: str

    async def score(self, item: Item, answer: Answer) -> Score: ...


def _none(why: str) -> Score:
    return Score(score=None, passed=None, detail=why)


def _result(ok: bool, detail: str = "") -> Score:
    return Score(score=1.0 if ok else 0.0, passed=ok, detail=detail)


_EDGES = " \t\n\r.,;:!?\"'`()[]{}"


def normalised(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(folded.split()).strip(_EDGES)


class Exact:
    name = "exact"

    async def score(self, item: Item, answer: Answer) -> Score:
        if item.expected is None:
            return _none("no expected answer")
        want = str(item.expected)
        if answer.text.strip() == want.strip():
            return _result(True, "exact")
        if normalised(answer.text) == normalised(want):
            return _result(True, "normalised")
        return _result(False, f"expected {want[:80]!r}")


class Contains:
    name = "contains"

    async def score(self, item: Item, answer: Answer) -> Score:
        if item.expected is None:
            return _none("no expected answer")
        found = normalised(str(item.expected)) in normalised(answer.text)
        return _result(found, "" if found else f"{str(item.expected)[:80]!r} not in the answer")


class Regex:
    name = "regex"

    async def score(self, item: Item, answer: Answer) -> Score:
        if item.expected is None:
            return _none("no pattern in expected")
        try:
            pattern = re.compile(str(item.expected))
        except re.error as error:
            return _none(f"expected is not a regular expression ({error})")
        found = pattern.search(answer.text) is not None
        return _result(found, "" if found else f"no match for {pattern.pattern[:80]!r}")


_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


class Numeric:
    name = "numeric"

    async def score(self, item: Item, answer: Answer) -> Score:
        try:
            want = float(item.expected)
        except (TypeError, ValueError):
            return _none("expected is not a number")
        numbers = [m.group().replace(",", "") for m in _NUMBER.finditer(answer.text)]
        if not numbers:
            return _result(False, "no number in the answer")
        try:
            got = float(numbers[-1])
        except ValueError:
            return _result(False, f"{numbers[-1]!r} is not a number")
        tolerance = item.tolerance if item.tolerance is not None else 1e-6
        ok = math.isfinite(got) and abs(got - want) <= tolerance
        return _result(ok, f"{got:g}" + ("" if ok else f", expected {want:g} ± {tolerance:g}"))


class JSONSchema:
    name = "json_schema"

    async def score(self, item: Item, answer: Answer) -> Score:
        form = item.response_format or {}
        schema = (form.get("json_schema") or {}).get("schema") if form.get("type") == "json_schema" else None
        if form.get("type") not in ("json_schema", "json_object"):
            return _none("the item has no JSON response_format")
        try:
            value = orjson.loads(answer.text)
        except orjson.JSONDecodeError as error:
            return _result(False, f"not JSON ({error})")
        if schema is None:
            return _result(isinstance(value, dict), "" if isinstance(value, dict) else "not a JSON object")
        try:
            validator = validator_for(schema)(schema)
        except (TypeError, SchemaError) as error:
            return _none(f"the item's schema is not a JSON Schema ({error})")
        problem = best_match(validator.iter_errors(value))
        if problem is None:
            return _result(True)
        where = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in problem.absolute_path)
        return _result(False, f"{where}: {problem.message[:200]}")


class ToolCall:
    name = "tool_call"

    async def score(self, item: Item, answer: Answer) -> Score:
        want = item.expected_json
        if not isinstance(want, dict) or "name" not in want:
            return _none("no expected_json {name, arguments}")
        if not answer.tool_calls:
            return _result(False, "no tool call")
        call = answer.tool_calls[0]
        if call.get("name") != want["name"]:
            return _result(False, f"called {call.get('name')!r}, expected {want['name']!r}")
        if "arguments" not in want:
            return _result(True, "name")
        try:
            got = orjson.loads(call.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            return _result(False, "the arguments are not JSON")
        ok = got == want["arguments"]
        return _result(ok, "" if ok else f"arguments {orjson.dumps(got).decode()[:120]}")


class Similarity:
    """Cosine similarity of embeddings; passes from ``threshold`` (0.8)."""

    name = "similarity"

    def __init__(self, embed: Embed, deployment: str, threshold: float = 0.8) -> None:
        self.embed, self.deployment, self.threshold = embed, deployment, threshold

    async def score(self, item: Item, answer: Answer) -> Score:
        if item.expected is None:
            return _none("no expected answer")
        if not answer.text.strip():
            return Score(score=0.0, passed=False, detail="empty answer")
        vectors, price = await self.embed(self.deployment, [answer.text, str(item.expected)])
        a, b = vectors
        norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
        cosine = sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0
        value = max(0.0, min(1.0, cosine))
        return Score(score=value, passed=value >= self.threshold, detail=f"cosine {cosine:.3f}", price=price)


JUDGE_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["score", "reasoning"],
                "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 10},
                               "reasoning": {"type": "string"}}}
JUDGE_PROMPT = """You grade an answer to a question by a rubric. Reply with a JSON object only:
{{"score": an integer from 0 (fails the rubric entirely) to 10 (meets it fully), "reasoning": "one or two sentences"}}.

Rubric: {rubric}

Question: {question}
{reference}
Answer to grade: {answer}"""


class Judge:
    """A deployment grades the answer by the item's rubric (else: correct and helpful), 0 to 10."""

    name = "judge"

    def __init__(self, ask: Ask, deployment: str) -> None:
        self.ask, self.deployment = ask, deployment

    async def score(self, item: Item, answer: Answer) -> Score:
        rubric = item.rubric or "The answer is correct, complete and to the point."
        reference = f"Reference answer: {item.expected}\n" if item.expected is not None else ""
        prompt = JUDGE_PROMPT.format(rubric=rubric, question=item.question, reference=reference,
                                     answer=answer.text or "(no text; tool calls: "
                                     + orjson.dumps(answer.tool_calls).decode() + ")")
        body = {"model": self.deployment, "messages": [{"role": "user", "content": prompt}], "temperature": 0,
                "response_format": {"type": "json_schema",
                                    "json_schema": {"name": "grade", "schema": JUDGE_SCHEMA, "strict": True}}}
        text, price = await self.ask(self.deployment, body)
        grade = _grade(text)
        if grade is None:
            return Score(score=None, passed=None, detail=f"the judge's reply is not a grade: {text[:120]!r}",
                         price=price)
        points, reasoning = grade
        value = points / 10
        return Score(score=value, passed=value >= PASS, detail=reasoning[:500], price=price)


def _grade(text: str) -> tuple[int, str] | None:
    """The judge's {"score", "reasoning"}: the JSON object in its reply (a judge may wrap it)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = orjson.loads(text[start:end + 1])
    except orjson.JSONDecodeError:
        return None
    points = data.get("score") if isinstance(data, dict) else None
    if not isinstance(points, int | float) or isinstance(points, bool) or not 0 <= points <= 10:
        return None
    return round(points), str(data.get("reasoning", ""))


SCORERS: dict[str, type[Any]] = {"exact": Exact, "contains": Contains, "regex": Regex, "numeric": Numeric,
                                 "json_schema": JSONSchema, "tool_call": ToolCall}
ASKING = {"judge": Judge, "similarity": Similarity}


class ScorerError(ValueError):
    """A --scorers entry that names no scorer, or a deployment-asking one without its deployment."""


def make_scorers(specs: Sequence[str], ask: Ask, embed: Embed, deployments: Sequence[str]) -> list[Scorer]:
    """The scorers ``specs`` name (``judge:NAME`` and ``similarity:NAME`` with the deployment each
    asks, one of ``deployments``)."""
    made: list[Scorer] = []
    for spec in specs:
        name, _, deployment = spec.partition(":")
        if name in SCORERS and not deployment:
            made.append(SCORERS[name]())
        elif name in ASKING:
            if not deployment:
                raise ScorerError(f"{name} needs the deployment it asks: {name}:DEPLOYMENT")
            if deployment not in deployments:
                raise ScorerError(f"{spec}: {deployment!r} is not a deployment of the config")
            made.append(Judge(ask, deployment) if name == "judge" else Similarity(embed, deployment))
        else:
            known = [*SCORERS, *(f"{n}:DEPLOYMENT" for n in ASKING)]
            raise ScorerError(f"unknown scorer {spec!r}; use some of {', '.join(known)}")
    return made

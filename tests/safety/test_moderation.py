"""The moderation check's pieces that need no gateway: scores read as severities, a judge's
answer read strictly, and where a stream's text is cut to be judged."""

from __future__ import annotations

import pytest

from modelgate.safety.moderated import MAX_UNJUDGED, _judgeable
from modelgate.safety.moderation import ModerationCheck, ModerationFailed, parse_judgement, severities_from_scores


@pytest.mark.parametrize(("score", "severity"), [
    (0.0, "safe"), (0.19, "safe"), (0.2, "low"), (0.49, "low"), (0.5, "medium"), (0.79, "medium"), (0.8, "high"),
    (1.0, "high"),
])
def test_scores_are_read_as_severities_by_documented_bounds(score: float, severity: str) -> None:
    assert severities_from_scores({"violence": score})["violence"] == severity


def test_each_category_is_the_highest_of_its_openai_categories() -> None:
    judged = severities_from_scores({"harassment/threatening": 0.9, "self-harm/intent": 0.6, "sexual/minors": 0.3,
                                     "violence": 0.01, "illicit": 0.99})
    assert judged == {"hate": "high", "sexual": "low", "violence": "safe", "self_harm": "medium"}


def test_a_judgement_of_the_rubric_shape_is_read() -> None:
    answer = '  {"hate": "low", "sexual": "safe", "violence": "high", "self_harm": "medium"}\n'
    assert parse_judgement(answer) == {"hate": "low", "sexual": "safe", "violence": "high", "self_harm": "medium"}


@pytest.mark.parametrize(("answer", "problem"), [
    ("Everything looks safe to me.", "is not JSON"),
    ('```json\n{"hate": "safe"}\n```', "is not JSON"),
    ('["safe", "safe", "safe", "safe"]', "not an object of exactly hate, sexual, violence, self_harm"),
    ('{"hate": "safe", "sexual": "safe", "violence": "safe"}', "not an object of exactly"),
    ('{"hate": "safe", "sexual": "safe", "violence": "safe", "self_harm": "safe", "spam": "high"}',
     "not an object of exactly"),
    ('{"hate": "none", "sexual": "safe", "violence": 3, "self_harm": "safe"}',
     "gave hate, violence a severity other than safe, low, medium, high"),
])
def test_any_other_judgement_is_a_failure_naming_what_is_wrong(answer: str, problem: str) -> None:
    with pytest.raises(ModerationFailed, match=problem):
        parse_judgement(answer)


def test_a_check_finds_its_categories_from_its_severity() -> None:
    check = ModerationCheck("guard", ("hate", "violence"), "medium", "block", "standard")
    assert check.found({"hate": "medium", "sexual": "high", "violence": "low", "self_harm": "safe"}) == ["hate"]


def test_a_stream_is_judged_up_to_its_last_sentence_end_or_a_bounded_length() -> None:
    assert _judgeable("One sentence. And half of a") == len("One sentence.")
    assert _judgeable("Is it? Yes! Done.\nNext") == len("Is it? Yes! Done.")
    assert _judgeable("No end yet, version 1.2 is out") == 0  # a point inside a number ends nothing
    long = "word " * (MAX_UNJUDGED // 5 + 1)
    assert _judgeable(long) == len(long)  # cut after the last space once the window is full

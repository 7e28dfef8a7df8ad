"""The simulator's /v1/moderations through the official SDK: keyword-driven, reproducible scores."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from modelgate.simulator import SimConfig, SimulatorThread
from tests.openai_spec import OpenAISpec


@pytest.fixture(scope="module")
def sim() -> Iterator[openai.OpenAI]:
    config = SimConfig.from_dict({"api_key": "sk-sim", "models": {"judge": {"judge": True}}})
    with SimulatorThread(config) as running, openai.OpenAI(base_url=f"{running.base_url}/v1", api_key="sk-sim",
                                                           max_retries=0) as client:
        yield client


def test_scores_follow_the_keywords_and_repeat(sim: openai.OpenAI, openai_spec: OpenAISpec) -> None:
    first = sim.moderations.create(model="omni-moderation-latest", input=["Murdering time", "A calm day", "idiots"])
    again = sim.moderations.create(model="omni-moderation-latest", input=["Murdering time", "A calm day", "idiots"])
    assert [r.category_scores for r in first.results] == [r.category_scores for r in again.results]
    murder, calm, insult = first.results
    assert murder.flagged and murder.categories.violence and murder.category_scores.violence == 0.95
    assert not calm.flagged and max(calm.category_scores.model_dump(by_alias=True).values()) == 0.0001
    assert insult.categories.harassment and insult.category_scores.harassment == 0.55
    openai_spec.validate("CreateModerationResponse", first.model_dump(mode="json", by_alias=True))


def test_a_judge_model_answers_the_severities_as_json(sim: openai.OpenAI) -> None:
    completion = sim.chat.completions.create(model="judge", messages=[
        {"role": "system", "content": "Rate the text."}, {"role": "user", "content": "They are vermin with a weapon"}])
    assert completion.choices[0].message.content == (
        '{"hate":"high","sexual":"safe","violence":"medium","self_harm":"safe"}')


def test_input_that_is_not_text_is_refused(sim: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sim.moderations.create(model="omni-moderation-latest", input=[])
    assert caught.value.param == "input"

"""A real model as the moderation judge: SmolLM2-135M served by a local deployment, its answer held
to the rubric's JSON schema by the engine's grammar, so that even a model this small gives a
judgement the check can read (what it judges is not the point here: that the path works is)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from modelgate.config.safety import CATEGORIES, SEVERITIES
from modelgate.simulator import SimConfig, SimulatorThread
from tests.support import RunningGateway, gateway_in_thread

MASTER = "mk-local-judge"


@pytest.fixture(scope="module")
def gateway(smollm2_gguf: Path) -> Iterator[RunningGateway]:
    with SimulatorThread(SimConfig.from_dict({"api_key": "sk-sim"})) as sim:
        config = {
            "master_key": MASTER,
            "providers": {"local": {"type": "local"},
                          "openai": {"type": "openai", "base_url": f"{sim.base_url}/v1", "api_key": "sk-sim"}},
            "safety": {"policies": {"judged": {"input": [
                {"check": "moderation", "action": "annotate", "deployment": "judge"}], "on_error": "block"}}},
            "deployments": [
                {"name": "judge", "provider": "local", "model": str(smollm2_gguf), "context_window": 2048,
                 "timeout": 60},
                {"name": "chat", "provider": "openai", "model": "gpt-4o", "safety": "judged"},
            ],
        }
        with gateway_in_thread(config) as running:
            yield running


def test_a_local_judge_gives_a_judgement_the_check_reads(gateway: RunningGateway) -> None:
    with openai.OpenAI(base_url=gateway.v1, api_key=MASTER, max_retries=0, timeout=120) as client:
        completion = client.chat.completions.create(model="chat", messages=[
            {"role": "user", "content": "How do I bake bread at home?"}])
        results = (completion.model_extra or {})["prompt_filter_results"][0]["content_filter_results"]
        # Under on_error: block, an unreadable judgement would have refused the request.
        assert completion.choices[0].finish_reason == "stop" and "error" not in results
        assert set(results) == set(CATEGORIES)
        assert all(r["severity"] in SEVERITIES and r["filtered"] is False for r in results.values())
        (answer,) = client.moderations.create(model="chat", input="How do I bake bread at home?").results
        assert {answer.category_scores.hate, answer.category_scores.violence} <= {0.0, 0.2, 0.5, 0.8}

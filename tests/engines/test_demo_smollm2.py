"""`modelgate serve --demo` serves SmolLM2 as deployment smollm2 where the local extra is installed,
and says how to add it where it is not."""

from __future__ import annotations

import openai
import pytest

from modelgate.demo import LOCAL_EXTRA, demo_settings, print_demo_help
from tests.engines.conftest import engine_children
from tests.support import gateway_process


def test_the_demo_answers_from_smollm2(smollm2: str) -> None:
    with gateway_process(args=["--demo"]) as gateway:
        client = openai.OpenAI(base_url=gateway.v1, api_key="demo", max_retries=0)
        assert {"smollm2", "gpt-4o"} <= {m.id for m in client.models.list()}
        answer = client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=16, temperature=0)
        assert answer.choices[0].message.content and answer.usage is not None
        assert gateway.said("A real model runs here too, SmolLM2-135M-Instruct")
    assert not engine_children()


def test_without_the_model_the_demo_says_how_to_add_it(capsys: pytest.CaptureFixture[str]) -> None:
    # What the demo does where smollm2_path() finds no model (the local extra is not installed).
    assert "smollm2" not in demo_settings("http://127.0.0.1:9", None).deployments
    print_demo_help("127.0.0.1", 4000, None)
    assert f"To run a real model here too (SmolLM2-135M-Instruct on this machine's CPU, deployment smollm2):\n" \
           f"  {LOCAL_EXTRA}" in capsys.readouterr().out

"""The moderation check through the official SDK, on real sockets, against the simulator.

The simulator scores harm by keywords ("murder" violence 0.95, "vermin" hate 0.85, "weapon"
violence 0.6, "fight" violence 0.3): its ``/v1/moderations`` for deployments of ``type: openai``,
and, for a deployment of another type (Azure here), a chat model that answers the rubric's JSON
with the same scores read as severities. Its chat answer repeats the prompt's first words, so a
prompt carries what the answer will.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
from openai.types import ModerationTextInputParam

from modelgate.simulator import SimConfig, SimulatorThread
from tests.openai_spec import OpenAISpec
from tests.support import RunningGateway, anthropic_client, gateway_in_thread, wait_until

MASTER = "mk-moderation"
SAFE = {"filtered": False, "severity": "safe"}


def moderation(deployment: str, **check: Any) -> dict[str, Any]:
    return {"check": "moderation", "action": "block", "deployment": deployment, **check}


SAFETY = {"policies": {
    # The classifier is OpenAI's moderations endpoint (the simulator's).
    "scored": {"input": [moderation("guard", severity="medium")]},
    # The classifier is a chat model asked as a judge (an Azure deployment: no /moderations there).
    "judged": {"input": [moderation("judge", categories=["hate", "violence"], severity="high")]},
    "judged_output": {"output": [moderation("judge", severity="medium")], "stream_hold_back": 16},
    # A judge whose answer is not the rubric's JSON: a check that fails.
    "failing_blocks": {"input": [moderation("babbler")], "on_error": "block"},
    "failing_allows": {"input": [moderation("babbler")], "on_error": "allow"},
    "annotated": {"input": [moderation("guard", action="annotate", severity="low")]},
}}


@pytest.fixture(scope="module")
def gateway() -> Iterator[RunningGateway]:
    sim_config = SimConfig.from_dict({"api_key": "sk-sim", "models": {
        "guard-judge": {"judge": True}, "guard-babbler": {"reply": "I would rather not say."}}})
    with SimulatorThread(sim_config) as sim:
        config = {
            "master_key": MASTER,
            "providers": {
                "openai": {"type": "openai", "base_url": f"{sim.base_url}/v1", "api_key": "sk-sim"},
                "azure": {"type": "azure", "base_url": sim.base_url, "api_key": "sk-sim", "api_version": "2024-10-21"},
            },
            "safety": SAFETY,
            "deployments": [
                {"name": "guard", "provider": "openai", "model": "omni-moderation-latest"},
                {"name": "judge", "provider": "azure", "model": "guard-judge"},
                {"name": "babbler", "provider": "azure", "model": "guard-babbler"},
                *({"name": name, "provider": "openai", "model": "gpt-4o", "safety": name}
                  for name in SAFETY["policies"]),
            ],
        }
        with gateway_in_thread(config) as running:
            yield running


@pytest.fixture(scope="module")
def client(gateway: RunningGateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.v1, api_key=MASTER, max_retries=0) as sdk:
        yield sdk


def ask(client: openai.OpenAI, model: str, text: str) -> Any:
    return client.chat.completions.create(model=model, messages=[
        {"role": "system", "content": "You answer briefly."}, {"role": "user", "content": text}])


def refusal(client: openai.OpenAI, model: str, text: str) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, model, text)
    return caught.value


# --- the moderations endpoint of an OpenAI-type provider ------------------------------------------

def test_a_prompt_scored_high_is_refused_with_the_azure_shaped_400(client: openai.OpenAI) -> None:
    error = refusal(client, "scored", "Tell me how to murder the neighbour's dog")
    assert error.status_code == 400 and error.code == "content_filter" and error.param == "prompt"
    assert isinstance(error.body, dict)
    assert error.body["innererror"] == {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
        "hate": SAFE, "sexual": SAFE, "violence": {"filtered": True, "severity": "high"}, "self_harm": SAFE}}
    assert "content policy 'scored'" in error.message and "moderation (violence)" in error.message


def test_a_prompt_below_the_severity_passes_and_is_annotated(client: openai.OpenAI) -> None:
    completion = ask(client, "scored", "Who won the fight last night?")  # violence 0.3: low, below medium
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.model_extra or {})["prompt_filter_results"] == [{"prompt_index": 0, "content_filter_results": {
        "hate": SAFE, "sexual": SAFE, "violence": {"filtered": False, "severity": "low"}, "self_harm": SAFE}}]


def test_annotate_reports_without_refusing(client: openai.OpenAI) -> None:
    completion = ask(client, "annotated", "Is a kitchen knife a weapon?")  # violence 0.6: medium
    results = (completion.model_extra or {})["prompt_filter_results"][0]["content_filter_results"]
    assert results["violence"] == {"filtered": False, "severity": "medium"}
    assert completion.choices[0].message.content


def test_the_system_message_is_not_what_is_judged(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="scored", messages=[
        {"role": "system", "content": "Never help anyone murder anybody."},
        {"role": "user", "content": "What is the capital of France?"}])
    assert completion.choices[0].finish_reason == "stop"


# --- a chat model asked as a judge ----------------------------------------------------------------

def test_a_judge_deployment_refuses_what_it_rates_at_the_severity(client: openai.OpenAI) -> None:
    error = refusal(client, "judged", "They are vermin, all of them")
    assert isinstance(error.body, dict)
    assert error.body["innererror"]["content_filter_result"] == {
        "hate": {"filtered": True, "severity": "high"}, "violence": SAFE}


def test_a_judge_deployment_passes_what_it_rates_below_the_severity(client: openai.OpenAI) -> None:
    completion = ask(client, "judged", "Carry a weapon? No.")  # violence medium; this check acts from high
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.model_extra or {})["prompt_filter_results"][0]["content_filter_results"] == {
        "hate": SAFE, "violence": {"filtered": False, "severity": "medium"}}


def test_the_judged_answer_ends_with_content_filter(client: openai.OpenAI) -> None:
    completion = ask(client, "judged_output", "Explain why a weapon is dangerous")
    choice = completion.choices[0]
    assert choice.finish_reason == "content_filter" and not choice.message.content
    assert (choice.model_extra or {})["content_filter_results"]["violence"] == {"filtered": True, "severity": "medium"}
    clean = ask(client, "judged_output", "Explain why the sky is blue")
    assert clean.choices[0].finish_reason == "stop" and "sky is blue" in (clean.choices[0].message.content or "")
    assert (clean.choices[0].model_extra or {})["content_filter_results"] == {
        "hate": SAFE, "sexual": SAFE, "violence": SAFE, "self_harm": SAFE}


def test_a_streamed_answer_sends_no_byte_of_a_flagged_sentence(gateway: RunningGateway) -> None:
    body = {"model": "judged_output", "stream": True,
            "messages": [{"role": "user", "content": "Explain why a weapon is dangerous"}]}
    with httpx.stream("POST", f"{gateway.v1}/chat/completions", json=body,
                      headers={"authorization": f"Bearer {MASTER}"}, timeout=30) as response:
        assert response.status_code == 200
        data = b"".join(response.iter_raw())
    assert b"weapon" not in data
    chunks = [orjson.loads(line[6:]) for line in data.split(b"\n") if line.startswith(b"data: {")]
    finishes = [c["finish_reason"] for chunk in chunks for c in chunk["choices"] if c.get("finish_reason")]
    assert finishes == ["content_filter"]


def test_a_streamed_clean_answer_comes_whole_a_sentence_at_a_time(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="judged_output", stream=True,
                                            messages=[{"role": "user", "content": "Explain why the sky is blue"}])
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    # Two sentences, each sent whole once judged.
    assert pieces[0] == "Simulated reply from gpt-4o to: Explain why the sky is blue."
    assert len(pieces) == 2 and pieces[1].startswith(" ") and pieces[1].endswith(".") and ". " not in pieces[1]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


def test_the_anthropic_surface_refuses_and_ends_with_refusal(gateway: RunningGateway) -> None:
    with anthropic_client(gateway, MASTER) as claude:
        with pytest.raises(anthropic.BadRequestError) as caught:
            claude.messages.create(model="scored", max_tokens=50,
                                   messages=[{"role": "user", "content": "How to murder a rival"}])
        assert "content policy 'scored'" in caught.value.message
        with claude.messages.stream(model="judged_output", max_tokens=50, messages=[
                {"role": "user", "content": "Explain why a weapon is dangerous"}]) as stream:
            streamed = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert final.stop_reason == "refusal" and "weapon" not in streamed


# --- a check that fails: the policy's on_error --------------------------------------------------

def test_an_unreadable_judgement_refuses_under_on_error_block(client: openai.OpenAI) -> None:
    error = refusal(client, "failing_blocks", "What is the capital of France?")
    assert error.code == "content_filter"
    assert "could not be checked by the moderation check of the content policy 'failing_blocks'" in error.message
    assert isinstance(error.body, dict)
    results = error.body["innererror"]["content_filter_result"]
    assert results["error"]["code"] == "content_filter_error"


def test_an_unreadable_judgement_passes_under_on_error_allow(client: openai.OpenAI) -> None:
    completion = ask(client, "failing_allows", "What is the capital of France?")
    assert completion.choices[0].finish_reason == "stop"
    results = (completion.model_extra or {})["prompt_filter_results"][0]["content_filter_results"]
    assert results["error"] == {"code": "content_filter_error",
                                "message": "The moderation check could not run; the content was passed unchecked."}


# --- POST /v1/moderations -----------------------------------------------------------------------

def test_moderations_are_answered_from_the_deployments_checks(client: openai.OpenAI, openai_spec: OpenAISpec) -> None:
    answer = client.moderations.create(model="scored", input=["How to murder a rival", "Hello there"])
    assert answer.model == "scored" and answer.id.startswith("modr-")
    flagged, clean = answer.results
    assert flagged.flagged and flagged.categories.violence and not flagged.categories.hate
    assert flagged.category_scores.violence == 0.8  # high, as the lowest score of that severity
    assert not clean.flagged and clean.category_scores.violence == 0.0
    openai_spec.validate("CreateModerationResponse", answer.model_dump(mode="json", by_alias=True))


def test_moderations_of_a_judged_policy_ask_the_judge(client: openai.OpenAI) -> None:
    (result,) = client.moderations.create(model="judged", input="They are vermin").results
    assert result.flagged and result.categories.hate and result.category_scores.hate == 0.8
    (calm,) = client.moderations.create(model="judged", input="Carry a weapon? No.").results
    assert not calm.flagged and calm.category_scores.violence == 0.5  # medium: below this check's high


def test_moderations_of_a_moderation_model_are_its_own_scores(client: openai.OpenAI) -> None:
    (result,) = client.moderations.create(model="guard", input="How to murder a rival").results
    assert result.flagged and result.categories.violence and result.category_scores.violence == 0.95


def test_moderations_refuse_what_cannot_answer_them_naming_the_fix(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as unsupported:
        client.moderations.create(model="judge", input="Hello")  # a chat model, with no moderation check
    assert unsupported.value.code == "model_not_supported" and "does not serve moderations" in unsupported.value.message
    with pytest.raises(openai.BadRequestError) as unnamed:
        client.moderations.create(input="Hello")
    assert unnamed.value.code == "missing_required_parameter" and unnamed.value.param == "model"
    with pytest.raises(openai.BadRequestError) as typed:
        parts: list[ModerationTextInputParam] = [{"type": "text", "text": "Hello"}]
        client.moderations.create(model="scored", input=parts)
    assert typed.value.param == "input" and "give a string or an array of strings" in typed.value.message
    with pytest.raises(openai.NotFoundError):
        client.moderations.create(model="nowhere", input="Hello")


def test_moderations_of_a_check_that_cannot_judge_are_an_upstream_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.moderations.create(model="failing_blocks", input="Hello")
    assert caught.value.status_code == 502 and caught.value.code == "moderation_failed"
    assert "the judge's answer is not JSON" in caught.value.message


def test_classifier_calls_are_metered_as_calls_of_their_own(client: openai.OpenAI, gateway: RunningGateway) -> None:
    ask(client, "scored", "Who won the fight last night?")
    ask(client, "judged", "Carry a weapon? No.")

    def usage() -> dict[str, Any]:
        answer = httpx.get(f"{gateway.base_url}/admin/usage", params={"group_by": "deployment,verdict"},
                           headers={"authorization": f"Bearer {MASTER}"}, timeout=10)
        assert answer.status_code == 200
        return {f"{row['deployment']}/{row['verdict']}": row for row in answer.json()["data"]}

    wait_until(lambda: {"guard/None", "judge/None", "scored/clean", "judged/clean"} <= set(usage()), 10,
               "the usage records of the classifier calls")
    rows = usage()
    assert rows["judge/None"]["input_tokens"] > 0 and rows["judge/None"]["output_tokens"] > 0  # the rubric, answered
    assert rows["scored/blocked:moderation"]["requests"] >= 1

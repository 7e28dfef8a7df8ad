"""The simulator's Responses API (``POST /v1/responses``, Azure's ``/openai/responses`` and
``/openai/v1/responses``): driven by the openai SDK, every body and event checked against the spec."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import openai
import pytest

from modelgate.simulator import SimulatorThread, count_tokens, message_tokens, tool_tokens
from tests.openai_spec import OpenAISpec
from tests.providers.responses_spec import check
from tests.simulator.conftest import API_KEY, post_json

REASONER = "o4-mini"  # thinks by default (config.DEFAULT_REASONING_MODELS)
PLAIN = "gpt-plain"
WEATHER: Any = {
    "type": "function", "name": "get_weather", "description": "Weather for a city", "strict": False,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
STATELESS: dict[str, Any] = {"store": False, "include": ["reasoning.encrypted_content"]}
SUMMARY: dict[str, Any] = {"reasoning": {"effort": "low", "summary": "auto"}}


def client(sim: SimulatorThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim.base_url}/v1", api_key=API_KEY, max_retries=0)


def create(sim: SimulatorThread, spec: OpenAISpec, **body: Any) -> dict[str, Any]:
    """A whole response, by plain HTTP, checked against the spec."""
    status, answer = post_json(f"{sim.base_url}/v1/responses", body, {"authorization": f"Bearer {API_KEY}"})
    assert status == 200, answer
    check(spec, "Response", answer)
    assert isinstance(answer, dict)
    return answer


def stream(sim: SimulatorThread, spec: OpenAISpec, path: str = "/v1/responses", headers: dict[str, str] | None = None,
           **body: Any) -> list[dict[str, Any]]:
    """The events of a streamed response, each checked against the spec, its ``event:`` line and its number."""
    request = urllib.request.Request(
        f"{sim.base_url}{path}", data=json.dumps({**body, "stream": True}).encode(), method="POST",
        headers={"content-type": "application/json", "authorization": f"Bearer {API_KEY}", **(headers or {})})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["content-type"] == "text/event-stream"
        raw = response.read().decode()
    events = []
    for frame in raw.split("\n\n"):
        if not frame:
            continue
        name, data = frame.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        check(spec, "ResponseStreamEvent", event)
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "[DONE]" not in raw
    return events


def kinds(events: list[dict[str, Any]]) -> list[str]:
    """Event types, a run of deltas of one kind shown once."""
    out: list[str] = []
    for event in events:
        if not (event["type"].endswith(".delta") and out and out[-1] == event["type"]):
            out.append(event["type"])
    return out


def test_a_text_answer_and_its_usage(sim_thread: SimulatorThread, openai_spec: OpenAISpec) -> None:
    answer = create(sim_thread, openai_spec, model=PLAIN, input="Hello there", instructions="Be brief.")
    [message] = answer["output"]
    assert (answer["status"], answer["object"], answer["model"]) == ("completed", "response", PLAIN)
    assert answer["id"].startswith("resp_") and message["id"].startswith("msg_")
    text = message["content"][0]["text"]
    assert text.startswith(f"Simulated reply from {PLAIN} to: Hello there.")
    # The estimator: instructions and the input message cost one message each; output its text.
    usage = answer["usage"]
    assert usage["input_tokens"] == message_tokens("Be brief.") + message_tokens("Hello there")
    assert usage["output_tokens"] == count_tokens(text)
    assert usage["output_tokens_details"]["reasoning_tokens"] == 0
    # The SDK reads it alike.
    sdk = client(sim_thread).responses.create(model=PLAIN, input="Hello there", instructions="Be brief.")
    assert sdk.output_text == text


def test_the_stream_of_a_text_answer(sim_thread: SimulatorThread, openai_spec: OpenAISpec) -> None:
    events = stream(sim_thread, openai_spec, model=PLAIN, input="Hello there")
    assert kinds(events) == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    assert events[0]["response"]["status"] == "in_progress" and "usage" not in events[0]["response"]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    final = events[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == text
    assert final["usage"]["output_tokens"] == count_tokens(text)
    whole = create(sim_thread, openai_spec, model=PLAIN, input="Hello there")
    assert whole["output"][0]["content"][0]["text"] == text  # streamed or not, the same reply


def test_reasoning_items_with_summary_and_encrypted_content(sim_thread: SimulatorThread,
                                                            openai_spec: OpenAISpec) -> None:
    answer = create(sim_thread, openai_spec, model=REASONER, input="Why is the sky blue?", **SUMMARY, **STATELESS)
    reasoning, message = answer["output"]
    summary = reasoning["summary"][0]["text"]
    assert summary == "The user wrote about Why is the sky blue. I should answer briefly and deterministically."
    assert reasoning["id"].startswith("rs_") and reasoning["encrypted_content"]
    assert answer["usage"]["output_tokens_details"]["reasoning_tokens"] == count_tokens(summary)
    assert answer["usage"]["output_tokens"] == count_tokens(summary) + count_tokens(message["content"][0]["text"])
    # Without reasoning.summary the item has no text; without include, no encrypted content.
    bare = create(sim_thread, openai_spec, model=REASONER, input="Why is the sky blue?")
    assert bare["output"][0]["summary"] == [] and "encrypted_content" not in bare["output"][0]
    assert bare["usage"]["output_tokens_details"]["reasoning_tokens"] == count_tokens(summary)

    events = stream(sim_thread, openai_spec, model=REASONER, input="Why is the sky blue?", **SUMMARY, **STATELESS)
    assert kinds(events)[2:9] == [
        "response.output_item.added", "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done", "response.output_item.done",
        "response.output_item.added"]
    assert "".join(e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta") == summary
    done = next(e["item"] for e in events if e["type"] == "response.output_item.done")
    assert done["encrypted_content"] == reasoning["encrypted_content"]  # the same text, the same token


def tool_turn(sim: SimulatorThread, spec: OpenAISpec, *, stream_it: bool = False) -> list[dict[str, Any]]:
    """A reasoning model's function call, as the input items a stateless client sends back."""
    body = {"model": REASONER, "input": "Weather in Oslo?", "tools": [WEATHER], **SUMMARY, **STATELESS}
    output = stream(sim, spec, **body)[-1]["response"]["output"] if stream_it else create(sim, spec, **body)["output"]
    assert [item["type"] for item in output] == ["reasoning", "function_call"]
    return [{"role": "user", "content": "Weather in Oslo?"},
            *({k: v for k, v in item.items() if k != "status"} for item in output),
            {"type": "function_call_output", "call_id": output[1]["call_id"], "output": "Sunny, 21C"}]


@pytest.mark.parametrize("stream_it", [False, True], ids=["whole", "stream"])
def test_a_tool_loop_round_trips_its_encrypted_reasoning(stream_it: bool, sim_thread: SimulatorThread,
                                                         openai_spec: OpenAISpec) -> None:
    items = tool_turn(sim_thread, openai_spec, stream_it=stream_it)
    call = items[2]
    assert json.loads(call["arguments"]).keys() == {"city"}
    answer = create(sim_thread, openai_spec, model=REASONER, input=items, tools=[WEATHER], **SUMMARY, **STATELESS)
    assert answer["output"][-1]["content"][0]["text"].startswith(
        f"Simulated reply from {REASONER} after the tool returned: Sunny, 21C.")
    # The estimator: the assistant turn (its function call) costs one message, the output another.
    assert answer["usage"]["input_tokens"] == (
        message_tokens("Weather in Oslo?") + message_tokens(f"get_weather {call['arguments']}")
        + message_tokens("Sunny, 21C") + tool_tokens("get_weather", WEATHER["description"], WEATHER["parameters"]))


def refusal(sim: SimulatorThread, items: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    return post_json(f"{sim.base_url}/v1/responses", {"model": REASONER, "input": items, "tools": [WEATHER],
                                                      **STATELESS}, {"authorization": f"Bearer {API_KEY}"})


def test_altered_or_lost_reasoning_is_refused(sim_thread: SimulatorThread, openai_spec: OpenAISpec) -> None:
    items = tool_turn(sim_thread, openai_spec)
    altered = [dict(item) for item in items]
    altered[1]["encrypted_content"] += "x"
    status, body = refusal(sim_thread, altered)
    assert (status, body["error"]["code"], body["error"]["param"]) == (
        400, "invalid_encrypted_content", "input[1].encrypted_content")
    # Dropped: the function call item it came with, sent back under its fc_ id, is refused without it...
    status, body = refusal(sim_thread, [items[0], *items[2:]])
    assert status == 400 and "without its required 'reasoning' item" in body["error"]["message"]
    # ...and taken without its id, as from a client that kept only the call_id (the model reasons afresh).
    status, body = refusal(sim_thread, [items[0], {k: v for k, v in items[2].items() if k != "id"}, items[3]])
    assert status == 200, body
    # Sent without its encrypted content: nothing is stored, so the item cannot be found.
    stripped = [dict(item) for item in items]
    del stripped[1]["encrypted_content"]
    status, body = refusal(sim_thread, stripped)
    assert status == 404 and "Items are not persisted when `store` is set to false" in body["error"]["message"]


def test_parallel_calls_stream_their_arguments(sim_thread: SimulatorThread, openai_spec: OpenAISpec) -> None:
    clock = {**WEATHER, "name": "get_time", "description": "The time"}
    events = stream(sim_thread, openai_spec, model=PLAIN, input="Call both in parallel please",
                    tools=[WEATHER, clock])
    calls = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [c["name"] for c in calls] == ["get_weather", "get_time"]
    for position, call in enumerate(calls):
        pieces = [e["delta"] for e in events
                  if e["type"] == "response.function_call_arguments.delta" and e["output_index"] == position]
        assert len(pieces) > 1 and "".join(pieces) == call["arguments"]
    assert events[-1]["response"]["status"] == "completed"


def test_the_sdk_streams_and_parses(sim_thread: SimulatorThread) -> None:
    with client(sim_thread).responses.stream(model=REASONER, input="Weather in Oslo?", tools=[WEATHER],
                                             **SUMMARY) as events:
        seen = [event.type for event in events]
        final = events.get_final_response()
    assert seen[0] == "response.created" and seen[-1] == "response.completed"
    assert [item.type for item in final.output] == ["reasoning", "function_call"]


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"stop": ["x"]}, "stop", "unknown_parameter"),
    ({"max_output_tokens": 5}, "max_output_tokens", "integer_below_min_value"),
    ({"tools": [{"type": "telepathy"}]}, "tools[0].type", "invalid_value"),
    ({"input": [{"type": "message", "role": "robot", "content": "hi"}]}, "input[0].role", None),
])
def test_bad_requests_are_refused_as_the_api_does(body: dict[str, Any], param: str, code: str | None,
                                                  sim_thread: SimulatorThread) -> None:
    status, answer = post_json(f"{sim_thread.base_url}/v1/responses", {"model": PLAIN, "input": "hi", **body},
                               {"authorization": f"Bearer {API_KEY}"})
    assert status == 400 and answer["error"]["param"] == param
    if code is not None:
        assert answer["error"]["code"] == code


def test_built_in_tools_are_accepted(sim_thread: SimulatorThread, openai_spec: OpenAISpec) -> None:
    answer = create(sim_thread, openai_spec, model=PLAIN, input="news?", tools=[{"type": "web_search"}])
    assert answer["output"][0]["type"] == "message" and answer["tools"] == [{"type": "web_search"}]


def test_a_cut_off_answer_is_incomplete(sim_thread: SimulatorThread, openai_spec: OpenAISpec) -> None:
    answer = create(sim_thread, openai_spec, model=PLAIN, input="Tell me a story", max_output_tokens=16)
    assert (answer["status"], answer["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})
    events = stream(sim_thread, openai_spec, model=PLAIN, input="Tell me a story", max_output_tokens=16)
    assert events[-1]["type"] == "response.incomplete"


# --- faults --------------------------------------------------------------------------------------


def test_status_faults_answer_in_the_openai_error_format(sim_thread: SimulatorThread) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client(sim_thread).responses.create(model=PLAIN, input="hi",
                                            extra_headers={"x-sim-fault": "status=429;retry_after=3"})
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.code == "rate_limit_exceeded"


def test_a_failure_mid_stream_is_an_error_event(sim_thread: SimulatorThread, openai_spec: OpenAISpec) -> None:
    events = stream(sim_thread, openai_spec, headers={"x-sim-fault": "error_after=5"}, model=PLAIN,
                    input="Hello there")
    assert [e["type"] for e in events[:5]][-1] == "response.output_text.delta"
    assert events[-1]["type"] == "error" and events[-1]["sequence_number"] == 5 and len(events) == 6
    assert events[-1]["code"] == "server_error"


def test_a_blocked_answer_is_incomplete_for_content_filter(sim_thread: SimulatorThread,
                                                           openai_spec: OpenAISpec) -> None:
    events = stream(sim_thread, openai_spec, headers={"x-sim-fault": "safety"}, model=PLAIN, input="hi")
    final = events[-1]["response"]
    assert (events[-1]["type"], final["incomplete_details"], final["output"]) == (
        "response.incomplete", {"reason": "content_filter"}, [])


def test_a_model_fault_renames_the_model_in_every_response_event(sim_thread: SimulatorThread,
                                                                 openai_spec: OpenAISpec) -> None:
    events = stream(sim_thread, openai_spec, headers={"x-sim-fault": "model=other-model"}, model=PLAIN, input="hi")
    assert {e["response"]["model"] for e in events if "response" in e} == {"other-model"}


# --- Azure -------------------------------------------------------------------------------------------


def test_azure_responses_on_both_layouts(sim_thread: SimulatorThread, openai_spec: OpenAISpec) -> None:
    azure = openai.AzureOpenAI(api_key=API_KEY, api_version="2025-04-01-preview", azure_endpoint=sim_thread.base_url,
                               max_retries=0)
    answer = azure.responses.create(model="my-deployment", input="hello azure")
    assert answer.output_text.startswith("Simulated reply from my-deployment to: hello azure.")
    v1 = openai.OpenAI(base_url=f"{sim_thread.base_url}/openai/v1", api_key="unused", max_retries=0,
                       default_headers={"api-key": API_KEY})
    assert v1.responses.create(model="my-deployment", input="hello azure").output_text == answer.output_text
    events = stream(sim_thread, openai_spec, path="/openai/v1/responses", headers={"api-key": API_KEY,
                    "x-sim-fault": "error_after=4"}, model="my-deployment", input="hello azure")
    assert events[-1]["type"] == "error"
    status, body = post_json(f"{sim_thread.base_url}/openai/responses", {"model": "d", "input": "hi"},
                             {"api-key": API_KEY})
    assert status == 400 and body["error"]["code"] == "MissingApiVersionParameter"

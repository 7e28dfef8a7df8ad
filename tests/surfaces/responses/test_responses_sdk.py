"""The official openai SDK's ``responses.*`` against the gateway over the simulator: text, tools,
structured output, streams, and the errors of bad requests.

Every response body and every stream event is validated against the official OpenAI spec.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from tests.openai_spec import OpenAISpec
from tests.support import RunningGateway
from tests.surfaces.responses.support import TIME, WEATHER, check_item_events, post, stream_events


def test_text_response(client: openai.OpenAI, gateway: RunningGateway, openai_spec: OpenAISpec) -> None:
    raw = client.responses.with_raw_response.create(model="gpt-4o", input="Tell me about the sea",
                                                    instructions="Be brief.", metadata={"run": "1"})
    response = raw.parse()
    assert response.object == "response" and response.status == "completed"
    assert response.output_text.startswith("Simulated reply from gpt-4o to: Tell me about the sea")
    assert response.id == "resp_" + raw.headers["x-request-id"].removeprefix("req_")
    assert raw.headers["x-modelgate-deployment"] == "gpt-4o" and raw.headers["x-modelgate-provider"] == "openai"
    (message,) = response.output
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert message.id.startswith("msg_")
    assert response.instructions == "Be brief." and response.metadata == {"run": "1"}
    usage = response.usage
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    body = post(gateway, {"model": "gpt-4o", "input": "Tell me about the sea", "temperature": 0.5, "top_p": 0.9,
                          "max_output_tokens": 500, "user": "u-1", "safety_identifier": "s-1",
                          "prompt_cache_key": "k-1", "service_tier": "auto", "truncation": "auto"}).json()
    openai_spec.validate("Response", body)
    assert body["output"][0]["content"][0]["text"].startswith("Simulated reply from gpt-4o to: Tell me about the sea")
    assert (body["temperature"], body["top_p"], body["max_output_tokens"]) == (0.5, 0.9, 500)
    assert (body["user"], body["safety_identifier"], body["prompt_cache_key"]) == ("u-1", "s-1", "k-1")
    assert (body["service_tier"], body["truncation"], body["store"]) == ("default", "auto", True)


def test_stream_event_sequence(client: openai.OpenAI, gateway: RunningGateway, openai_spec: OpenAISpec) -> None:
    whole = client.responses.create(model="gpt-4o", input="Tell me about the sea").output_text
    events = stream_events(post(gateway, {"model": "gpt-4o", "input": "Tell me about the sea", "stream": True}),
                           openai_spec)
    kinds = [e["type"] for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"} and len(kinds[4:-4]) > 3
    check_item_events(events)
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == whole
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["usage"]["output_tokens"] > 0
    assert final["id"] == events[0]["response"]["id"] and events[0]["response"]["status"] == "in_progress"
    with client.responses.stream(model="gpt-4o", input="Tell me about the sea") as stream:
        assert stream.get_final_response().output_text == whole


def test_tool_call_round_trip(client: openai.OpenAI, openai_spec: OpenAISpec, gateway: RunningGateway) -> None:
    question: list[Any] = [{"role": "user", "content": "What is the weather in Oslo?"}]
    first = client.responses.create(model="gpt-4o", input=question, tools=[WEATHER])  # type: ignore[list-item]
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"
    assert call.id and call.id.startswith("fc_") and call.call_id
    assert json.loads(call.arguments)["city"]
    history: list[Any] = [*question, call.model_dump(exclude_none=True),
                          {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 24 degrees"}]
    second = client.responses.create(model="gpt-4o", tools=[WEATHER], input=history)  # type: ignore[list-item]
    assert "Sunny, 24 degrees" in second.output_text
    openai_spec.validate("Response", post(gateway, {"model": "gpt-4o", "input": question, "tools": [WEATHER]}).json())


CRM: dict[str, Any] = {"type": "namespace", "name": "crm", "description": "The customer records",
                       "tools": [{**WEATHER, "name": "lookup", "description": "Find a customer"}]}


@pytest.mark.parametrize("model", ["gpt-4o", "claude"])
def test_namespace_tools_are_called_in_their_namespace(client: openai.OpenAI, gateway: RunningGateway,
                                                      openai_spec: OpenAISpec, model: str) -> None:
    """A namespace tool (Codex sends one) reaches every upstream as its functions, and a call of one
    comes back in its namespace, streamed and whole, and goes back again."""
    question: list[Any] = [{"role": "user", "content": "Find Ada"}]
    body = {"model": model, "input": question, "tools": [CRM, TIME]}
    first = post(gateway, body).json()
    openai_spec.validate("Response", first)
    (call,) = first["output"]
    assert (call["type"], call["namespace"], call["name"]) == ("function_call", "crm", "lookup")
    events = stream_events(post(gateway, {**body, "stream": True}), openai_spec)
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [(i["namespace"], i["name"]) for i in done] == [("crm", "lookup")]
    history = [*question, call, {"type": "function_call_output", "call_id": call["call_id"], "output": "Ada, 36"}]
    second = client.responses.create(model=model, tools=[CRM, TIME], input=history)  # type: ignore[list-item]
    assert "Ada, 36" in second.output_text


def test_streamed_parallel_tool_calls(gateway: RunningGateway, openai_spec: OpenAISpec) -> None:
    events = stream_events(post(gateway, {
        "model": "gpt-4o", "stream": True, "tools": [WEATHER, TIME],
        "input": "Use parallel calls for weather and time"}), openai_spec)
    check_item_events(events)
    final = events[-1]["response"]
    calls = [item for item in final["output"] if item["type"] == "function_call"]
    assert [c["name"] for c in calls] == ["get_weather", "get_time"]
    assert len({c["call_id"] for c in calls}) == 2
    for call in calls:
        deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"
                  and e["item_id"] == call["id"]]
        (done,) = [e for e in events if e["type"] == "response.function_call_arguments.done"
                   and e["item_id"] == call["id"]]
        assert "".join(deltas) == done["arguments"] == call["arguments"]
        assert isinstance(json.loads(call["arguments"]), dict)


class Weather(BaseModel):
    city: str
    degrees: int


def test_structured_output_with_parse(client: openai.OpenAI, gateway: RunningGateway,
                                      openai_spec: OpenAISpec) -> None:
    parsed = client.responses.parse(model="gpt-4o", input="Weather in Rome as JSON", text_format=Weather)
    assert isinstance(parsed.output_parsed, Weather)
    body = post(gateway, {"model": "gpt-4o", "input": "Hi", "text": {"format": {"type": "json_object"}}}).json()
    assert isinstance(json.loads(body["output"][0]["content"][0]["text"]), dict)
    assert body["text"]["format"] == {"type": "json_object"}
    openai_spec.validate("Response", body)


def test_max_output_tokens_makes_it_incomplete(client: openai.OpenAI, gateway: RunningGateway,
                                               openai_spec: OpenAISpec) -> None:
    response = client.responses.create(model="gpt-4o", input="Tell me about the sea", max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].type == "message" and response.output[0].status == "incomplete"
    events = stream_events(post(gateway, {"model": "gpt-4o", "input": "Tell me about the sea", "stream": True,
                                          "max_output_tokens": 16}), openai_spec)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_failure_mid_stream_ends_in_response_failed(gateway: RunningGateway, openai_spec: OpenAISpec) -> None:
    events = stream_events(post(gateway, {"model": "midstream", "input": "Tell me a long story", "stream": True}),
                           openai_spec)
    assert [e["type"] for e in events][:2] == ["response.created", "response.in_progress"]
    assert any(e["type"] == "response.output_text.delta" for e in events)
    last = events[-1]
    assert last["type"] == "response.failed"
    assert last["response"]["status"] == "failed" and last["response"]["error"]["message"]
    assert not any(e["type"] in ("response.completed", "response.incomplete") for e in events)


def test_the_sdk_stream_raises_nothing_but_reports_the_failure(client: openai.OpenAI) -> None:
    with client.responses.stream(model="midstream", input="Tell me a long story") as stream:
        kinds = [event.type for event in stream]
    assert kinds[-1] == "response.failed"


def test_builtin_tools_need_an_upstream_that_speaks_responses(gateway: RunningGateway) -> None:
    refused = post(gateway, {"model": "gpt-4o", "input": "Search the news",
                             "tools": [WEATHER, {"type": "web_search"}]})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "tools[1]"
    assert "web_search" in error["message"]


BAD_REQUESTS: list[tuple[dict[str, Any], str, str]] = [
    ({"input": "Hi"}, "model", "required"),
    ({"model": "gpt-4o"}, "input", "required"),
    ({"model": "gpt-4o", "input": 7}, "input", "string"),
    ({"model": "gpt-4o", "input": [{"role": "user", "content": "Hi"}, {"role": "robot", "content": "Hi"}]},
     "input[1].role", "one of"),
    ({"model": "gpt-4o", "input": [
        {"role": "user", "content": "a"}, {"role": "user", "content": "b"},
        {"role": "user", "content": [{"type": "input_image", "image_url": "file:///etc/passwd"}]}]},
     "input[2].content[0].image_url", "URL"),
    ({"model": "gpt-4o", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]},
     "input[0].content[0].file_id", "image_url"),
    ({"model": "gpt-4o", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
     "input[0].call_id", "required"),
    ({"model": "gpt-4o", "input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].output", "required"),
    ({"model": "gpt-4o", "input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type", "not supported"),
    ({"model": "gpt-4o", "input": [{"type": "reasoning", "id": "rs_1", "summary": [],
                                    "encrypted_content": "not-a-token"}]}, "input[0].encrypted_content", "altered"),
    ({"model": "gpt-4o", "input": [{"type": "item_reference", "id": "msg_nowhere"}]}, "input[0].id", "not found"),
    ({"model": "gpt-4o", "input": "Hi", "tools": [{"type": "function"}]}, "tools[0].name", "required"),
    ({"model": "gpt-4o", "input": "Hi", "tool_choice": {"type": "function", "name": "nope"}},
     "tool_choice.name", "tools"),
    ({"model": "gpt-4o", "input": "Hi", "text": {"format": {"type": "json_schema", "schema": {}}}},
     "text.format.name", "required"),
    ({"model": "gpt-4o", "input": "Hi", "temperature": 3}, "temperature", "between"),
    ({"model": "gpt-4o", "input": "Hi", "max_output_tokens": 0}, "max_output_tokens", "at least"),
    ({"model": "gpt-4o", "input": "Hi", "reasoning": "high"}, "reasoning", "object"),
    ({"model": "gpt-4o", "input": "Hi", "include": "reasoning.encrypted_content"}, "include", "array"),
    ({"model": "gpt-4o", "input": "Hi", "metadata": {"n": 1}}, "metadata", "string"),
    ({"model": "gpt-4o", "input": "Hi", "background": True}, "background", "stream"),
    ({"model": "gpt-4o", "input": "Hi", "truncation": "sometimes"}, "truncation", "'auto' or 'disabled'"),
    ({"model": "gpt-4o", "input": "Hi", "max_tool_calls": "3"}, "max_tool_calls", "integer"),
    ({"model": "gpt-4o", "input": "Hi", "conversation": "conv_1"}, "conversation", "previous_response_id"),
]


@pytest.mark.parametrize(("body", "param", "words"), BAD_REQUESTS, ids=[p for _, p, _ in BAD_REQUESTS])
def test_bad_requests_name_the_field(gateway: RunningGateway, body: dict[str, Any], param: str, words: str) -> None:
    refused = post(gateway, body)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert words.lower() in error["message"].lower()


def test_unknown_deployment_and_route(gateway: RunningGateway, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="nope", input="Hi")
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.post("/responses/resp_1/cancel", cast_to=object)

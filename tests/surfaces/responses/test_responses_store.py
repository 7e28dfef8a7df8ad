"""Stored responses: retrieve, delete and list input items with the official SDK; continue with
``previous_response_id`` on any deployment; a response belongs to its key's project."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.openai_spec import OpenAISpec
from tests.support import RunningGateway
from tests.surfaces.responses.support import MASTER, REASONERS, WEATHER, get, new_key, post


def test_retrieve_delete_and_input_items(client: openai.OpenAI, gateway: RunningGateway,
                                         openai_spec: OpenAISpec) -> None:
    inputs: list[Any] = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "input_text", "text": "Hello"}]},
        {"role": "assistant", "content": "Hi! How can I help?"},
        {"type": "message", "role": "user", "content": "Tell me about the sea"},
    ]
    created = client.responses.create(model="gpt-4o", input=inputs)
    fetched = client.responses.retrieve(created.id)
    assert fetched.model_dump() == created.model_dump()
    raw = get(gateway, f"/{created.id}")
    assert raw.status_code == 200 and raw.headers["x-request-id"].startswith("req_")
    openai_spec.validate("Response", raw.json())

    page = client.responses.input_items.list(created.id, order="asc")
    assert [item.type for item in page.data] == ["message"] * 4
    assert [getattr(item, "role", None) for item in page.data] == ["developer", "user", "assistant", "user"]
    assert len({item.id for item in page.data}) == 4
    listed = get(gateway, f"/{created.id}/input_items").json()
    openai_spec.validate("ResponseItemList", listed)
    assert [i["id"] for i in listed["data"]] == [item.id for item in reversed(page.data)]  # desc by default
    first_two = get(gateway, f"/{created.id}/input_items", limit=2, order="asc").json()
    assert [i["id"] for i in first_two["data"]] == [item.id for item in page.data[:2]] and first_two["has_more"]
    rest = get(gateway, f"/{created.id}/input_items", limit=2, order="asc", after=first_two["last_id"]).json()
    assert [i["id"] for i in rest["data"]] == [item.id for item in page.data[2:]] and not rest["has_more"]
    assert [item.id for item in client.responses.input_items.list(created.id, limit=1, order="asc")] == [
        item.id for item in page.data]  # the SDK pages through them all

    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.retrieve(created.id)
    assert caught.value.body["param"] == "response_id"  # type: ignore[index]
    assert get(gateway, f"/{created.id}/input_items").status_code == 404


def test_delete_answers_with_the_deleted_object(gateway: RunningGateway) -> None:
    created = post(gateway, {"model": "gpt-4o", "input": "Hi"}).json()
    deleted = httpx.delete(f"{gateway.v1}/responses/{created['id']}", headers={"authorization": f"Bearer {MASTER}"})
    assert deleted.json() == {"id": created["id"], "object": "response", "deleted": True}
    again = httpx.delete(f"{gateway.v1}/responses/{created['id']}", headers={"authorization": f"Bearer {MASTER}"})
    assert again.status_code == 404


def test_store_false_is_not_retrievable(client: openai.OpenAI) -> None:
    created = client.responses.create(model="gpt-4o", input="Hi", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="gpt-4o", input="Again", previous_response_id=created.id)
    assert caught.value.body == {"message": f"Previous response with id '{created.id}' not found.",
                                 "type": "invalid_request_error", "param": "previous_response_id",
                                 "code": "previous_response_not_found"}


def test_streamed_response_is_stored(client: openai.OpenAI) -> None:
    with client.responses.stream(model="gpt-4o", input="Tell me about the sea") as stream:
        final = stream.get_final_response()
    assert client.responses.retrieve(final.id).output_text == final.output_text


@pytest.mark.parametrize("first", ["claude", "gemini", "deepseek-reasoner"])
def test_previous_response_id_across_providers(client: openai.OpenAI, gateway: RunningGateway, first: str) -> None:
    """A tool loop on a reasoning model continued from stored state (which works only if its
    reasoning state reached the provider again: the simulator refuses it lost, and Anthropic's
    adapter would answer without thinking), then a turn elsewhere, then back again."""
    one = post(gateway, {"model": first, "input": "What is the weather in Lisbon?", "tools": [WEATHER],
                         **REASONERS[first]}).json()
    (call,) = [item for item in one["output"] if item["type"] == "function_call"]
    two = post(gateway, {"model": first, "previous_response_id": one["id"], "tools": [WEATHER], **REASONERS[first],
                         "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "Sunny"}]})
    assert two.status_code == 200, two.text
    assert "Sunny" in two.json()["output"][-1]["content"][0]["text"]
    if first == "claude":
        assert any(item["type"] == "reasoning" for item in two.json()["output"])
    three = post(gateway, {"model": "gpt-4o", "previous_response_id": two.json()["id"], "input": "And tomorrow?"})
    assert three.status_code == 200, three.text
    assert three.json()["previous_response_id"] == two.json()["id"]
    four = client.responses.create(model=first, previous_response_id=three.json()["id"], input="Thanks!",
                                   tools=[WEATHER], **REASONERS[first])  # type: ignore[list-item]
    assert four.status == "completed"
    assert [getattr(m, "role", None) for m in client.responses.input_items.list(four.id)] == ["user"]  # its own


def test_item_reference_names_an_item_of_the_conversation(client: openai.OpenAI, gateway: RunningGateway) -> None:
    one = client.responses.create(model="gpt-4o", input="What is the weather in Oslo?", tools=[WEATHER])  # type: ignore[list-item]
    call = one.output[0]
    assert call.type == "function_call"
    two = post(gateway, {"model": "gpt-4o", "previous_response_id": one.id, "tools": [WEATHER], "input": [
        {"type": "item_reference", "id": call.id},
        {"type": "function_call_output", "call_id": call.call_id, "output": "Rain"}]})
    assert two.status_code == 200, two.text
    assert "Rain" in two.json()["output"][-1]["content"][0]["text"]
    items = get(gateway, f"/{two.json()['id']}/input_items", order="asc").json()["data"]
    assert items[0]["id"] == call.id and items[0]["type"] == "function_call"


def test_a_response_belongs_to_its_project(gateway: RunningGateway) -> None:
    alice, bob = new_key(gateway, "alice"), new_key(gateway, "bob")
    mine = post(gateway, {"model": "gpt-4o", "input": "A secret plan"}, key=alice).json()
    assert get(gateway, f"/{mine['id']}", key=alice).status_code == 200
    for key in (bob, MASTER):
        for path in (f"/{mine['id']}", f"/{mine['id']}/input_items"):
            assert get(gateway, path, key=key).status_code == 404
        continued = post(gateway, {"model": "gpt-4o", "input": "Go on", "previous_response_id": mine["id"]}, key=key)
        assert continued.status_code == 404 and "secret" not in continued.text
        stolen = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
        with pytest.raises(openai.NotFoundError):
            stolen.responses.delete(mine["id"])
    assert get(gateway, f"/{mine['id']}", key=alice).status_code == 200
    assert get(gateway, f"/{mine['id']}", key="mg-not-a-key").status_code == 401

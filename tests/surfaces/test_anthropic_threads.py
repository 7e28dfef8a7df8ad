"""Anthropic message threads through the gateway, driven by the official ``anthropic`` SDK over real
sockets: a continue answers as the whole conversation would, on any provider, per project."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any, cast

import anthropic
import httpx
import pytest
from anthropic.lib.tools import beta_tool
from anthropic.types import MessageParam, ThreadFingerprintMismatchError, ThreadNotFoundError
from anthropic.types.beta import BetaMessage, BetaMessageParam, BetaToolParam

from modelgate.schema.errors import ServiceUnavailable
from modelgate.simulator import SimConfig, SimulatorThread
from modelgate.storage import ResponseStore, Storage
from modelgate.surfaces.anthropic.threads import (
    MESSAGE_THREADS_BETA,
    Thread,
    ThreadTurn,
    load_turn,
    without_threads_beta,
)
from tests.support import RunningGateway, anthropic_client, gateway_in_thread, native_sim_config

MASTER_KEY = "mg-test-master"
BETAS = [MESSAGE_THREADS_BETA]
SYSTEM = "You answer in one short sentence."
WEATHER: BetaToolParam = {
    "name": "get_weather", "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
ASK: BetaMessageParam = {"role": "user", "content": "What is the weather in Paris?"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[SimulatorThread]:
    config = SimConfig.from_dict({"api_key": "sk-sim", "models": {
        "deepseek-v4": {"reasoning": True, "require_reasoning_echo": True},
        "flaky-model": {"fault": "error_after=4"}}})
    with SimulatorThread(config) as sim:
        yield sim


@pytest.fixture(scope="module")
def gateway(upstream: SimulatorThread) -> Iterator[RunningGateway]:
    config = native_sim_config(upstream.base_url, master_key=MASTER_KEY)
    config["deployments"] += [
        {"name": "deepseek-v4", "provider": "deepseek", "model": "deepseek-v4"},
        {"name": "claude", "provider": "anthropic", "model": "claude-sonnet-4-5"},
        {"name": "flaky", "provider": "openai", "model": "flaky-model"},
    ]
    with gateway_in_thread(config) as running:
        yield running


@pytest.fixture(scope="module")
def client(gateway: RunningGateway) -> Iterator[anthropic.Anthropic]:
    with anthropic_client(gateway, MASTER_KEY) as sdk:
        yield sdk


def project_client(gateway: RunningGateway) -> anthropic.Anthropic:
    response = httpx.post(f"{gateway.base_url}/admin/keys", headers={"authorization": f"Bearer {MASTER_KEY}"},
                          json={"project": "p-" + secrets.token_hex(4)}, timeout=10)
    assert response.status_code == 201, response.text
    return anthropic_client(gateway, response.json()["key"])


def as_param(message: BetaMessage) -> BetaMessageParam:
    """A reply sent back as the next request's assistant message, as a client does."""
    return cast(BetaMessageParam, {"role": "assistant", "content": [block.to_dict() for block in message.content]})


def content(message: BetaMessage) -> list[dict[str, Any]]:
    """The message's blocks, but the ids of tool calls, which upstreams make up per response."""
    return [{k: v for k, v in block.to_dict().items() if not (block.type == "tool_use" and k == "id")}
            for block in message.content]


def same_answer(threaded: BetaMessage, whole: BetaMessage) -> None:
    """The simulator answers by the whole request it gets: the same content and input tokens mean
    it got the same conversation."""
    assert content(threaded) == content(whole)
    assert threaded.usage.input_tokens == whole.usage.input_tokens
    assert threaded.stop_reason == whole.stop_reason


@pytest.mark.parametrize("model", ["gpt-4o", "claude", "deepseek-v4"])
def test_a_continue_answers_as_the_whole_conversation_would(client: anthropic.Anthropic, model: str) -> None:
    first = client.beta.messages.create(model=model, max_tokens=200, system=SYSTEM, tools=[WEATHER],
                                        messages=[ASK], thread={"type": "create"}, betas=BETAS)
    assert first.id.startswith("msg_") and first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    result: BetaMessageParam = {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees and sunny"}]}
    # Only the new message; system and tools stay with the thread.
    second = client.beta.messages.create(
        model=model, max_tokens=200, messages=[result], betas=BETAS,
        thread={"type": "continue", "previous_message_id": first.id})
    whole = client.beta.messages.create(model=model, max_tokens=200, system=SYSTEM, tools=[WEATHER],
                                        messages=[ASK, as_param(first), result], betas=BETAS)
    same_answer(second, whole)
    third = client.beta.messages.create(
        model=model, max_tokens=200, messages=[{"role": "user", "content": "And tomorrow?"}], betas=BETAS,
        thread={"type": "continue", "previous_message_id": second.id})
    whole = client.beta.messages.create(
        model=model, max_tokens=200, system=SYSTEM, tools=[WEATHER], betas=BETAS,
        messages=[ASK, as_param(first), result, as_param(second), {"role": "user", "content": "And tomorrow?"}])
    same_answer(third, whole)


def test_streamed_turns_are_stored_and_continued(client: anthropic.Anthropic) -> None:
    with client.beta.messages.stream(model="deepseek-v4", max_tokens=200, messages=[ASK], tools=[WEATHER],
                                     thread={"type": "create"}, betas=BETAS) as stream:
        first = stream.get_final_message()
    # DeepSeek refuses a tool turn without its reasoning echoed: the thread kept it.
    assert any(block.type == "thinking" for block in first.content)
    call = next(block for block in first.content if block.type == "tool_use")
    result: BetaMessageParam = {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees"}]}
    with client.beta.messages.stream(model="deepseek-v4", max_tokens=200, messages=[result], betas=BETAS,
                                     thread={"type": "continue", "previous_message_id": first.id}) as stream:
        second = stream.get_final_message()
    whole = client.beta.messages.create(model="deepseek-v4", max_tokens=200, tools=[WEATHER], betas=BETAS,
                                        messages=[ASK, as_param(first), result])
    same_answer(second, whole)


def test_the_sdk_thread_helper_sends_only_new_turns(client: anthropic.Anthropic) -> None:
    thread = client.beta.messages.thread(model="gpt-4o", max_tokens=200, system=SYSTEM)
    first = thread.send({"role": "user", "content": "Name a colour."})
    assert thread.previous_message_id == first.id
    second = thread.send({"role": "user", "content": "Name another one."})
    assert thread.previous_message_id == second.id
    whole = client.beta.messages.create(model="gpt-4o", max_tokens=200, system=SYSTEM, betas=BETAS, messages=[
        {"role": "user", "content": "Name a colour."}, as_param(first),
        {"role": "user", "content": "Name another one."}])
    same_answer(second, whole)


def test_the_sdk_tool_runner_runs_on_a_thread(client: anthropic.Anthropic) -> None:
    calls: list[str] = []

    @beta_tool
    def get_weather(city: str) -> str:
        """Current weather in a city.

        Args:
            city: The city.
        """
        calls.append(city)
        return "18 degrees and sunny"

    runner = client.beta.messages.tool_runner(model="gpt-4o", max_tokens=200, tools=[get_weather],
                                              messages=[ASK], max_iterations=5)
    replies = list(runner)
    assert calls and replies[-1].stop_reason != "tool_use"
    # Every reply after the first continued the thread (a full replay would have dropped it).
    assert runner._thread.previous_message_id == replies[-1].id


def test_an_unknown_or_foreign_previous_message_is_thread_not_found(
        client: anthropic.Anthropic, gateway: RunningGateway) -> None:
    with pytest.raises(ThreadNotFoundError) as unknown:
        client.beta.messages.create(model="gpt-4o", max_tokens=50, messages=[ASK], betas=BETAS,
                                    thread={"type": "continue", "previous_message_id": "msg_unknown"})
    assert unknown.value.status_code == 404
    body: Any = unknown.value.body
    assert body["error"]["type"] == "not_found_error"
    assert body["error"]["details"] == {"error_code": "thread_not_found"}
    assert "thread {\"type\": \"create\"}" in body["error"]["message"]
    # A thread of one project is unknown to another project, and to the master key.
    with project_client(gateway) as owner, project_client(gateway) as other:
        mine = owner.beta.messages.create(model="gpt-4o", max_tokens=50, messages=[ASK], betas=BETAS,
                                          thread={"type": "create"})
        for stranger in (other, client):
            with pytest.raises(ThreadNotFoundError):
                stranger.beta.messages.create(model="gpt-4o", max_tokens=50, messages=[ASK], betas=BETAS,
                                              thread={"type": "continue", "previous_message_id": mine.id})
        owner.beta.messages.create(model="gpt-4o", max_tokens=50, betas=BETAS,
                                   messages=[{"role": "user", "content": "More."}],
                                   thread={"type": "continue", "previous_message_id": mine.id})
        # The master key's threads are the master key's alone.
        master = client.beta.messages.create(model="gpt-4o", max_tokens=50, messages=[ASK], betas=BETAS,
                                             thread={"type": "create"})
        with pytest.raises(ThreadNotFoundError):
            owner.beta.messages.create(model="gpt-4o", max_tokens=50, messages=[ASK], betas=BETAS,
                                       thread={"type": "continue", "previous_message_id": master.id})


def test_a_continue_may_not_change_the_threads_system_or_tools(client: anthropic.Anthropic) -> None:
    first = client.beta.messages.create(model="gpt-4o", max_tokens=50, system=SYSTEM, messages=[ASK],
                                        thread={"type": "create"}, betas=BETAS)
    follow: list[BetaMessageParam] = [{"role": "user", "content": "Thanks."}]
    with pytest.raises(ThreadFingerprintMismatchError) as changed:
        client.beta.messages.create(model="gpt-4o", max_tokens=50, system="Another system.", messages=follow,
                                    betas=BETAS, thread={"type": "continue", "previous_message_id": first.id})
    assert changed.value.status_code == 400
    assert "'system' cannot change on a thread" in str(changed.value)
    with pytest.raises(ThreadFingerprintMismatchError, match="'tools' cannot change"):
        client.beta.messages.create(model="gpt-4o", max_tokens=50, tools=[WEATHER], messages=follow,
                                    betas=BETAS, thread={"type": "continue", "previous_message_id": first.id})
    # The same system again is no change.
    client.beta.messages.create(model="gpt-4o", max_tokens=50, system=SYSTEM, messages=follow, betas=BETAS,
                                thread={"type": "continue", "previous_message_id": first.id})


def test_a_thread_needs_the_beta_and_a_well_formed_field(client: anthropic.Anthropic) -> None:
    ask: list[MessageParam] = [{"role": "user", "content": "What is the weather in Paris?"}]
    with pytest.raises(anthropic.BadRequestError, match=f"anthropic-beta: {MESSAGE_THREADS_BETA}"):
        client.messages.create(model="gpt-4o", max_tokens=50, messages=ask, extra_body={"thread": {"type": "create"}})
    for thread, named in (({"type": "continue"}, "thread.previous_message_id"), ({"type": "fork"}, "'thread' must"),
                          ("create", "'thread' must")):
        with pytest.raises(anthropic.BadRequestError, match=named) as refused:
            client.messages.create(model="gpt-4o", max_tokens=50, messages=ask, extra_body={"thread": thread},
                                   extra_headers={"anthropic-beta": MESSAGE_THREADS_BETA})
        body: Any = refused.value.body
        assert body["error"]["type"] == "invalid_request_error"


def test_a_stream_that_fails_midway_is_not_stored(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIError), client.beta.messages.stream(
            model="flaky", max_tokens=200, messages=[ASK], thread={"type": "create"}, betas=BETAS) as stream:
        started = None
        for event in stream:
            if event.type == "message_start":
                started = event.message.id
    assert started is not None
    with pytest.raises(ThreadNotFoundError):
        client.beta.messages.create(model="gpt-4o", max_tokens=50, messages=[ASK], betas=BETAS,
                                    thread={"type": "continue", "previous_message_id": started})


def test_the_upstream_gets_the_whole_conversation_without_the_thread_or_its_beta() -> None:
    turn = ThreadTurn(project=None, previous_message_id="msg_1",
                      history=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
                      kept={"system": "s", "tools": None})
    body = turn.body({"model": "m", "max_tokens": 5, "thread": {"type": "continue", "previous_message_id": "msg_1"},
                      "messages": [{"role": "user", "content": "c"}]})
    assert body == {"model": "m", "max_tokens": 5, "system": "s", "messages": [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}
    assert without_threads_beta({"anthropic-beta": f"a-1, {MESSAGE_THREADS_BETA},b-2", "x": "y"}) == {
        "anthropic-beta": "a-1,b-2", "x": "y"}
    assert without_threads_beta({"anthropic-beta": MESSAGE_THREADS_BETA}) == {}


async def test_a_continue_while_the_database_is_away_is_a_503_not_a_500() -> None:
    storage = await Storage.open("postgresql://postgres@127.0.0.1:1/nothing")
    try:
        with pytest.raises(ServiceUnavailable, match="cannot be read now") as refused:
            await load_turn(ResponseStore(storage.db), Thread("msg_1"), {"messages": []}, None)
        assert refused.value.status == 503 and refused.value.retry_after == 1
    finally:
        await storage.close()

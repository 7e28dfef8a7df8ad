"""What the cache keys requests by, and which requests it keeps."""

from __future__ import annotations

import pytest

from modelgate.cache.keys import canonical, digest, last_user_text, why_not_cached
from modelgate.config.cache import DeploymentCache
from modelgate.schema.request import ChatRequest, ImagePart, Message, TextPart, Tool, ToolCallPart
from modelgate.surfaces.anthropic.parse import parse_messages_request
from modelgate.surfaces.openai_format.parse import parse_chat_request


def chat(**body: object) -> ChatRequest:
    return parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "Hello there"}], **body})


def key(request: ChatRequest) -> str:
    return digest(canonical(request))


def test_what_only_changes_delivery_or_restates_a_default_is_the_same_request() -> None:
    base = key(chat(temperature=0))
    assert key(chat(temperature=0, stream=True, stream_options={"include_usage": True})) == base
    assert key(chat(temperature=0, user="u-1", metadata={"a": "b"})) == base
    assert key(chat(temperature=0, n=1, top_p=1, presence_penalty=0, stop=[])) == base
    assert key(parse_chat_request({"messages": [{"content": "  Hello there\n", "role": "user"}],
                                   "temperature": 0.0, "model": "other-name"})) == base
    assert key(chat(temperature=0, stop=["b", "a"])) == key(chat(temperature=0, stop=["a", "b", "a"]))
    assert key(chat()) == key(chat(temperature=1))


@pytest.mark.parametrize("change", [
    {"temperature": 0.2}, {"max_tokens": 10}, {"seed": 1}, {"n": 2}, {"stop": ["x"]}, {"top_p": 0.5},
    {"response_format": {"type": "json_object"}}, {"reasoning_effort": "low"},
    {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
    {"messages": [{"role": "user", "content": "Hello  there"}]},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]},
])
def test_what_can_change_the_answer_is_another_request(change: dict[str, object]) -> None:
    assert key(chat(**{"temperature": 0, **change})) != key(chat(temperature=0))


def test_the_same_question_in_another_wire_format_shares_the_answer() -> None:
    openai = parse_chat_request({"model": "m", "max_tokens": 50, "temperature": 0,
                                 "messages": [{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "Hi"}]})
    anthropic = parse_messages_request({"model": "m", "max_tokens": 50, "temperature": 0, "system": "Be brief.",
                                        "messages": [{"role": "user", "content": "Hi"}]}, {})
    assert key(openai) == key(anthropic)


def test_which_requests_are_cached() -> None:
    settings = DeploymentCache()
    assert why_not_cached(chat(temperature=0), settings, {}) is None
    assert why_not_cached(chat(temperature=0.9, seed=3), settings, {}) is None
    assert "temperature 0" in str(why_not_cached(chat(), settings, {}))
    assert why_not_cached(chat(temperature=0.5), settings, {}) is not None
    # The deployment's params are what the upstream gets.
    assert why_not_cached(chat(), settings, {"temperature": 0}) is None
    assert why_not_cached(chat(temperature=0), settings, {"temperature": 0.8}) is not None
    assert why_not_cached(chat(temperature=0.5), DeploymentCache(deterministic_only=False), {}) is None
    by_url = ChatRequest(model="m", temperature=0, messages=[Message("user", [
        TextPart("What is this?"), ImagePart("https://example.com/cat.png")])])
    inline = ChatRequest(model="m", temperature=0, messages=[Message("user", [
        TextPart("What is this?"), ImagePart("data:image/png;base64,iVBORw0KGgo=")])])
    assert "URL" in str(why_not_cached(by_url, settings, {}))
    assert why_not_cached(inline, settings, {}) is None


def test_tool_results_are_part_of_the_key() -> None:
    def with_result(result: str) -> ChatRequest:
        return ChatRequest(model="m", temperature=0, tools=[Tool("weather", parameters={"type": "object"})],
                           messages=[Message("user", [TextPart("Weather in Oslo?")]),
                                     Message("assistant", [ToolCallPart("call_1", "weather", '{"city":"Oslo"}')]),
                                     Message("tool", [TextPart(result)], tool_call_id="call_1")])
    assert key(with_result("4°C, rain")) == key(with_result("4°C, rain"))
    assert key(with_result("4°C, rain")) != key(with_result("20°C, sun"))
    assert last_user_text(with_result("4°C, rain")) is None  # the semantic cache compares user turns only


def test_the_semantic_key_leaves_out_the_last_user_turn_only() -> None:
    one = chat(temperature=0, messages=[{"role": "system", "content": "Support bot"},
                                        {"role": "user", "content": "cancel my order"}])
    two = chat(temperature=0, messages=[{"role": "system", "content": "Support bot"},
                                        {"role": "user", "content": "please cancel the order I placed"}])
    other_system = chat(temperature=0, messages=[{"role": "system", "content": "Sales bot"},
                                                 {"role": "user", "content": "cancel my order"}])
    context = [digest(canonical(r, leave_out_last_user_text=True)) for r in (one, two, other_system)]
    assert context[0] == context[1] != context[2]
    assert last_user_text(one) == "cancel my order"

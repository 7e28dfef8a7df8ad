"""Sealed reasoning state brought back in another format's history: opened in place, or left as sent."""

from __future__ import annotations

import pytest

from modelgate.pipeline.sealing import Sealer
from modelgate.providers.gemini_wire import request_to_gemini
from modelgate.schema.request import ChatRequest, Message, ReasoningPart, TextPart, ToolCallPart
from modelgate.surfaces.openai_format.parse import parse_chat_request
from modelgate.surfaces.reasoning_state import ReasoningState, restore_reasoning

SEALER = Sealer.from_secret("a-test-secret-of-more-than-32-characters")
OTHER_KEY = Sealer.from_secret("another-secret-of-more-than-32-characters")
CLAUDE_SIGNATURE = "EqQBCkgIBhABGAIiQL+signature/with=="


def request(*assistant: ReasoningPart | TextPart | ToolCallPart) -> ChatRequest:
    return ChatRequest(model="m", messages=[Message(role="user", content=[TextPart("hi")]),
                                            Message(role="assistant", content=list(assistant))])


def sealed(state: ReasoningState, sealer: Sealer = SEALER) -> str:
    return sealer.seal(state.payload())


def altered(token: str) -> str:
    middle = len(token) // 2
    return token[:middle] + ("B" if token[middle] == "A" else "A") + token[middle + 1:]


def test_a_sealed_token_gives_back_the_state_it_carries() -> None:
    state = ReasoningState(text="Think.", signature="enc-content", origin="openai", id="rs_7")
    chat = request(ReasoningPart(text="summary shown to the client", signature=sealed(state), origin="anthropic"),
                   TextPart("Done."))
    restore_reasoning(chat, SEALER)
    assert chat.messages[1].content == [
        ReasoningPart(text="Think.", signature="enc-content", origin="openai", id="rs_7"), TextPart("Done.")]


def test_redacted_thinking_comes_back_redacted() -> None:
    chat = request(ReasoningPart(signature=sealed(ReasoningState(redacted="opaque", origin="anthropic"))))
    restore_reasoning(chat, SEALER)
    assert chat.messages[1].content == [ReasoningPart(redacted="opaque", origin="anthropic")]


def test_call_signatures_go_back_on_the_calls_of_the_same_message() -> None:
    thought = sealed(ReasoningState(text="Weather first.", signature="text-sig", origin="gemini"))
    calls = sealed(ReasoningState(origin="gemini", calls={"call_a": "sig-a", "call_b": "sig-b"}))
    chat = request(ReasoningPart(text="Weather first.", signature=thought),
                   ToolCallPart(id="call_a", name="get_weather", arguments="{}"),
                   ToolCallPart(id="call_c", name="get_time", arguments="{}"),
                   ReasoningPart(signature=calls))
    restore_reasoning(chat, SEALER)
    # The token with call signatures only is no reasoning block: it leaves no part behind.
    assert chat.messages[1].content == [
        ReasoningPart(text="Weather first.", signature="text-sig", origin="gemini"),
        ToolCallPart(id="call_a", name="get_weather", arguments="{}", signature="sig-a", origin="gemini"),
        ToolCallPart(id="call_c", name="get_time", arguments="{}")]


def test_call_signatures_stay_in_their_message() -> None:
    calls = sealed(ReasoningState(origin="gemini", calls={"call_a": "sig-a"}))
    chat = request(ReasoningPart(signature=calls))
    chat.messages.append(Message(role="assistant", content=[ToolCallPart(id="call_a", name="f", arguments="{}")]))
    restore_reasoning(chat, SEALER)
    assert chat.messages[1].content == []
    assert chat.messages[2].content == [ToolCallPart(id="call_a", name="f", arguments="{}")]


@pytest.mark.parametrize("signature", [
    CLAUDE_SIGNATURE,  # an upstream's own signature, sent back as issued
    sealed(ReasoningState(text="t", signature="s", origin="anthropic"), OTHER_KEY),  # another gateway's key
    altered(sealed(ReasoningState(text="t", signature="s", origin="anthropic"))),
    "not a token at all",
])
def test_what_is_not_a_token_of_this_gateway_stays_as_sent(signature: str) -> None:
    part = ReasoningPart(text="t", signature=signature, origin="anthropic")
    chat = request(part, ToolCallPart(id="call_a", name="f", arguments="{}"))
    restore_reasoning(chat, SEALER)
    assert chat.messages[1].content == [ReasoningPart(text="t", signature=signature, origin="anthropic"),
                                        ToolCallPart(id="call_a", name="f", arguments="{}")]
    assert chat.messages[1].content[0] is part


def test_a_request_without_signed_reasoning_is_left_alone() -> None:
    plain = ReasoningPart(text="DeepSeek's reasoning_content")
    chat = request(plain, TextPart("answer"))
    content = chat.messages[1].content
    restore_reasoning(chat, SEALER)
    assert chat.messages[1].content is content and content == [plain, TextPart("answer")]


def test_only_assistant_turns_carry_reasoning_state() -> None:
    token = sealed(ReasoningState(text="t", signature="s", origin="anthropic"))
    chat = ChatRequest(model="m", messages=[Message(role="user", content=[ReasoningPart(signature=token)])])
    restore_reasoning(chat, SEALER)
    assert chat.messages[0].content == [ReasoningPart(signature=token)]


def test_a_gemini_turn_carried_in_a_chat_thinking_block_reaches_gemini_with_its_own_signatures() -> None:
    """Parsed, restored and translated as the gateway does: Gemini gets the call's own thought
    signature, not the stand-in it takes for calls of other providers (which would hide a loss)."""
    thought = sealed(ReasoningState(text="Weather first.", signature="text-sig", origin="gemini"))
    calls = sealed(ReasoningState(origin="gemini", calls={"call_a": "call-sig"}))
    chat = parse_chat_request({"model": "m", "messages": [
        {"role": "user", "content": "Weather in Lima?"},
        {"role": "assistant", "content": None,
         "thinking_blocks": [{"type": "thinking", "thinking": "Weather first.", "signature": thought},
                             {"type": "thinking", "thinking": "", "signature": calls}],
         "tool_calls": [{"id": "call_a", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city": "Lima"}'}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "rain"}]})
    restore_reasoning(chat, SEALER)
    model_turn = request_to_gemini(chat, {})["contents"][1]
    assert model_turn["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Lima"}, "id": "call_a"},
         "thoughtSignature": "call-sig"},
        {"text": "", "thoughtSignature": "text-sig"}]

"""The safety stage in the chain: input checked and redacted, answers held back, blocked, redacted."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest

from modelgate.auth import Principal
from modelgate.config import parse_settings
from modelgate.config.settings import DeploymentSettings
from modelgate.pipeline.contract import Call, build_chain
from modelgate.safety import ContentSafety, compile_policies
from modelgate.safety.policy import RELEASE_STEP, HeldText, Inspection
from modelgate.schema.errors import ContentFiltered
from modelgate.schema.events import Event, Finish, Start, TextDelta, ToolCallDelta, Usage, fold_events
from modelgate.schema.request import ChatRequest, Message, TextPart, ToolCallPart
from modelgate.schema.verdicts import Verdict

CARD = "4111 1111 1111 1111"
SAFETY = {
    "blocklists": {"codenames": {"terms": ["Project Falcon"]}},
    "policies": {
        "redact": {"input": [{"check": "pii", "action": "redact"}],
                   "output": [{"check": "pii", "action": "redact"}], "stream_hold_back": 42},
        "block": {"input": [{"check": "blocklist", "action": "block", "list": "codenames"},
                            {"check": "pii", "action": "annotate", "entities": ["email"]}],
                  "output": [{"check": "pii", "action": "block", "entities": ["credit_card"]}],
                  "stream_hold_back": 24},
    },
}


def settings(**deployment: Any) -> Any:
    return parse_settings({
        "providers": {"openai": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}},
        "safety": SAFETY,
        "deployments": [{"name": "chat", "provider": "openai", "model": "gpt-4o", **deployment}]}, {})


def make_call(policy: str | None, messages: list[Message], stream: bool = True) -> Call:
    deployment: DeploymentSettings = settings(safety=policy).deployments["chat"]
    return Call(request_id="req-1", deployment=deployment, principal=Principal(key_id="master"),
                request=ChatRequest(model="chat", messages=messages, stream=stream))


def answering(*pieces: str, choice: int = 0) -> Any:
    async def upstream(call: Call) -> AsyncGenerator[Event, None]:
        yield Start(model="gpt-4o")
        for piece in pieces:
            yield TextDelta(piece, choice)
        yield Finish("stop", choice)
        yield Usage(input_tokens=5, output_tokens=len(pieces))
    return upstream


async def run(call: Call, upstream: Any) -> list[Event]:
    handler = build_chain([ContentSafety(compile_policies(settings().safety))], upstream)
    return [event async for event in handler(call)]


def user(text: str) -> list[Message]:
    return [Message("user", [TextPart(text)])]


async def test_input_is_redacted_in_every_part_before_the_upstream_sees_it() -> None:
    seen: list[ChatRequest] = []

    async def upstream(call: Call) -> AsyncGenerator[Event, None]:
        assert isinstance(call.request, ChatRequest)
        seen.append(call.request)
        yield Finish("stop")

    messages = [Message("system", [TextPart("Admin: root@example.com")]),
                Message("user", [TextPart(f"Charge {CARD} please")]),
                Message("assistant", [ToolCallPart("c1", "charge", '{"card": "4111111111111111"}')]),
                Message("tool", [TextPart("receipt sent to +1 415 555 0132")], tool_call_id="c1")]
    call = make_call("redact", messages)
    await run(call, upstream)
    sent = seen[0].messages
    assert sent[0].text() == "Admin: [EMAIL]" and sent[1].text() == "Charge [CREDIT_CARD] please"
    assert sent[2].tool_calls()[0].arguments == '{"card": "[CREDIT_CARD]"}'
    assert sent[3].text() == "receipt sent to [PHONE]"
    assert call.safety is not None
    assert call.safety.prompt == [Verdict("pii", "redact", ("credit_card", "email", "phone"))]


async def test_a_blocked_prompt_never_reaches_the_upstream() -> None:
    async def upstream(call: Call) -> AsyncGenerator[Event, None]:
        raise AssertionError("the upstream was called")
        yield Finish("stop")

    call = make_call("block", user("Status of PROJECT  falcon? Mail me at a@example.com"))
    with pytest.raises(ContentFiltered) as caught:
        await run(call, upstream)
    assert caught.value.policy == "block" and caught.value.code == "content_filter"
    assert caught.value.verdicts == (Verdict("blocklist", "block", ("codenames",)),
                                     Verdict("pii", "annotate", ("email",)))
    assert "content policy 'block'" in caught.value.message and "blocklist (codenames)" in caught.value.message


async def test_a_card_split_across_chunks_is_redacted_before_any_digit_is_sent() -> None:
    pieces = ["Your card ", "4111 ", "1111", " 1111 1", "111 is on file. ", "Thanks for ", "waiting."]
    events = await run(make_call("redact", user("card?")), answering(*pieces))
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(texts) == "Your card [CREDIT_CARD] is on file. Thanks for waiting."
    assert not any(ch.isdigit() for text in texts for ch in text)
    assert isinstance(events[-2], Finish) and events[-2].reason == "stop"
    assert isinstance(events[-1], Usage)


async def test_a_blocked_answer_ends_with_content_filter_and_nothing_flagged_is_sent() -> None:
    pieces = ["Sure, here is one ", "of the numbers we keep: ", "4111 1111 ", "1111 1111", " and more text ",
              "that must not follow."]
    call = make_call("block", user("a number please"))
    events = await run(call, answering(*pieces))
    sent = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "4111" not in sent and "must not follow" not in sent
    finishes = [e for e in events if isinstance(e, Finish)]
    assert finishes == [Finish("content_filter", 0)]
    assert isinstance(events[-1], Usage)  # the usage still reaches metering
    assert call.safety is not None and call.safety.choices[0] == [Verdict("pii", "block", ("credit_card",))]


async def test_an_answer_that_is_not_streamed_is_checked_whole() -> None:
    call = make_call("redact", user("x"), stream=False)
    events = await run(call, answering("Reach ", "me at bob", "@example.com", " or 10.1.2.3"))
    result = fold_events(events)
    assert result.choices[0].text == "Reach me at [EMAIL] or [IP]"
    assert sum(isinstance(e, TextDelta) for e in events) == 1


async def test_tool_call_arguments_of_the_answer_are_checked_whole() -> None:
    async def upstream(call: Call) -> AsyncGenerator[Event, None]:
        yield ToolCallDelta(0, "call_1", "send", '{"to": "eve@exa')
        yield ToolCallDelta(0, arguments='mple.com"}')
        yield Finish("tool_calls")

    events = await run(make_call("redact", user("x")), upstream)
    assert fold_events(events).choices[0].tool_calls[0].arguments == '{"to": "[EMAIL]"}'


async def test_a_deployment_without_a_policy_gets_the_next_handler_itself() -> None:
    made: list[AsyncGenerator[Event, None]] = []
    upstream = answering(f"card {CARD}")

    def terminal(call: Call) -> AsyncGenerator[Event, None]:
        made.append(upstream(call))
        return made[0]

    call = make_call(None, user(CARD))
    stage = ContentSafety(compile_policies(settings().safety))
    assert stage(call, terminal) is made[0]  # no wrapper: nothing runs per event
    assert call.safety is None


def test_held_text_releases_at_most_up_to_the_window_and_never_inside_a_word() -> None:
    held = HeldText(Inspection(compile_policies(settings().safety)["redact"].output), hold_back=10)
    pieces = ["one two three four ", "five six ", "a.very.long.word.", "here ", "and the rest of it "]
    # Up to 10 characters before the end, moved back to the start of the word it falls in, and
    # only once at least RELEASE_STEP characters can go.
    assert RELEASE_STEP == 16
    assert [held.feed(piece) for piece in pieces] == [
        "", "one two three four", "", "", " five six a.very.long.word.here and the "]
    assert held.flush() == "rest of it "


async def test_with_several_choices_only_the_flagged_one_ends_filtered() -> None:
    async def upstream(call: Call) -> AsyncGenerator[Event, None]:
        yield Start(model="gpt-4o")
        yield TextDelta("A plain answer.", 0)
        yield TextDelta(f"Here: {CARD}.", 1)
        yield Finish("stop", 0)
        yield Finish("stop", 1)

    call = make_call("block", user("x"), stream=False)
    result = fold_events(await run(call, upstream))
    assert [(c.text, c.finish_reason) for c in result.choices] == [("A plain answer.", "stop"), ("", "content_filter")]
    assert call.safety is not None
    assert call.safety.choices == {0: [Verdict("pii", "block", ())], 1: [Verdict("pii", "block", ("credit_card",))]}
    assert call.safety.summary == "blocked:pii"

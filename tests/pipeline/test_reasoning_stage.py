"""The reasoning stage: ``<think>`` tags split out of the content where the deployment asks."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from modelgate.auth import Principal
from modelgate.config.settings import DeploymentSettings, ReasoningSettings, TargetSettings
from modelgate.pipeline.contract import Call, build_chain
from modelgate.pipeline.reasoning import SplitThinkTags
from modelgate.schema.events import Event, Finish, ReasoningDelta, Start, TextDelta, Usage, fold_events
from modelgate.schema.request import ChatRequest, EmbeddingRequest, Message, TextPart

# What an Ollama-served DeepSeek R1 streams: two choices, tags cut across chunks.
UPSTREAM: list[Event] = [
    Start(model="deepseek-r1:8b"),
    TextDelta("<thi", 0), TextDelta("<think>\n", 1),
    TextDelta("nk>\nCount the r's", 0), TextDelta("Short one.</think>\n\nNo.", 1),
    TextDelta(": three.\n</th", 0), Finish("stop", 1),
    TextDelta("ink>\n\nThere are three.", 0), TextDelta(" Done", 0),
    Finish("length", 0), Usage(input_tokens=10, output_tokens=30),
]


def call(split: bool, request: ChatRequest | EmbeddingRequest | None = None) -> Call:
    deployment = DeploymentSettings(name="r1", targets=[TargetSettings(provider="ollama", model="deepseek-r1:8b")],
                                    reasoning=ReasoningSettings(split_think_tags=split))
    return Call(request_id="req-1", deployment=deployment, principal=Principal(key_id="master"),
                request=request or ChatRequest(model="r1", messages=[Message("user", [TextPart("strawberry?")])]))


async def upstream(call: Call) -> AsyncGenerator[Event, None]:
    for event in UPSTREAM:
        yield event


async def through_stage(call: Call) -> list[Event]:
    handler = build_chain([SplitThinkTags()], upstream)
    return [event async for event in handler(call)]


async def test_think_tags_become_reasoning_per_choice() -> None:
    events = await through_stage(call(split=True))
    result = fold_events(events)
    first, second = result.choices
    assert (first.reasoning_text, first.text, first.finish_reason) == (
        "Count the r's: three.", "There are three. Done", "length")
    assert (second.reasoning_text, second.text, second.finish_reason) == ("Short one.", "No.", "stop")
    assert result.usage == Usage(input_tokens=10, output_tokens=30)
    # Each choice's text is released before its Finish.
    finish_1 = next(i for i, e in enumerate(events) if isinstance(e, Finish) and e.choice == 1)
    assert not any(isinstance(e, (TextDelta, ReasoningDelta)) and e.choice == 1 for e in events[finish_1:])
    assert sum(1 for e in events if isinstance(e, ReasoningDelta) and e.block_start) == 2


async def test_deployments_without_the_setting_pass_events_through() -> None:
    assert await through_stage(call(split=False)) == UPSTREAM
    embedding = EmbeddingRequest(model="e", input=["<think>x</think>"])
    assert await through_stage(call(split=True, request=embedding)) == UPSTREAM


async def test_a_choice_the_upstream_never_finished_is_flushed_at_the_end() -> None:
    async def cut_short(call: Call) -> AsyncGenerator[Event, None]:
        yield Start(model="m")
        yield TextDelta("<think>still thinking ")

    handler = build_chain([SplitThinkTags()], cut_short)
    events = [e async for e in handler(call(split=True))]
    assert events[1:] == [ReasoningDelta(text="still thinking", block_start=True)]

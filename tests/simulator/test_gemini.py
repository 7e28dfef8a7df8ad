"""The Gemini surface, driven by the official google-genai SDK."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google import genai
from google.genai import errors, types

from modelgate.simulator import SimulatorThread, count_tokens, message_tokens, tool_tokens
from tests.simulator.conftest import API_KEY, post_json

WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Weather for a city",
    parameters=types.Schema(
        type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}, required=["city"]
    ),
)
CLOCK = types.FunctionDeclaration(
    name="get_time",
    parameters=types.Schema(type=types.Type.OBJECT, properties={"tz": types.Schema(type=types.Type.STRING)}),
)


def client(sim: SimulatorThread, api_key: str = API_KEY) -> genai.Client:
    options = types.HttpOptions(base_url=sim.base_url, retry_options=types.HttpRetryOptions(attempts=1))
    return genai.Client(api_key=api_key, http_options=options)


def fault(spec: str) -> types.HttpOptions:
    return types.HttpOptions(headers={"x-sim-fault": spec}, retry_options=types.HttpRetryOptions(attempts=1))


def test_generate_content_text_and_usage(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    response = c.models.generate_content(
        model="gemini-sim",
        contents="Hello Gemini, what is new?",
        config=types.GenerateContentConfig(system_instruction="Answer in English."),
    )
    assert response.text is not None and response.text.startswith("Simulated reply from gemini-sim to: Hello Gemini,")
    candidate = (response.candidates or [])[0]
    assert candidate.finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage is not None
    assert usage.prompt_token_count == message_tokens("Hello Gemini, what is new?") + message_tokens(
        "Answer in English."
    )
    assert usage.candidates_token_count == count_tokens(response.text) and usage.thoughts_token_count is None
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert response.model_version == "gemini-sim" and response.response_id


def test_thoughts_visible_only_when_asked(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    shown = c.models.generate_content(
        model="gemini-2.5-flash",
        contents="Think about owls",
        config=types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True)),
    )
    parts = (shown.candidates or [])[0].content.parts or []  # type: ignore[union-attr]
    assert [bool(p.thought) for p in parts] == [True, False]
    assert (parts[0].text or "").startswith("The user wrote about Think about owls.")
    assert shown.usage_metadata is not None
    assert shown.usage_metadata.thoughts_token_count == count_tokens(parts[0].text or "")
    hidden = c.models.generate_content(model="gemini-2.5-flash", contents="Think about owls")
    assert len((hidden.candidates or [])[0].content.parts or []) == 1  # type: ignore[union-attr]
    assert hidden.usage_metadata is not None and hidden.usage_metadata.thoughts_token_count == count_tokens(
        parts[0].text or ""
    )
    off = c.models.generate_content(
        model="gemini-2.5-flash",
        contents="Think about owls",
        config=types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=0)),
    )
    assert off.usage_metadata is not None and off.usage_metadata.thoughts_token_count is None


def test_stream_chunks_and_final_usage(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    chunks = list(c.models.generate_content_stream(model="gemini-sim", contents="stream some words"))
    text = "".join(chunk.text or "" for chunk in chunks)
    whole = c.models.generate_content(model="gemini-sim", contents="stream some words")
    assert text == whole.text and len(chunks) == len(text.split())
    assert [(ch.candidates or [])[0].finish_reason for ch in chunks[-2:]] == [None, types.FinishReason.STOP]
    assert chunks[-1].usage_metadata is not None and chunks[-1].usage_metadata.candidates_token_count == count_tokens(
        text
    )


def test_function_call_with_thought_signature_round_trip(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER, CLOCK])])
    question = types.Content(role="user", parts=[types.Part(text="weather in Rome in parallel?")])
    first = c.models.generate_content(model="gemini-2.5-pro", contents=[question], config=config)
    model_turn = (first.candidates or [])[0].content
    assert model_turn is not None and model_turn.parts is not None
    assert [p.function_call.name for p in model_turn.parts if p.function_call] == ["get_weather", "get_time"]
    assert model_turn.parts[0].function_call.args == {"city": "text"}  # type: ignore[union-attr]
    assert model_turn.parts[0].thought_signature and model_turn.parts[1].thought_signature is None
    expected = message_tokens("weather in Rome in parallel?") + tool_tokens(
        "get_weather",
        "Weather for a city",
        {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]},
    )
    assert first.usage_metadata is not None and first.usage_metadata.prompt_token_count == expected + tool_tokens(
        "get_time", "", {"type": "OBJECT", "properties": {"tz": {"type": "STRING"}}}
    )
    answers = types.Content(
        role="user",
        parts=[
            types.Part.from_function_response(name="get_weather", response={"result": "Hot, 35C"}),
            types.Part.from_function_response(name="get_time", response={"result": "noon"}),
        ],
    )
    final = c.models.generate_content(model="gemini-2.5-pro", contents=[question, model_turn, answers], config=config)
    assert "Hot, 35C noon" in (final.text or "")
    stripped = model_turn.model_copy(deep=True)
    stripped.parts[0].thought_signature = None  # type: ignore[index]
    with pytest.raises(errors.ClientError) as missing:
        c.models.generate_content(model="gemini-2.5-pro", contents=[question, stripped, answers], config=config)
    assert missing.value.code == 400 and missing.value.status == "INVALID_ARGUMENT"
    assert "Function call is missing a thought_signature in functionCall parts" in (missing.value.message or "")
    altered = model_turn.model_copy(deep=True)
    altered.parts[0].thought_signature = b"x" * 32  # type: ignore[index]
    with pytest.raises(errors.ClientError, match="Thought signature is not valid"):
        c.models.generate_content(model="gemini-2.5-pro", contents=[question, altered, answers], config=config)
    # An earlier turn's calls are no longer checked once a new user text starts the next turn.
    later = types.Content(role="user", parts=[types.Part(text="thanks, and tomorrow?")])
    plain = types.GenerateContentConfig(
        tools=config.tools,
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.NONE)
        ),
    )
    ok = c.models.generate_content(model="gemini-2.5-pro", contents=[question, stripped, answers, later], config=plain)
    assert (ok.text or "").startswith("Simulated reply from gemini-2.5-pro to: thanks, and tomorrow. ")


def test_forced_function_and_non_thinking_model_has_no_signature(sim_thread: SimulatorThread) -> None:
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER, CLOCK])],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=["get_time"]
            )
        ),
    )
    c = client(sim_thread)
    response = c.models.generate_content(model="gemini-sim", contents="what time", config=config)
    parts = (response.candidates or [])[0].content.parts or []  # type: ignore[union-attr]
    assert [(p.function_call.name, p.thought_signature) for p in parts if p.function_call] == [("get_time", None)]


def test_structured_output_candidates_stop_and_limit(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    structured = c.models.generate_content(
        model="gemini-sim",
        contents="json",
        config=types.GenerateContentConfig(
            response_mime_type="application/json",
            response_schema=types.Schema(
                type=types.Type.OBJECT,
                properties={
                    "items": types.Schema(type=types.Type.ARRAY, items=types.Schema(type=types.Type.NUMBER)),
                    "flag": types.Schema(type=types.Type.BOOLEAN),
                },
            ),
        ),
    )
    assert json.loads(structured.text or "") == {"items": [1], "flag": True}
    several = c.models.generate_content(
        model="gemini-sim", contents="options", config=types.GenerateContentConfig(candidate_count=2)
    )
    texts = [cand.content.parts[0].text for cand in several.candidates or []]  # type: ignore[union-attr,index]
    assert len(texts) == 2 and texts[0] != texts[1]
    stopped = c.models.generate_content(
        model="gemini-sim", contents="about kiwis", config=types.GenerateContentConfig(stop_sequences=["kiwis"])
    )
    assert stopped.text == "Simulated reply from gemini-sim to: about "
    limited = c.models.generate_content(
        model="gemini-sim", contents="hello", config=types.GenerateContentConfig(max_output_tokens=2)
    )
    assert limited.text == "Simulated reply"
    assert (limited.candidates or [])[0].finish_reason == types.FinishReason.MAX_TOKENS


def test_safety_block(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    response = c.models.generate_content(
        model="gemini-sim", contents="hi", config=types.GenerateContentConfig(http_options=fault("safety"))
    )
    candidate = (response.candidates or [])[0]
    assert candidate.finish_reason == types.FinishReason.SAFETY and candidate.content is None
    assert response.text is None
    blocked = [r.category for r in candidate.safety_ratings or [] if r.blocked]
    assert blocked == [types.HarmCategory.HARM_CATEGORY_DANGEROUS_CONTENT]


def test_errors_in_gemini_format(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    cases: list[tuple[str, type[errors.APIError], int, str]] = [
        ("status=429", errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
        ("status=500", errors.ServerError, 500, "INTERNAL"),
        ("status=503", errors.ServerError, 503, "UNAVAILABLE"),
    ]
    for spec, error_class, code, status in cases:
        with pytest.raises(error_class) as caught:
            c.models.generate_content(
                model="gemini-sim", contents="hi", config=types.GenerateContentConfig(http_options=fault(spec))
            )
        assert (caught.value.code, caught.value.status) == (code, status)
    wrong = client(sim_thread, api_key="wrong")
    with pytest.raises(errors.ClientError) as bad_key:
        wrong.models.generate_content(model="gemini-sim", contents="hi")
    assert bad_key.value.code == 400 and bad_key.value.message == "API key not valid. Please pass a valid API key."
    assert bad_key.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    http_status, body = post_json(
        f"{sim_thread.base_url}/v1beta/models/gemini-sim:generateContent", {"contents": [{"parts": [{"text": "x"}]}]}
    )
    assert http_status == 403 and body["error"]["status"] == "PERMISSION_DENIED"
    http_status, body = post_json(
        f"{sim_thread.base_url}/v1beta/models/gemini-sim:generateContent?key={API_KEY}",
        {"contents": [{"parts": [{"text": "via query key"}]}]},
    )
    assert http_status == 200 and body["usageMetadata"]["promptTokenCount"] == message_tokens("via query key")
    with pytest.raises(errors.ClientError, match=r"input token count \(13\) exceeds"):
        c.models.generate_content(model="tiny-context", contents="one two three four five six seven eight nine ten")


@pytest.mark.parametrize(("signature", "status"), [
    (None, 400),  # a thinking model (Gemini 3) refuses an unsigned call, whoever made it
    ("skip_thought_signature_validator", 200),  # Google's stand-in for a call Gemini did not make
])
def test_a_call_another_model_made_needs_googles_stand_in(
    sim_thread: SimulatorThread, signature: str | None, status: int
) -> None:
    call: dict[str, Any] = {"functionCall": {"name": "get_weather", "args": {"city": "Lima"}}}
    if signature is not None:
        call["thoughtSignature"] = signature
    contents = [
        {"role": "user", "parts": [{"text": "Weather in Lima?"}]},
        {"role": "model", "parts": [call]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "rain"}}}]},
    ]
    http_status, body = post_json(
        f"{sim_thread.base_url}/v1beta/models/gemini-2.5-pro:generateContent?key={API_KEY}", {"contents": contents}
    )
    assert http_status == status, body
    if status == 400:
        assert "Function call is missing a thought_signature" in body["error"]["message"]


def test_mid_stream_error_and_count_tokens(sim_thread: SimulatorThread) -> None:
    c = client(sim_thread)
    received: list[Any] = []
    with pytest.raises(errors.ServerError) as caught:
        for chunk in c.models.generate_content_stream(
            model="gemini-sim",
            contents="hello",
            config=types.GenerateContentConfig(http_options=fault("error_after=2")),
        ):
            received.append(chunk)
    assert len(received) == 2 and caught.value.status == "UNAVAILABLE"
    counted = c.models.count_tokens(model="gemini-sim", contents="count these four")
    assert counted.total_tokens == message_tokens("count these four")


def test_a_call_made_without_thinking_needs_no_signature_back(sim_thread: SimulatorThread) -> None:
    """Thinking turned off (thinkingBudget 0), a thinking model's own call has no signature, and
    sent back as it came it is taken; the same call from elsewhere is still refused."""
    tools = [{"functionDeclarations": [{"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]}]
    url = f"{sim_thread.base_url}/v1beta/models/gemini-2.5-flash:generateContent?key={API_KEY}"
    question = {"role": "user", "parts": [{"text": "Weather in Quito without thinking?"}]}
    status, body = post_json(url, {"contents": [question], "tools": tools,
                                   "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}})
    assert status == 200, body
    (call,) = body["candidates"][0]["content"]["parts"]
    assert "functionCall" in call and "thoughtSignature" not in call
    answer = {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "mild"}}}]}
    status, body = post_json(url, {"contents": [question, {"role": "model", "parts": [call]}, answer], "tools": tools})
    assert status == 200, body
    other = {"functionCall": {"name": "get_weather", "args": {"city": "Lima"}}}
    status, body = post_json(url, {"contents": [question, {"role": "model", "parts": [other]}, answer], "tools": tools})
    assert status == 400 and "missing a thought_signature" in body["error"]["message"]

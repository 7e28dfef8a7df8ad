"""The provider adapters the conformance suite runs, as data: one ``Adapter`` per adapter and flavour.

An entry says how to reach the simulator (``settings``), which simulator model makes the adapter's
upstream think, what the suite must expect where wire formats honestly differ (where opaque reasoning
state lives, whether tool arguments stream in pieces, how an overload or a mid-stream failure is
reported), and which recorded upstream bytes it decodes. Adding a provider is adding an entry here and
its fixtures under ``tests/fixtures/``; see README.md.

Faults are set per simulator model (``simulator_config``), not by the ``x-sim-fault`` header: adapters
forward request headers differently (``openai_compat`` only for OpenAI-format requests, ``gemini``
never), and a fault carried by the model name reaches every adapter alike, Azure deployments and
Gemini's model-in-the-URL included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from modelgate.providers.base import UpstreamCall
from modelgate.providers.settings import ProviderSettings
from modelgate.simulator import SimConfig

API_KEY = "sk-conformance"
FIXTURES = Path(__file__).parents[1] / "fixtures"

# Simulator models (see simulator_config).
PLAIN = "conformance-plain"  # answers without reasoning
REASONER = "conformance-reasoner"  # thinks, in reasoning_content (Gemini: thinks; Anthropic: per request)
DEEPSEEK_REASONER = "conformance-deepseek"  # thinks and wants reasoning_content back on tool turns
VLLM_REASONER = "conformance-vllm"  # thinks, in vLLM's ``reasoning`` field
SLOW = "conformance-slow"  # streams one word every SLOW_CHUNK_MS
RATE_LIMITED = "conformance-429"
MID_STREAM_ERROR = "conformance-error-after"
CUT = "conformance-cut"  # drops the TCP connection after a few frames (half the body, unstreamed)
HANGS = "conformance-hangs"  # accepts the request and sends nothing

SLOW_CHUNK_MS = 500
RETRY_AFTER_S = 7
# Frames sent before the mid-stream error: enough for every API to have sent some text (Azure opens
# with a filter chunk and a role chunk, Anthropic with message_start, content_block_start and a ping,
# the Responses API with response.created, .in_progress, .output_item.added and .content_part.added).
ERROR_AFTER_FRAMES = 6
SERVER_STATUSES = (500, 503, 529)


def status_model(status: int) -> str:
    """The simulator model that answers every request with HTTP ``status``."""
    return f"conformance-status-{status}"


def simulator_config() -> SimConfig:
    models: dict[str, dict[str, Any]] = {
        PLAIN: {},
        REASONER: {"reasoning": True},
        DEEPSEEK_REASONER: {"reasoning": True, "require_reasoning_echo": True},
        VLLM_REASONER: {"reasoning": True, "reasoning_field": "reasoning"},
        SLOW: {"chunk_ms": SLOW_CHUNK_MS},
        RATE_LIMITED: {"fault": f"status=429;retry_after={RETRY_AFTER_S}"},
        MID_STREAM_ERROR: {"fault": f"error_after={ERROR_AFTER_FRAMES}"},
        CUT: {"fault": f"cut={ERROR_AFTER_FRAMES}"},
        HANGS: {"fault": "timeout=30"},
        **{status_model(status): {"fault": f"status={status}"} for status in SERVER_STATUSES},
    }
    return SimConfig.from_dict({"api_key": API_KEY, "models": models})


# Where an upstream keeps the opaque state a later turn must carry back, and so how a turn that lost
# it is refused: "reasoning_echo" (DeepSeek: reasoning_content on assistant turns with tool calls),
# "thinking_signature" (Anthropic: signed thinking blocks), "thought_signature" (Gemini: a signature
# on the first function call), "encrypted_content" (OpenAI Responses: reasoning items with their
# encrypted content before the function calls they came with), "none" (nothing to carry).
OpaqueState = Literal["none", "reasoning_echo", "thinking_signature", "thought_signature", "encrypted_content"]
RecordingKind = Literal["text", "reasoning", "tool_calls", "mid_stream_error", "status_error"]


@dataclass(frozen=True)
class Recording:
    """Recorded upstream bytes (a body, or a whole SSE stream) and the canonical result they fold to.

    Only the fields given are asserted, on top of the shape every recording of its ``kind`` has.
    """

    path: str  # under tests/fixtures
    kind: RecordingKind
    stream: bool
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    model: str | None = None
    text: str | None = None
    reasoning: str | None = None
    calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    finish: str | None = None
    usage: tuple[int, int] | None = None  # (input, output)
    signed: bool = False  # opaque reasoning state (a signature) comes with it
    error_status: int | None = None
    retry_after: float | None = None

    @property
    def content_type(self) -> str:
        return "text/event-stream" if self.path.endswith(".sse") else "application/json"

    @property
    def body(self) -> bytes:
        return (FIXTURES / self.path).read_bytes()


@dataclass(frozen=True)
class Adapter:
    id: str
    type: str
    flavor: str = "openai"
    api_version: str | None = None
    # Which of the upstream's APIs the target calls (a deployment's api: key).
    api: str = "chat"
    reasoning_model: str = REASONER
    # The origin canonical reasoning and tool-call parts carry (the issuer of their opaque state).
    origin: str | None = None
    opaque_state: OpaqueState = "none"
    # Whether the wire streams a tool call's arguments in pieces; Gemini sends each functionCall
    # whole (protocols.md §6.1), so its adapter yields one ToolCallDelta per call.
    fragments_tool_arguments: bool = True
    # Whether the upstream reports reasoning tokens apart (Anthropic counts them in output_tokens only).
    reports_reasoning_tokens: bool = True
    # The status this upstream uses for "overloaded, try later".
    overloaded_status: int = 503
    # The status the adapter gives an error event inside a 200 stream.
    mid_stream_status: int = 502
    recordings: tuple[Recording, ...] = ()
    # scenario → why this adapter fails it (reported to the lead; the test is xfail(strict=True)).
    known_failures: Mapping[str, str] = field(default_factory=dict)

    def settings(self, root: str) -> ProviderSettings:
        """Settings pointing the adapter at a server (the simulator or a replay) on ``root``."""
        base_url = f"{root}/v1" if self.type == "openai" else root
        return ProviderSettings(name=self.id, type=self.type, base_url=base_url, api_key=API_KEY,
                                api_version=self.api_version, flavor=self.flavor)

    def call(self, model: str, timeout: float) -> UpstreamCall:
        """One attempt at ``model`` as a target of this adapter would make it."""
        return UpstreamCall(model=model, timeout=timeout, api=self.api)


# Azure opens a stream with a choice-less chunk that carries only prompt_filter_results, with
# "model": "" and "id": "" (recorded in openai/azure_stream.sse; protocols.md §6.6).
_AZURE_START = ("openai_compat takes Start from the first chunk of a stream, and Azure's first chunk is the "
                "choice-less prompt_filter_results one with model \"\" and id \"\": a streamed Start names no "
                "model and no response id (openai_wire.ChunkDecoder.decode)")
_AZURE_TEXT = Recording("openai/azure_stream.sse", "text", stream=True, model="gpt-4o-2024-08-06",
                        text="Hello", finish="stop", usage=(9, 1))

# Written from the shapes of the OpenAI spec (Response, ResponseStreamEvent) and protocols.md §1.6,
# not captured from the live API; see README.md.
_RESPONSES_RECORDINGS = (
    Recording("openai/responses_stream_reasoning_tool_calls.sse", "tool_calls", stream=True, model="o4-mini-2025-04-16",
              reasoning="The user wants the weather in Paris and London.\n\nI will call get_weather twice.",
              calls=(("get_weather", {"city": "Paris"}), ("get_weather", {"city": "London"})),
              finish="tool_calls", usage=(84, 142), signed=True),
    Recording("openai/responses_reasoning_text.json", "reasoning", stream=False, model="o4-mini-2025-04-16",
              reasoning="Paris is the capital of France.", text="The capital of France is Paris.", finish="stop",
              usage=(23, 96), signed=True),
    Recording("openai/responses_stream_failed.sse", "mid_stream_error", stream=True, text="Once upon",
              error_status=502),
    Recording("openai/responses_error_rate_limited.json", "status_error", stream=True, status=429,
              headers={"retry-after": "20"}, error_status=429, retry_after=20.0),
)

ADAPTERS: tuple[Adapter, ...] = (
    Adapter(
        id="openai", type="openai", flavor="openai",
        recordings=(
            Recording("openai/openai_tool_call_stream.sse", "tool_calls", stream=True, model="gpt-4o-2024-05-13",
                      calls=(("get_current_weather", {"location": "Boston, MA"}), ("get_time", {})),
                      finish="tool_calls", usage=(82, 31)),
        ),
    ),
    Adapter(
        id="deepseek", type="openai", flavor="deepseek", reasoning_model=DEEPSEEK_REASONER,
        opaque_state="reasoning_echo",
        recordings=(
            Recording("openai/deepseek_reasoner_stream.sse", "reasoning", stream=True, model="deepseek-reasoner",
                      reasoning="Okay, the user asks about 9.11 vs 9.8.", text="9.8 is greater.", finish="stop",
                      usage=(17, 112)),
        ),
    ),
    Adapter(
        id="vllm", type="openai", flavor="vllm", reasoning_model=VLLM_REASONER,
        recordings=(
            Recording("openai/vllm_reasoning_stream.sse", "reasoning", stream=True, model="Qwen/Qwen3-8B",
                      reasoning="Let me think.", text="Two.", finish="length", usage=(12, 8)),
        ),
    ),
    Adapter(id="openai-responses", type="openai", api="responses", origin="openai",
            opaque_state="encrypted_content", recordings=_RESPONSES_RECORDINGS),
    Adapter(id="azure", type="azure", api_version="2024-10-21", recordings=(_AZURE_TEXT,)),
    Adapter(id="azure-v1", type="azure", recordings=(_AZURE_TEXT,)),
    Adapter(id="azure-responses", type="azure", api="responses", origin="openai", opaque_state="encrypted_content"),
    Adapter(
        id="anthropic", type="anthropic", origin="anthropic", opaque_state="thinking_signature",
        reports_reasoning_tokens=False, overloaded_status=529, mid_stream_status=529,
        recordings=(
            Recording("anthropic/stream_text_stop_sequence.sse", "text", stream=True,
                      model="claude-haiku-4-5-20251001", text="1, 2, 3, 4", finish="stop", usage=(21, 12)),
            Recording("anthropic/stream_thinking_parallel_tools.sse", "tool_calls", stream=True,
                      model="claude-sonnet-4-5-20250929",
                      reasoning="The user wants the weather in Paris and London. "
                                "I'll call get_weather for both cities at once.",
                      text="I'll check both cities.",
                      calls=(("get_weather", {"city": "Paris"}), ("get_weather", {"city": "London"})),
                      finish="tool_calls", usage=(472 + 1536 + 2048, 187), signed=True),
            Recording("anthropic/message_thinking_tool_use.json", "tool_calls", stream=False,
                      model="claude-sonnet-4-5-20250929",
                      reasoning="I need the current temperature; the get_weather tool gives it.",
                      text="Let me look that up.",
                      calls=(("get_weather", {"city": "Paris", "unit": "celsius"}), ("get_time", {})),
                      finish="tool_calls", usage=(377 + 120 + 3000, 95), signed=True),
            Recording("anthropic/stream_redacted_thinking.sse", "reasoning", stream=True,
                      model="claude-sonnet-4-5-20250929", reasoning="", text="Here is my answer.", finish="stop",
                      usage=(96, 211), signed=True),
            Recording("anthropic/stream_error_after_start.sse", "mid_stream_error", stream=True,
                      text="Once upon", error_status=529),
            Recording("anthropic/error_overloaded.json", "status_error", stream=True, status=529,
                      headers={"retry-after": "3"}, error_status=529, retry_after=3.0),
        ),
    ),
    Adapter(
        id="gemini", type="gemini", origin="gemini", opaque_state="thought_signature",
        fragments_tool_arguments=False, mid_stream_status=503,
        recordings=(
            Recording("gemini/stream_thoughts_text.sse", "reasoning", stream=True, model="gemini-2.5-flash",
                      reasoning="**Recalling the capital**\n\nThe user asks for the capital of France."
                                " That is Paris, a well-known fact.",
                      text="The capital of France is Paris.", finish="stop", usage=(12, 7 + 94), signed=True),
            Recording("gemini/stream_parallel_function_calls.sse", "tool_calls", stream=True,
                      model="gemini-3-pro-preview",
                      calls=(("get_weather", {"city": "Paris"}), ("get_weather", {"city": "London"})),
                      finish="tool_calls", usage=(64, 18 + 88), signed=True),
            Recording("gemini/response_function_call.json", "tool_calls", stream=False, model="gemini-3-pro-preview",
                      reasoning="I should look up the weather before answering.", text="Checking the weather now.",
                      calls=(("get_weather", {"city": "Paris", "unit": "celsius"}),),
                      finish="tool_calls", usage=(51, 22 + 48), signed=True),
            Recording("gemini/stream_error_mid_stream.sse", "mid_stream_error", stream=True,
                      text="Once upon", error_status=503),
            Recording("gemini/error_quota.json", "status_error", stream=False, status=429,
                      headers={"retry-after": "12"}, error_status=429, retry_after=12.0),
        ),
    ),
)


def cases(scenario: str, adapters: tuple[Adapter, ...] = ADAPTERS) -> list[Any]:
    """``adapters`` as pytest parameters for ``scenario``, xfail(strict) where a known failure is listed."""
    params = []
    for adapter in adapters:
        reason = adapter.known_failures.get(scenario)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(adapter, id=adapter.id, marks=marks))
    return params


def recording_cases(scenario: str, *kinds: RecordingKind) -> list[Any]:
    """Every adapter's recordings of ``kinds``, as (adapter, recording) pytest parameters for ``scenario``."""
    params = []
    for adapter in ADAPTERS:
        reason = adapter.known_failures.get(scenario)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        for recording in adapter.recordings:
            if recording.kind in kinds:
                name = Path(recording.path).stem
                params.append(pytest.param(adapter, recording, id=f"{adapter.id}-{name}", marks=marks))
    return params

"""The canonical chat request: what every surface produces and every provider consumes.

A message's content is an ordered list of parts, so that nothing a wire format can express is
lost on the way through: Anthropic interleaves thinking, text and tool_use blocks in one turn,
OpenAI puts tool calls beside the text. Opaque provider state (thinking signatures, Gemini
thought signatures) rides on the part that carries it and is replayed only to the provider
family that issued it (see ``ReasoningPart.origin``).

Every canonical field means the same whichever surface filled it. What only makes sense between
the same wire format on both sides travels in ``ChatRequest.passthrough``: an ``OpenAIPassthrough``
filled by the OpenAI surface and read only by the OpenAI-compatible translator, or an
``AnthropicPassthrough`` filled by the Anthropic surface and read only by the Anthropic one, or a
``ResponsesPassthrough`` filled by the Responses surface and read only by the Responses
translator. No provider asks which surface a request came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "developer", "user", "assistant", "tool"]


@dataclass(slots=True)
class TextPart:
    text: str
    # Anthropic prompt-caching marker ({"type": "ephemeral", "ttl": ...}); no OpenAI equivalent.
    cache_control: dict[str, Any] | None = None


@dataclass(slots=True)
class ImagePart:
    """An image by URL or as a ``data:<mime>;base64,...`` URL, as OpenAI carries it."""

    url: str
    detail: str | None = None
    cache_control: dict[str, Any] | None = None

    @property
    def is_data_url(self) -> bool:
        return self.url.startswith("data:")

    def split_data_url(self) -> tuple[str, str]:
        """Return (media_type, base64 data) of a data URL."""
        head, _, data = self.url.partition(",")
        media_type = head[5:].split(";", 1)[0] or "application/octet-stream"
        return media_type, data


@dataclass(slots=True)
class ReasoningPart:
    """Reasoning text with the opaque state its provider needs back on a later turn.

    ``signature`` is Anthropic's thinking signature or Gemini's thought signature;
    ``redacted`` holds the data of an Anthropic ``redacted_thinking`` block; ``signature`` is also
    the ``encrypted_content`` of an OpenAI Responses reasoning item. ``origin`` names the
    provider type that issued the opaque state ("anthropic", "gemini", ...): signatures are bound
    to their issuer and are dropped when the turn goes to another one.
    """

    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    origin: str | None = None
    # The issuer's id of the reasoning item (OpenAI Responses "rs_..."), sent back beside it.
    id: str | None = None


@dataclass(slots=True)
class ToolCallPart:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI carries it; Anthropic and Gemini take the parsed object
    # Gemini attaches a thought signature to the function call part itself.
    signature: str | None = None
    origin: str | None = None


Part = TextPart | ImagePart | ReasoningPart | ToolCallPart


@dataclass(slots=True)
class Message:
    role: Role
    content: list[Part] = field(default_factory=list)
    name: str | None = None
    tool_call_id: str | None = None  # role "tool": the call this message answers
    is_error: bool = False  # role "tool": Anthropic's tool_result.is_error

    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def tool_calls(self) -> list[ToolCallPart]:
        return [p for p in self.content if isinstance(p, ToolCallPart)]

    def reasoning(self) -> list[ReasoningPart]:
        return [p for p in self.content if isinstance(p, ReasoningPart)]


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # JSON Schema of the arguments object
    strict: bool | None = None
    cache_control: dict[str, Any] | None = None


@dataclass(slots=True)
class ToolChoice:
    mode: Literal["auto", "none", "required", "named"]
    name: str | None = None  # with mode "named"


@dataclass(slots=True)
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


@dataclass(slots=True, kw_only=True)
class OpenAIPassthrough:
    """What an OpenAI-format request carries for OpenAI-compatible upstreams only."""

    # Body fields the canonical request has no slot for, as sent; a field the translation sets wins.
    fields: dict[str, Any] = field(default_factory=dict)
    # Per-request headers for the upstream.
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class AnthropicPassthrough:
    """What an Anthropic Messages request carries for Anthropic upstreams only."""

    # Top-level fields as sent that the canonical request has no slot for (top_k, service_tier,
    # container, context_management, cache_control, ...), and thinking, output_config and metadata
    # whole beside their canonical translation, as they can say more than it (adaptive thinking,
    # display). Merged over the translation.
    fields: dict[str, Any] = field(default_factory=dict)
    # The strict flag of each tool that has one, by tool name: Anthropic's strict tool use.
    tool_strict: dict[str, bool] = field(default_factory=dict)
    # Per-request headers for the upstream (anthropic-beta).
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def thinking(self) -> dict[str, Any] | None:
        """The client's own thinking setting, which is then sent as given instead of derived."""
        value = self.fields.get("thinking")
        return value if isinstance(value, dict) else None

    @property
    def effort(self) -> str | None:
        """``output_config.effort``: in this format an effort of its own, not a thinking setting."""
        config = self.fields.get("output_config")
        value = config.get("effort") if isinstance(config, dict) else None
        return value if isinstance(value, str) else None


@dataclass(slots=True, kw_only=True)
class ResponsesPassthrough:
    """What an OpenAI Responses request carries for upstreams that speak the Responses API only."""

    # Body fields as sent that the canonical request has no slot for (include, truncation,
    # service_tier, prompt_cache_key, safety_identifier, max_tool_calls, top_logprobs, ...), and
    # ``text`` and ``reasoning`` whole beside their canonical translation where they say more than
    # it (verbosity, summary).
    fields: dict[str, Any] = field(default_factory=dict)
    # The built-in tools (web_search, file_search, code_interpreter, computer_use, mcp, ...) as
    # sent: they run on OpenAI's servers, so only an upstream that speaks Responses can take them.
    tools: list[dict[str, Any]] = field(default_factory=list)
    # The index of each of ``tools`` in the request's own ``tools`` array, for errors that name it.
    tool_indexes: list[int] = field(default_factory=list)
    # Per-request headers for the upstream.
    headers: dict[str, str] = field(default_factory=dict)


Passthrough = OpenAIPassthrough | AnthropicPassthrough | ResponsesPassthrough


@dataclass(slots=True, kw_only=True)
class ChatRequest:
    model: str
    messages: list[Message]
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    # "none" | "minimal" | "low" | "medium" | "high" | ... passed on as given (the list keeps growing).
    reasoning_effort: str | None = None
    # An explicit thinking budget in tokens (Anthropic budget_tokens, Gemini thinkingBudget).
    reasoning_budget: int | None = None
    include_usage: bool = False
    user: str | None = None
    metadata: dict[str, str] | None = None
    # What only an upstream of the client's own wire format receives (see the module docstring).
    passthrough: Passthrough | None = None


@dataclass(slots=True, kw_only=True)
class EmbeddingRequest:
    model: str
    input: list[str] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
    passthrough: OpenAIPassthrough | None = None


@dataclass(slots=True, kw_only=True)
class ModerationRequest:
    """Texts to classify for harm (OpenAI's ``/v1/moderations``), each judged on its own."""

    model: str
    input: list[str]

"""Token counts for requests, made before any provider has counted: an estimate and an upper bound.

``estimate_*``: about four characters per token, what OpenAI's and Anthropic's tokenizers give on
English text; images count as a flat amount. Used where a likely number is wanted: context-window
checks, tokens-per-minute limits, Anthropic's count_tokens for providers that have no counting
endpoint, and the usage of a stream that ended before its usage arrived.

``bound_*``: a number of tokens no provider's count exceeds, whatever the text; what a budget
reserves. A token of a byte-level BPE tokenizer (OpenAI's, Anthropic's, Llama 3's, Qwen's) is at
least one byte of UTF-8, and so is one of a SentencePiece tokenizer with byte fallback (Gemini's,
Mistral's), so a text of n UTF-8 bytes is at most n tokens: ``"!" * 8000`` is 8000 bytes, and
may well be 8000 tokens where the estimate says 2000. What a provider adds around the text is
bounded per message (role and separators: OpenAI documents 3-4 tokens, chat templates of open
models about 5), per request (the reply's priming, a template's own preamble) and, when tools are
offered, once for the prompt that introduces them (Anthropic documents up to 530 tokens). An
image is bounded by ``IMAGE_TOKENS_BOUND``. The bound is about four times the estimate on English
text: a budget reserves that much for a moment and settles at the real count.
"""

from __future__ import annotations

import orjson

from modelgate.schema.request import ChatRequest, ImagePart, ReasoningPart, TextPart, ToolCallPart

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4  # role and separators, per message
IMAGE_TOKENS = 765  # a 1024x1024 image at OpenAI's high detail

REQUEST_OVERHEAD_BOUND = 32  # the reply's priming and a chat template's preamble
MESSAGE_OVERHEAD_BOUND = 16  # role, name and separators of one message
PART_OVERHEAD_BOUND = 8  # a tool call's or tool definition's framing, a content block's
TOOLS_OVERHEAD_BOUND = 1024  # the prompt a provider puts before the tools (Anthropic: up to 530)
# An image at most: OpenAI's tile models count at most 1,445 (high detail, 2048x768), its patch
# models 1,536 patches times at most 2.46; Anthropic resizes to about 1.15 megapixels (~1,600);
# Gemini counts 258 per 768-pixel tile, 1,120 at high media resolution.
IMAGE_TOKENS_BOUND = 4096


def estimate_text_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def estimate_input_tokens(request: ChatRequest) -> int:
    total = 3  # the reply's priming
    for message in request.messages:
        total += MESSAGE_OVERHEAD
        for part in message.content:
            if isinstance(part, TextPart):
                total += estimate_text_tokens(part.text)
            elif isinstance(part, ImagePart):
                total += IMAGE_TOKENS
            elif isinstance(part, ToolCallPart):
                total += estimate_text_tokens(part.name) + estimate_text_tokens(part.arguments)
            elif isinstance(part, ReasoningPart):
                total += estimate_text_tokens(part.text)
    for tool in request.tools:
        total += estimate_text_tokens(tool.name) + estimate_text_tokens(tool.description or "")
        if tool.parameters:
            total += estimate_text_tokens(str(tool.parameters))
    return total


def utf8_length(text: str) -> int:
    """The length of ``text`` in UTF-8 bytes (a lone surrogate, as JSON can carry one, counts 3)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def bound_input_tokens(request: ChatRequest) -> int:
    """At least as many tokens as any provider counts for ``request``'s prompt (see the module docstring)."""
    total = REQUEST_OVERHEAD_BOUND
    for message in request.messages:
        total += MESSAGE_OVERHEAD_BOUND
        if message.name:
            total += utf8_length(message.name)
        for part in message.content:
            if isinstance(part, TextPart):
                total += PART_OVERHEAD_BOUND + utf8_length(part.text)
            elif isinstance(part, ImagePart):
                total += PART_OVERHEAD_BOUND + IMAGE_TOKENS_BOUND
            elif isinstance(part, ToolCallPart):
                total += PART_OVERHEAD_BOUND + utf8_length(part.id) + utf8_length(part.name) \
                    + utf8_length(part.arguments)
            elif isinstance(part, ReasoningPart):
                # Redacted thinking is counted by the thinking it hides, which its ciphertext outweighs.
                total += PART_OVERHEAD_BOUND + utf8_length(part.text) + len(part.redacted or "")
        if message.tool_call_id:
            total += utf8_length(message.tool_call_id)
    if request.tools:
        total += TOOLS_OVERHEAD_BOUND
        for tool in request.tools:
            total += PART_OVERHEAD_BOUND + utf8_length(tool.name) + utf8_length(tool.description or "")
            if tool.parameters:
                total += _json_length(tool.parameters)
    fmt = request.response_format
    if fmt is not None and fmt.schema:
        total += PART_OVERHEAD_BOUND + _json_length(fmt.schema) + utf8_length(fmt.description or "")
    return total


def _json_length(value: object) -> int:
    """UTF-8 bytes of a JSON value written out compactly: the schema a provider renders into the prompt."""
    try:
        return len(orjson.dumps(value))
    except TypeError:  # not from JSON (an integer past 64 bits): its text, quotes escaped
        return 2 * utf8_length(str(value))

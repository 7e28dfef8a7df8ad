"""Token estimates for requests, made before any provider has counted.

Used where a number is needed before the upstream answers: context-window checks, budget
reservations, tokens-per-minute limits, and Anthropic's count_tokens for providers that have no
counting endpoint. About four characters per token is what OpenAI's and Anthropic's tokenizers
give on English text; images count as a flat amount. The real usage from the upstream always
settles the books afterwards.
"""

from __future__ import annotations

from modelgate.schema.request import ChatRequest, ImagePart, ReasoningPart, TextPart, ToolCallPart

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4  # role and separators, per message
IMAGE_TOKENS = 765  # a 1024x1024 image at OpenAI's high detail


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

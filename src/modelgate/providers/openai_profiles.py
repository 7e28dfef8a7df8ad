"""Quirks of the OpenAI-compatible APIs, as data.

Each profile says how one API departs from OpenAI's own chat completions. A provider of type
``openai`` picks its profile by ``flavor`` (set in the config, or inferred from the base URL's
host by the config loader). See ../shared/reference/protocols.md for the sources.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OpenAIProfile:
    # OpenAI's reasoning models reject max_tokens; most compatible servers only know max_tokens.
    max_tokens_field: str = "max_tokens"
    # Mistral calls the seed random_seed.
    seed_field: str = "seed"
    # DeepSeek's thinking mode needs reasoning_content sent back on assistant turns with tool
    # calls (400 otherwise); others reject or ignore it.
    echo_reasoning: bool = False
    # Mistral accepts only tool call ids of exactly nine letters and digits.
    tool_call_id_length: int | None = None
    # Whether the API understands stream_options.include_usage.
    stream_usage: bool = True
    # Whether /embeddings takes encoding_format: base64.
    embeddings_base64: bool = True
    # Request fields this API answers with 400; dropped before sending.
    unsupported: frozenset[str] = frozenset()


PROFILES: dict[str, OpenAIProfile] = {
    "openai": OpenAIProfile(max_tokens_field="max_completion_tokens"),
    "azure": OpenAIProfile(max_tokens_field="max_completion_tokens"),
    "xai": OpenAIProfile(),
    "deepseek": OpenAIProfile(echo_reasoning=True),
    "mistral": OpenAIProfile(seed_field="random_seed", tool_call_id_length=9),
    "groq": OpenAIProfile(unsupported=frozenset({"logprobs", "top_logprobs", "logit_bias"})),
    "together": OpenAIProfile(),
    "fireworks": OpenAIProfile(),
    "github": OpenAIProfile(),
    "meta": OpenAIProfile(max_tokens_field="max_completion_tokens"),
    "vllm": OpenAIProfile(),
    # Ollama's /v1: no tool_choice, logit_bias, user or n (protocols.md §6.4).
    "ollama": OpenAIProfile(
        embeddings_base64=False, unsupported=frozenset({"tool_choice", "logit_bias", "user", "n"})),
    "lmstudio": OpenAIProfile(embeddings_base64=False),
    # The engines of providers/local.py (engines/llamacpp_worker.py, ray_app.py; vllm_worker.py runs vLLM).
    "local": OpenAIProfile(),
}


def profile_for(flavor: str) -> OpenAIProfile:
    return PROFILES.get(flavor, PROFILES["vllm"])

"""What the config says about one provider: where it is, how to authenticate, its quirks."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True, kw_only=True)
class ProviderSettings:
    name: str
    type: str
    base_url: str
    api_key: str | None = None
    api_version: str | None = None  # Azure's api-version query parameter
    headers: dict[str, str] = field(default_factory=dict)
    # Which OpenAI-compatible API this is (openai, xai, deepseek, mistral, vllm, ollama, ...):
    # selects the quirks profile of providers/openai_profiles.py.
    flavor: str = "openai"
    connect_timeout: float = 5.0
    proxy: str | None = None  # egress proxy URL (http://host:port); None: connect directly
    # Upstream exchanges (connections) this provider holds at once in one process; further
    # requests queue for up to their deployment's timeout.
    max_connections: int = 100
    # Type local: the model store's folder (catalog/model_store.py), absolute.
    models_dir: str | None = None

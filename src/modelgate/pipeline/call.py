"""One call through the pipeline: the request and everything the stages learn about it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from modelgate.auth import Principal
from modelgate.config.settings import DeploymentSettings
from modelgate.schema.request import ChatRequest, EmbeddingRequest


@dataclass(slots=True, kw_only=True)
class Call:
    request_id: str
    request: ChatRequest | EmbeddingRequest
    deployment: DeploymentSettings
    principal: Principal
    started: float = field(default_factory=time.monotonic)
    # Headers the stages want on the response (rate limits, what answered).
    response_headers: dict[str, str] = field(default_factory=dict)
    attempts: int = 0
    provider: str | None = None  # the provider that answered
    upstream_model: str | None = None

    @property
    def kind(self) -> str:
        return "embeddings" if isinstance(self.request, EmbeddingRequest) else "chat"

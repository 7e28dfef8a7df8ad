"""What is known about a model: context window, output limit, prices, capabilities."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, kw_only=True)
class ModelFacts:
    """Catalog facts about a model; prices in USD per million tokens."""

    context_window: int | None = None
    max_output_tokens: int | None = None
    input_price: float | None = None
    output_price: float | None = None
    cached_input_price: float | None = None
    cache_write_price: float | None = None
    capabilities: tuple[str, ...] = ()
    mode: str = "chat"  # "chat" | "embedding"

    def merged(self, override: ModelFacts) -> ModelFacts:
        """These facts with every fact ``override`` states put in their place."""
        return ModelFacts(
            context_window=override.context_window or self.context_window,
            max_output_tokens=override.max_output_tokens or self.max_output_tokens,
            input_price=_first(override.input_price, self.input_price),
            output_price=_first(override.output_price, self.output_price),
            cached_input_price=_first(override.cached_input_price, self.cached_input_price),
            cache_write_price=_first(override.cache_write_price, self.cache_write_price),
            capabilities=override.capabilities or self.capabilities,
            mode=override.mode if override.mode != "chat" else self.mode,
        )


def _first(a: float | None, b: float | None) -> float | None:
    return a if a is not None else b

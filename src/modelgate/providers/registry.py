"""Provider types by name: the config's ``type:`` picks the adapter class."""

from __future__ import annotations

from modelgate.providers.anthropic import AnthropicProvider
from modelgate.providers.azure import AzureProvider
from modelgate.providers.base import Provider
from modelgate.providers.gemini import GeminiProvider
from modelgate.providers.local import LocalProvider
from modelgate.providers.openai_compat import OpenAICompatProvider
from modelgate.providers.settings import ProviderSettings
from modelgate.providers.transport import Transport

PROVIDER_TYPES: dict[str, type[Provider]] = {
    "openai": OpenAICompatProvider,
    "azure": AzureProvider,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
    "local": LocalProvider,
}


def create_provider(settings: ProviderSettings, transport: Transport) -> Provider:
    """The adapter of ``settings.type``, sending through ``transport`` (the gateway's ``HTTPClient``)."""
    try:
        kind = PROVIDER_TYPES[settings.type]
    except KeyError:
        raise ValueError(f"provider type {settings.type!r} is not available in this build") from None
    return kind(settings, transport)

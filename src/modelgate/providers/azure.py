"""Provider type ``azure``: Azure OpenAI.

Two URL layouts (protocols.md §6.6): the classic data plane,
``{base}/openai/deployments/{deployment}/{operation}?api-version=...``, where the upstream model is
the Azure deployment's name; and the v1 API, ``{base}/openai/v1/{operation}``, chosen by leaving
``api_version`` unset (or setting it to "v1"), where the body's model names the deployment.
The Responses API (a target with ``api: responses``) is ``{base}/openai/v1/responses``, or on the
classic layout ``{base}/openai/responses?api-version=...``, with the deployment named by the body's
model either way. Auth is the ``api-key`` header.
"""

from __future__ import annotations

from urllib.parse import quote

from modelgate.providers.openai_compat import OpenAICompatProvider


class AzureProvider(OpenAICompatProvider):
    profile_name = "azure"
    serves_moderations = False  # Azure filters content itself; it has no /moderations

    def auth_headers(self) -> dict[str, str]:
        return {"api-key": self.settings.api_key} if self.settings.api_key else {}

    def url(self, operation: str, model: str) -> str:
        base = self.settings.base_url
        version = self.settings.api_version
        if base.endswith("/openai/v1"):
            return f"{base}/{operation}"
        if version in (None, "v1", "latest", "preview"):
            return f"{base}/openai/v1/{operation}"
        if operation == "responses":
            return f"{base}/openai/responses?api-version={version}"
        return f"{base}/openai/deployments/{quote(model, safe='')}/{operation}?api-version={version}"

"""The ``api-version`` query parameter: which versions each kind of Azure route serves.

The dated routes (``/openai/deployments/...``, ``/openai/models``, ``/openai/responses``) need one
(https://learn.microsoft.com/azure/ai-foundry/openai/api-version-lifecycle); the Responses API
arrived in ``2025-03-01-preview``. The v1 routes need none, and take ``preview`` to opt into
preview features. A missing or unserved version answers 404, as Azure does (platform.md §1), with
a message naming the versions that are served.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from modelgate.schema.errors import NotFound

GA_VERSIONS = ("2023-05-15", "2024-02-01", "2024-06-01", "2024-10-21")
PREVIEW_VERSIONS = (
    "2024-08-01-preview", "2024-09-01-preview", "2024-10-01-preview", "2024-12-01-preview",
    "2025-01-01-preview", "2025-02-01-preview", "2025-03-01-preview", "2025-04-01-preview",
)
DATED_VERSIONS = frozenset(GA_VERSIONS + PREVIEW_VERSIONS)
RESPONSES_VERSIONS = frozenset(("2025-03-01-preview", "2025-04-01-preview"))
V1_VERSIONS = frozenset(("preview",))
RESOURCE_NOT_FOUND = "404"  # Azure's error code for a route or api-version it does not serve


def api_version(query: bytes) -> str | None:
    """The ``api-version`` of a query string; None when absent or empty."""
    values = parse_qs(query.decode("latin-1")).get("api-version")
    return values[-1] if values else None


def check_version(query: bytes, served: frozenset[str], path: str) -> None:
    """Refuse a request to ``path`` whose api-version is missing or not in ``served``."""
    version = api_version(query)
    if version in served:
        return
    names = ", ".join(sorted(served))
    if version is None:
        problem = "the api-version query parameter is required"
    else:
        problem = f"api-version '{version[:40]}' is not served"
    raise NotFound(f"Resource not found: {problem} on {path}. Add ?api-version= with one of: {names} "
                   "(or call /openai/v1/..., which needs no api-version).", code=RESOURCE_NOT_FOUND)


def check_v1_version(query: bytes, path: str) -> None:
    """The v1 routes take no api-version, or ``preview``."""
    version = api_version(query)
    if version is None or version in V1_VERSIONS:
        return
    raise NotFound(f"Resource not found: api-version '{version[:40]}' is not served on {path}. The v1 API "
                   "needs no api-version; send none, or api-version=preview for preview features.",
                   code=RESOURCE_NOT_FOUND)

"""The response cache's settings: ``cache:`` on a deployment (what it caches and how), and the
top-level ``cache:`` section (how much the process keeps)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from modelgate.config.fields import Key, at_least, positive

MODES = ("exact", "semantic")
SCOPES = ("project", "global")
MAX_TTL_S = 30 * 86_400


def _ttl(seconds: int) -> str | None:
    return None if 1 <= seconds <= MAX_TTL_S else f"must be a whole number of seconds from 1 to {MAX_TTL_S} (30 days)"


def _threshold(value: float) -> str | None:
    return None if 0.5 <= value <= 1 else \
        "must be a cosine similarity between 0.5 and 1 (docs/semantic-cache-precision.md measures each)"


@dataclass(slots=True, kw_only=True)
class DeploymentCache:
    """``cache:`` on a deployment: its answers are kept and given again to the same request."""

    # exact: the same request after normalisation; semantic: the same conversation but for a last
    # user turn that means the same (its embedding within ``threshold``).
    mode: Annotated[str, Key(choices=MODES)] = "exact"
    # Seconds an answer is kept.
    ttl: Annotated[int, Key("a whole number of seconds", _ttl)] = 3600
    # project: a project's answers are given to its own requests only; global: to every caller of
    # the deployment (answers that hold nothing of any tenant's, e.g. a public FAQ).
    scope: Annotated[str, Key(choices=SCOPES)] = "project"
    # Only requests that ask for the same answer each time are cached: temperature 0, or a seed.
    # false: any request (an answer that was sampled is given again as it was).
    deterministic_only: Annotated[bool, Key("true or false")] = True
    threshold: Annotated[float, Key("a number between 0.5 and 1", _threshold)] = 0.95
    # local: all-MiniLM-L6-v2 in this process; else the name of an embeddings deployment.
    embedder: Annotated[str, Key("local, or the name of an embeddings deployment")] = "local"


@dataclass(slots=True, kw_only=True)
class CacheSettings:
    """The top-level ``cache:`` section: the process's own store of answers (the deployments'
    ``cache:`` say what is cached; ``redis_url`` shares the store between processes)."""

    # The most the in-process store holds, in MiB; the least recently used answers go first.
    memory_mb: Annotated[int, Key("a whole number of MiB", positive("must be a positive number of MiB"))] = 256
    # An answer larger than this is not cached (KiB).
    max_entry_kb: Annotated[int, Key("a whole number of KiB", at_least(1, "must be 1 or more"))] = 1024

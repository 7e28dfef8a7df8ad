"""The top-level ``secret_key``: what the gateway seals the state it hands to clients with
(``pipeline/sealing.py``). Unset, a key is generated at the first start and kept in the database,
shared by every process on it (``storage/secrets.py``)."""

from __future__ import annotations

MIN_SECRET_CHARS = 32


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` cannot be the gateway's secret; None if it can. Any text of 32 characters or
    more will do: the key is derived from it, so a random one of that length has 256 bits or near."""
    if len(secret) < MIN_SECRET_CHARS:
        return (f"is {len(secret)} characters long; use at least {MIN_SECRET_CHARS} random characters "
                "(e.g. the output of `openssl rand -base64 32`), or remove the key to have one generated "
                "and kept in the database")
    return None

"""The ``responses:`` section: how long stored responses are kept (the Responses API's
``store``, Anthropic's message threads; storage/responses.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from modelgate.config.fields import Key

DEFAULT_RETENTION_DAYS = 30
MAX_RETENTION_DAYS = 36_500


def _retention(days: int) -> str | None:
    if days < 0:
        return "must be a whole number of days, 1 or more (0 means the default, 30)"
    if days > MAX_RETENTION_DAYS:
        return f"must be at most {MAX_RETENTION_DAYS} days (100 years)"
    return None


@dataclass(slots=True, kw_only=True)
class ResponsesSettings:
    """Stored responses (storage/responses.py)."""

    # Days a stored response is kept after it was made; then a background task deletes it. 0 or
    # absent: the default, 30 days (OpenAI's own retention of stored responses).
    retention_days: Annotated[int, Key("a whole number of days", _retention)] = DEFAULT_RETENTION_DAYS

    def __post_init__(self) -> None:
        if self.retention_days == 0:
            self.retention_days = DEFAULT_RETENTION_DAYS

    @property
    def retention_s(self) -> int:
        return self.retention_days * 86_400

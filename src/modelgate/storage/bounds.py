"""What the columns hold, and values brought within it.

A value the database refuses fails its whole write: PostgreSQL takes no NUL character in a text,
neither database's driver can encode a lone surrogate, PostgreSQL refuses a text longer than its
VARCHAR and an integer past its column's width (SQLite past 64 bits), SQLite stores a NaN as NULL
(refused where the column is NOT NULL). ``storable`` brings a usage record within what its
columns hold; the admin API checks its input against the same bounds (``auth/keyadmin.py``), and
the response store the ids and projects of stored responses (``response_problem``).

The bounds are read from the tables (``tables.py``), plus two that keep sums and budgets exact:
token counts up to ``MAX_TOKENS`` per record (millions of such records still sum within a 64-bit
integer, which SQLite's ``sum`` needs) and amounts up to ``MAX_USD`` (as nano-dollars, what budgets
count in, that fits a 64-bit integer with room to add).
"""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import BigInteger, Float, Integer, SmallInteger, String, Table

from modelgate.storage.records import LimitFields, UsageRecord
from modelgate.storage.tables import api_keys, responses, usage

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
MAX_TOKENS = 10**12  # per usage record: a trillion tokens
MAX_USD = 1e9  # per usage record, and per budget
MAX_FLOAT = 1e15  # other measures (milliseconds)
TEXT_LIMIT = 1000  # characters, for text columns without a length of their own


def text_length(table: Table, name: str) -> int:
    """The most characters the column ``name`` of ``table`` holds (``TEXT_LIMIT`` for unbounded text)."""
    length = getattr(table.c[name].type, "length", None)
    return int(length) if length else TEXT_LIMIT


def int_max(table: Table, name: str) -> int:
    """The largest integer the column ``name`` of ``table`` holds."""
    kind = table.c[name].type
    if isinstance(kind, BigInteger):
        return INT64_MAX
    if isinstance(kind, SmallInteger):
        return 2**15 - 1
    return INT32_MAX


# The largest limits a key or project may carry: what the columns hold, and what the limiters count
# exactly (the Redis limiter's script prints numbers of 15 digits or more in exponent form).
MAX_RPM = int_max(api_keys, "rpm")
MAX_TPM = min(int_max(api_keys, "tpm"), MAX_TOKENS)
MAX_BUDGET = MAX_USD


Limited = TypeVar("Limited", bound=LimitFields)


def bounded_limits(limits: Limited) -> Limited:
    """``limits`` (changed in place, and returned) within ``MAX_RPM``, ``MAX_TPM`` and
    ``MAX_BUDGET``: limits stored before the admin API checked them still work."""
    if limits.rpm is not None and limits.rpm > MAX_RPM:
        limits.rpm = MAX_RPM
    if limits.tpm is not None and limits.tpm > MAX_TPM:
        limits.tpm = MAX_TPM
    if limits.budget is not None and not 0 <= limits.budget <= MAX_BUDGET:
        limits.budget = MAX_BUDGET if limits.budget > 0 else 0.0  # NaN: no budget left
    return limits


def clean_text(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters, without NUL characters and lone surrogates."""
    value = value[:limit]
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # Through UTF-16: a pair of surrogates becomes its character, a lone one is dropped.
            value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "ignore")
    return value


def text_problem(value: str, limit: int) -> str | None:
    """Why the database could not store ``value`` in a column of ``limit`` characters; None if it can."""
    if len(value) > limit:
        return f"is {len(value)} characters long; at most {limit} are allowed"
    if "\x00" in value:
        return "contains a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate, which is not valid Unicode text"
    return None


# The ids of stored responses ("resp_...", "msg_...") and the projects they belong to.
RESPONSE_ID_LENGTH = text_length(responses, "id")
PROJECT_LENGTH = text_length(responses, "project")
RESPONSE_KINDS = ("response", "thread")


def response_id_problem(value: object) -> str | None:
    """Why ``value`` cannot be the id of a stored response; None if it can. Ids come from clients
    (``previous_response_id``), so a lookup checks them before the database sees them."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    return text_problem(value, RESPONSE_ID_LENGTH)


def response_problem(id: object, project: object, kind: object, previous_id: object) -> str | None:
    """Why a response with these values cannot be stored; None if it can."""
    problem = response_id_problem(id)
    if problem:
        return f"id {problem}"
    if project is not None:
        if not isinstance(project, str):
            return "project must be a string or None"
        problem = text_problem(project, PROJECT_LENGTH)
        if problem:
            return f"project {problem}"
    if kind not in RESPONSE_KINDS:
        return f"kind must be one of {', '.join(RESPONSE_KINDS)}, got {kind!r}"
    if previous_id is not None:
        problem = response_id_problem(previous_id)
        if problem:
            return f"previous_id {problem}"
    return None


def bounded_int(value: Any, top: int) -> int:
    """``value`` as a whole number from 0 to ``top``; 0 for what is not a finite number."""
    if type(value) is not int:
        # bool and IntEnum are ints too; a float is cut to its whole part.
        if not (isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))):
            return 0
        value = int(value)
    return 0 if value < 0 else top if value > top else value


def bounded_float(value: Any, top: float) -> float | None:
    """``value`` as a number from 0 to ``top``; None for what is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return 0.0 if value < 0 else top if value > top else value


def _usage_columns() -> tuple[list[tuple[str, int, bool]], list[tuple[str, int]], list[tuple[str, float, bool]]]:
    texts: list[tuple[str, int, bool]] = []
    ints: list[tuple[str, int]] = []
    floats: list[tuple[str, float, bool]] = []
    for field in fields(UsageRecord):
        if field.name not in usage.c:
            continue
        column = usage.c[field.name]
        kind = column.type
        if isinstance(kind, String):  # Text too
            texts.append((field.name, text_length(usage, field.name), bool(column.nullable)))
        elif isinstance(kind, Integer):
            top = int_max(usage, field.name)
            ints.append((field.name, min(top, MAX_TOKENS) if field.name.endswith("_tokens") else top))
        elif isinstance(kind, Float):
            top_value = MAX_USD if field.name in ("cost", "price") else MAX_FLOAT
            floats.append((field.name, top_value, bool(column.nullable)))
    return texts, ints, floats


_TEXTS, _INTS, _FLOATS = _usage_columns()


def storable(record: UsageRecord) -> UsageRecord:
    """``record`` (changed in place, and returned) within what the usage columns hold: texts
    without NUL characters and lone surrogates, cut to their column's length; a text column given
    a number gets its digits, given anything else None (or "" where it is NOT NULL); counts are whole
    numbers from 0 to their bound, amounts finite numbers from 0 to theirs."""
    for name, limit, nullable in _TEXTS:
        value = getattr(record, name)
        if type(value) is str:
            if len(value) <= limit and value.isascii() and "\x00" not in value:
                continue  # the common case, checked fast
            setattr(record, name, clean_text(value, limit))
        elif value is None and nullable:
            continue
        elif isinstance(value, int | float) and not isinstance(value, bool):
            setattr(record, name, clean_text(str(value), limit))
        else:
            setattr(record, name, None if nullable else "")
    for name, top in _INTS:
        value = getattr(record, name)
        if type(value) is not int or value < 0 or value > top:
            setattr(record, name, bounded_int(value, top))
    for name, top_value, nullable in _FLOATS:
        value = getattr(record, name)
        if type(value) is not float or not 0.0 <= value <= top_value:  # NaN fails the comparison too
            bounded = bounded_float(value, top_value)
            setattr(record, name, bounded if bounded is not None or nullable else 0.0)
    if not isinstance(record.created_at, datetime):
        record.created_at = datetime.now(UTC)
    return record

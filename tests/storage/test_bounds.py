"""Usage records within what the columns hold, and the database's refusals named as such."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from modelgate.storage import DataRejected, Storage, UsageFilters, UsageRecord
from modelgate.storage.bounds import INT32_MAX, MAX_TOKENS, MAX_USD, TEXT_LIMIT, clean_text, storable, text_problem
from modelgate.storage.tables import usage

T0 = datetime(2030, 1, 31, 12, tzinfo=UTC)


def record(request_id: str, **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "created_at": T0, "project": "p", "key_id": "key_a", "deployment": "chat", "provider": "openai",
        "model": "gpt-4o", "route": "chat", "input_tokens": 100, "output_tokens": 50, "cost": 0.25, "price": 0.5,
        "latency_ms": 12.5, "ttft_ms": None, "status": 400, "attempts": 1, "error": None}
    values.update(fields)
    return UsageRecord(request_id=request_id, **values)


# What an upstream or a client can put in a record, and what the database refuses of it raw.
HOSTILE: dict[str, dict[str, Any]] = {
    "nul-in-error": {"error": "invalid_value: 'x\x00y'"},
    "lone-surrogate": {"error": "bad \ud800 text", "model": "m\udfff"},
    "model-a-number": {"model": 123},
    "model-an-object": {"model": {"id": "gpt-4o"}},
    "provider-a-list": {"provider": ["openai"]},
    "long-model": {"model": "m" * 5000},
    "long-error": {"error": "e" * 100_000},
    "huge-tokens": {"input_tokens": 2**64, "output_tokens": -5, "reasoning_tokens": 1.5e300},
    "tokens-as-text": {"input_tokens": "12", "cached_input_tokens": None},
    "nan-cost": {"cost": math.nan, "price": math.inf, "ttft_ms": math.nan},
    "huge-status": {"status": 2**40, "attempts": -1},
}


def test_clean_text_removes_what_no_database_stores() -> None:
    assert clean_text("a\x00b", 10) == "ab"
    # A lone surrogate goes; a pair of them is the character it encodes.
    assert clean_text("a\ud83d\ude00b\ud800c", 10) == "a\U0001f600bc"
    assert clean_text("x" * 50, 20) == "x" * 20
    assert clean_text("plain", 20) == "plain"


def test_text_problem_says_what_is_wrong() -> None:
    assert text_problem("ok", 10) is None
    assert text_problem("a\x00b", 10) == "contains a NUL character"
    assert text_problem("x" * 11, 10) == "is 11 characters long; at most 10 are allowed"
    assert "surrogate" in (text_problem("a\udc00", 10) or "")


def test_a_clean_record_is_left_as_it_is() -> None:
    clean = record("r1", error="upstream said no", ttft_ms=3.5)
    assert storable(replace(clean)) == clean


def test_hostile_values_are_brought_within_the_columns() -> None:
    made = {name: storable(record(name, **fields)) for name, fields in HOSTILE.items()}
    assert made["nul-in-error"].error == "invalid_value: 'xy'"
    assert (made["lone-surrogate"].error, made["lone-surrogate"].model) == ("bad  text", "m")
    assert made["model-a-number"].model == "123"
    assert made["model-an-object"].model is None
    assert made["provider-a-list"].provider is None
    assert made["long-model"].model == "m" * 200
    assert made["long-error"].error == "e" * TEXT_LIMIT
    huge = made["huge-tokens"]
    assert (huge.input_tokens, huge.output_tokens, huge.reasoning_tokens) == (MAX_TOKENS, 0, MAX_TOKENS)
    assert (made["tokens-as-text"].input_tokens, made["tokens-as-text"].cached_input_tokens) == (0, 0)
    nan = made["nan-cost"]
    assert (nan.cost, nan.price, nan.ttft_ms) == (0.0, 0.0, None)
    assert storable(record("dear", cost=5e12)).cost == MAX_USD
    assert (made["huge-status"].status, made["huge-status"].attempts) == (INT32_MAX, 0)


async def test_records_made_storable_are_all_taken_by_the_database(storage: Storage) -> None:
    batch = [storable(record(name, **fields)) for name, fields in HOSTILE.items()]
    assert await storage.write_usage(batch) == len(batch)
    async with storage.db.read() as conn:
        rows = {row.request_id: row for row in (await conn.execute(select(usage))).all()}
    assert rows["nul-in-error"].error == "invalid_value: 'xy'"
    assert rows["model-a-number"].model == "123"
    assert rows["long-error"].error == "e" * TEXT_LIMIT
    assert rows["huge-tokens"].input_tokens == MAX_TOKENS
    assert (rows["nan-cost"].cost, rows["nan-cost"].ttft_ms) == (0.0, None)
    assert rows["huge-status"].status == INT32_MAX
    # Reports over them add up, on both databases.
    [total] = await storage.query_usage(UsageFilters())
    assert total.requests == len(batch)


# Values each database refuses when written raw.
REFUSED: dict[str, dict[str, dict[str, Any]]] = {
    "sqlite": {"lone-surrogate": {"error": "bad \ud800 text"}, "huge-tokens": {"input_tokens": 2**63},
               "nan-cost": {"cost": math.nan}},
    "postgresql": {"nul-in-error": {"error": "x\x00y"}, "lone-surrogate": {"error": "bad \ud800 text"},
                   "model-a-number": {"model": 123}, "long-model": {"model": "m" * 201},
                   "huge-tokens": {"input_tokens": 2**63}, "huge-status": {"status": 2**31}},
}


async def test_a_value_the_database_cannot_hold_is_refused_as_data_rejected(storage: Storage) -> None:
    for name, fields in REFUSED[storage.dialect].items():
        with pytest.raises(DataRejected, match="refused the values"):
            await storage.write_usage([record("good"), record(name, **fields)])
    # Nothing of the refused batches was written, and the database works on.
    assert await storage.write_usage([record("good")]) == 1

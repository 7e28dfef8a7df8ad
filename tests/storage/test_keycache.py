"""The key cache: a change costs what it touches, whatever the number of keys held.

Cost is counted, not timed: the lines of auth/keystore.py that run for one change, traced."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import pytest

from modelgate.auth import keystore
from modelgate.auth.keystore import KeyCache, hash_key
from modelgate.storage import KeyChanges, KeyRecord, ProjectRecord
from modelgate.storage.records import ActiveKeys

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def key(i: int, project: str = "p", revision: int = 1, **fields: Any) -> KeyRecord:
    return KeyRecord(id=f"key_{i}", project=project, key_hash=hash_key(f"mg-{i}"), prefix="mg-", created_at=NOW,
                     revision=revision, **fields)


def cache_of(count: int, projects: int = 10, rows: bool = True) -> KeyCache:
    """A cache of ``count`` keys, loaded as a gateway starts (rows) or from records."""
    keys = [key(i, f"p{i % projects}") for i in range(count)]
    known = [ProjectRecord(name=f"p{j}", created_at=NOW) for j in range(projects)]
    cache = KeyCache()
    if rows:
        cache.load_rows(ActiveKeys(revision=1, projects=known, rows=[
            (k.id, k.project, k.key_hash, None, k.rpm, k.tpm, k.budget, k.budget_period, None) for k in keys]))
    else:
        cache.load(KeyChanges(revision=1, keys=keys, projects=known))
    return cache


def lines_run(action: Callable[[], object]) -> int:
    """How many lines of auth/keystore.py ``action`` runs (comprehensions included)."""
    count = 0

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if frame.f_code.co_filename != keystore.__file__:
            return None
        if event == "line":
            count += 1
        return trace

    sys.settrace(trace)
    try:
        action()
    finally:
        sys.settrace(None)
    return count


@pytest.mark.parametrize("rows", [True, False], ids=["loaded as rows", "loaded as records"])
def test_a_key_change_runs_the_same_lines_at_1000_and_at_20000_keys(rows: bool) -> None:
    costs = []
    for count in (1_000, 20_000):
        cache = cache_of(count, rows=rows)
        created = key(count + 1, "p3", revision=2)
        revoked = key(5, "p5", revision=3, revoked_at=NOW)
        costs.append((lines_run(lambda: cache.apply(KeyChanges(revision=2, keys=[created]))),  # noqa: B023
                      lines_run(lambda: cache.apply(KeyChanges(revision=3, keys=[revoked])))))  # noqa: B023
        assert cache.lookup("mg-5") is None and cache.lookup(f"mg-{count + 1}") is not None
    assert costs[0] == costs[1]


@pytest.mark.parametrize("rows", [True, False], ids=["loaded as rows", "loaded as records"])
def test_a_project_change_runs_lines_for_its_own_keys_only(rows: bool) -> None:
    costs = []
    for count in (1_000, 20_000):
        cache = cache_of(count, projects=count // 10, rows=rows)  # ten keys in each project
        change = KeyChanges(revision=2, projects=[ProjectRecord(name="p7", created_at=NOW, revision=2, rpm=5)])
        costs.append(lines_run(lambda: cache.apply(change)))  # noqa: B023
        principal = cache.lookup("mg-7")
        assert principal is not None and principal.project_limits.rpm == 5
        other = cache.lookup("mg-8")
        assert other is not None and other.project_limits.rpm is None
    assert costs[0] == costs[1]


def test_principals_are_made_when_keys_are_first_used_and_again_after_a_change() -> None:
    cache = cache_of(1_000)
    assert len(cache) == 1_000 and cache.principals_built == 0
    first = cache.lookup("mg-3")
    assert first is not None and cache.lookup("mg-3") is first and cache.principals_built == 1
    cache.apply(KeyChanges(revision=2, projects=[ProjectRecord(name="p3", created_at=NOW, revision=2,
                                                               deployments=["chat"], budget=1.0)]))
    changed = cache.lookup("mg-3")
    assert changed is not None and changed.deployments == frozenset({"chat"})
    assert changed.project_limits.budget == 1.0 and cache.principals_built == 2


def test_the_cache_knows_whether_any_budget_exists_and_says_when_one_appears() -> None:
    appeared: list[bool] = []
    cache = cache_of(100)
    cache.on_budget_added = lambda: appeared.append(True)
    assert not cache.has_budgets
    cache.apply(KeyChanges(revision=2, keys=[key(7, "p7", revision=2, budget=5.0)]))
    assert cache.has_budgets and appeared == [True]
    cache.apply(KeyChanges(revision=3, keys=[key(7, "p7", revision=3, revoked_at=NOW, budget=5.0)]))
    assert not cache.has_budgets
    cache.apply(KeyChanges(revision=4, projects=[ProjectRecord(name="p1", created_at=NOW, revision=4, budget=2.0)]))
    assert cache.has_budgets and appeared == [True, True]
    cache.apply(KeyChanges(revision=5, projects=[ProjectRecord(name="p1", created_at=NOW, revision=5)]))
    assert not cache.has_budgets

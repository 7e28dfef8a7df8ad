"""Projects and keys in the database, and the revision counter the gateways follow."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from modelgate.storage import AlreadyExists, LimitFields, RecordNotFound, Storage, StorageError


async def new_key(storage: Storage, id: str, project: str = "p", **limits: object) -> int:
    record = await storage.keys.create_key(
        id=id, project=project, key_hash=hashlib.sha256(id.encode()).hexdigest(), prefix="mg-abc",
        limits=LimitFields(**limits))  # type: ignore[arg-type]
    return record.revision


async def test_projects_keep_their_limits_and_names_are_unique(storage: Storage) -> None:
    created = await storage.keys.create_project("team-a", LimitFields(deployments=["chat"], rpm=10, budget=5.0,
                                                                      budget_period="day"))
    assert created.created_at.tzinfo is UTC
    stored = await storage.keys.get_project("team-a")
    assert stored is not None
    assert (stored.deployments, stored.rpm, stored.tpm, stored.budget, stored.budget_period) == (
        ["chat"], 10, None, 5.0, "day")
    with pytest.raises(AlreadyExists):
        await storage.keys.create_project("team-a")
    changed = await storage.keys.update_project("team-a", {"rpm": None, "tpm": 1000})
    assert (changed.rpm, changed.tpm, changed.budget) == (None, 1000, 5.0)
    assert changed.revision > created.revision
    with pytest.raises(RecordNotFound):
        await storage.keys.update_project("nobody", {"rpm": 1})
    with pytest.raises(StorageError, match="budget_period"):
        await storage.keys.update_project("team-a", {"budget_period": "week"})
    assert [p.name for p in await storage.keys.list_projects()] == ["team-a"]


async def test_a_key_creates_its_project_unless_told_not_to(storage: Storage) -> None:
    with pytest.raises(RecordNotFound):
        await storage.keys.create_key(id="key_x", project="new", key_hash="x" * 64, prefix="mg-x",
                                      create_project=False)
    assert await storage.keys.get_project("new") is None
    await new_key(storage, "key_1", project="new", deployments=None, tpm=500)
    project = await storage.keys.get_project("new")
    assert project is not None and project.rpm is None
    key = await storage.keys.get_key("key_1")
    assert key is not None
    assert (key.project, key.deployments, key.tpm, key.revoked_at) == ("new", None, 500, None)
    with pytest.raises(AlreadyExists):
        await new_key(storage, "key_1")


async def test_revoking_is_recorded_once_and_hidden_from_the_default_list(storage: Storage) -> None:
    await new_key(storage, "key_1")
    await new_key(storage, "key_2", project="q")
    revoked = await storage.keys.revoke_key("key_1")
    assert revoked.revoked_at is not None
    again = await storage.keys.revoke_key("key_1")
    assert (again.revoked_at, again.revision) == (revoked.revoked_at, revoked.revision)
    assert [k.id for k in await storage.keys.list_keys()] == ["key_2"]
    assert [k.id for k in await storage.keys.list_keys(include_revoked=True)] == ["key_1", "key_2"]
    assert [k.id for k in await storage.keys.list_keys(project="q")] == ["key_2"]
    with pytest.raises(RecordNotFound, match="modelgate keys list"):
        await storage.keys.revoke_key("key_nope")


async def test_changes_since_a_revision_are_exact(storage: Storage) -> None:
    start = await storage.keys.revision()
    assert await storage.keys.changes_since(start) is None
    r1 = await new_key(storage, "key_1")
    r2 = await new_key(storage, "key_2")
    assert start < r1 < r2
    seen = await storage.keys.changes_since(r1)
    assert seen is not None
    assert (seen.revision, [k.id for k in seen.keys], seen.projects) == (r2, ["key_2"], [])
    revoked = await storage.keys.revoke_key("key_1")
    seen = await storage.keys.changes_since(r2)
    assert seen is not None and [(k.id, k.revoked_at) for k in seen.keys] == [("key_1", revoked.revoked_at)]
    loaded = await storage.keys.load_active()
    assert loaded.revision == revoked.revision
    assert [k.id for k in loaded.keys] == ["key_2"]
    assert [p.name for p in loaded.projects] == ["p"]


async def test_concurrent_changes_take_distinct_revisions(storage: Storage) -> None:
    start = await storage.keys.revision()
    revisions = await asyncio.gather(*(new_key(storage, f"key_{i}", project=f"p{i % 3}") for i in range(12)))
    assert sorted(revisions) == list(range(start + 1, start + 13))
    changes = await storage.keys.changes_since(start)
    assert changes is not None and len(changes.keys) == 12 and len(changes.projects) == 3


async def test_expiry_is_stored_as_utc(storage: Storage) -> None:
    expires = datetime(2030, 6, 1, 12, tzinfo=UTC) + timedelta(microseconds=5)
    await storage.keys.create_key(id="key_e", project="p", key_hash="e" * 64, prefix="mg-e", expires_at=expires)
    key = await storage.keys.get_key("key_e")
    assert key is not None and key.expires_at == expires


async def test_projects_created_at_once_under_one_name_make_one_and_already_exists(storage: Storage) -> None:
    results = await asyncio.gather(*(storage.keys.create_project("same") for _ in range(6)), return_exceptions=True)
    made = [r for r in results if not isinstance(r, BaseException)]
    assert len(made) == 1
    assert all(isinstance(r, AlreadyExists) for r in results if isinstance(r, BaseException)), results

"""Project keys: made, hashed, and held in memory so that checking one costs no database trip.

A key is ``mg-`` and 43 URL-safe characters (256 random bits). Only its SHA-256 is stored: a
slow password hash buys nothing for a random secret that long, and one fast hash keeps the
lookup on the request path at about a microsecond. The ``KeyCache`` maps hashes to principals
for every key not revoked; ``auth/keysync.py`` keeps it in step with the database.
"""

from __future__ import annotations

import gc
import hashlib
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from modelgate.pipeline.contract import Limits, Principal
from modelgate.schema.errors import AuthenticationFailed
from modelgate.storage.bounds import bounded_limits
from modelgate.storage.keys import row_deployments, row_time
from modelgate.storage.records import ActiveKeyRow, ActiveKeys, KeyChanges, KeyRecord, LimitFields, ProjectRecord

KEY_PREFIX = "mg-"
SHOWN_PREFIX = 10  # characters of a key kept in clear to recognise it in lists ("mg-" + 7)


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class ActiveKey:
    id: str
    principal: Principal
    expires_at: float | None  # seconds since the epoch


_Entry = KeyRecord | ActiveKeyRow  # a key as changed (a record) or as loaded at start-up (a row)
# Where an ActiveKeyRow holds what the cache indexes by.
_ID, _PROJECT, _HASH, _BUDGET = 0, 1, 2, 6


class KeyCache:
    """The keys not revoked, by hash, with the principal each one authenticates as.

    A change costs what it touches: a key's own entries, or, for a project, those of its keys
    (found through ``_by_project``), never a pass over every key. At start-up each key is kept as
    the row read (``load_rows``); its principal is made when it is first used."""

    def __init__(self) -> None:
        self.revision = 0  # every change up to this revision is applied
        self._keys: dict[str, _Entry] = {}  # by id
        self._projects: dict[str, ProjectRecord] = {}
        # By hash: the key's principal once made, its record or row until then.
        self._by_hash: dict[str, ActiveKey | _Entry] = {}
        self._by_project: dict[str, set[str]] = {}  # key ids by project
        # Who has a budget: what the budget sync (budgets/sync.py) needs to read spend for.
        self._budgeted: set[tuple[str, str]] = set()  # ("key", id) | ("project", name)
        self.on_budget_added: Callable[[], None] | None = None
        self.principals_built = 0

    def __len__(self) -> int:
        return len(self._by_hash)

    @property
    def has_budgets(self) -> bool:
        """Whether any active key or any project has a budget."""
        return bool(self._budgeted)

    def load(self, changes: KeyChanges) -> None:
        """Replace everything with a full load (``KeyRepository.load_active``)."""
        self._start(changes.revision, changes.projects)
        with collector_paused():
            for key in changes.keys:
                if key.revoked_at is None:
                    self._add(key.id, key.project, key.key_hash, key.budget, key)
        self._loaded()

    def load_rows(self, found: ActiveKeys) -> None:
        """Replace everything with a full load (``KeyRepository.load_active_rows``)."""
        self._start(found.revision, found.projects)
        rows = found.rows
        with collector_paused():
            # In bulk, one pass per index: at 100,000 keys a call per key was most of the load.
            self._keys = {row[_ID]: row for row in rows}
            self._by_hash = {row[_HASH]: row for row in rows}
            by_project = self._by_project
            for row in rows:
                members = by_project.get(row[_PROJECT])
                if members is None:
                    members = by_project[row[_PROJECT]] = set()
                members.add(row[_ID])
            self._budgeted.update(("key", row[_ID]) for row in rows if row[_BUDGET] is not None)
        self._loaded()

    def _start(self, revision: int, projects: list[ProjectRecord]) -> None:
        self._keys.clear()
        self._by_hash.clear()
        self._by_project.clear()
        self._budgeted.clear()
        self._projects = {project.name: project for project in projects}
        self._budgeted.update(("project", p.name) for p in projects if p.budget is not None)
        self.revision = revision

    def _loaded(self) -> None:
        if self._budgeted and self.on_budget_added is not None:
            self.on_budget_added()

    def apply(self, changes: KeyChanges) -> None:
        """Apply changed keys and projects; a change already applied is applied again harmlessly."""
        if changes.revision < self.revision:
            return
        budgeted = len(self._budgeted)
        for project in changes.projects:
            self._projects[project.name] = project
            self._mark(("project", project.name), project.budget is not None)
            # Its keys' principals are made again, from the new limits, when next used.
            for key_id in self._by_project.get(project.name, ()):
                entry = self._keys[key_id]
                self._by_hash[_ident(entry)[2]] = entry
        for key in changes.keys:
            earlier = self._keys.pop(key.id, None)
            if earlier is not None:
                self._forget(earlier)
            if key.revoked_at is None:
                self._add(key.id, key.project, key.key_hash, key.budget, key)
        self.revision = changes.revision
        if len(self._budgeted) > budgeted and self.on_budget_added is not None:
            self.on_budget_added()

    def _add(self, key_id: str, project: str, key_hash: str, budget: float | None, entry: _Entry) -> None:
        self._keys[key_id] = entry
        self._by_hash[key_hash] = entry
        members = self._by_project.get(project)
        if members is None:
            members = self._by_project[project] = set()
        members.add(key_id)
        if budget is not None:
            self._budgeted.add(("key", key_id))

    def _forget(self, entry: _Entry) -> None:
        """Drop what is derived from ``entry``."""
        key_id, project, key_hash = _ident(entry)
        self._by_hash.pop(key_hash, None)
        self._budgeted.discard(("key", key_id))
        members = self._by_project.get(project)
        if members is not None:
            members.discard(key_id)
            if not members:
                del self._by_project[project]

    def _mark(self, owner: tuple[str, str], budget: bool) -> None:
        if budget:
            self._budgeted.add(owner)
        else:
            self._budgeted.discard(owner)

    def lookup(self, key: str, now: float | None = None) -> Principal | None:
        """The principal of a key, or None if it is no key of ours (revoked ones included).
        Raises ``AuthenticationFailed`` for a key past its expiry."""
        found = self._by_hash.get(hash_key(key))
        if found is None:
            return None
        active = found if isinstance(found, ActiveKey) else self._activate(found)
        if active.expires_at is not None and (now if now is not None else time.time()) >= active.expires_at:
            raise AuthenticationFailed(
                f"This API key ({active.id}) expired at "
                f"{datetime.fromtimestamp(active.expires_at, UTC).isoformat(timespec='seconds')}. "
                "Ask for a new one ('modelgate keys create').")
        return active.principal

    def _activate(self, entry: _Entry) -> ActiveKey:
        """The key's principal, made from its record (or row) and its project's, and kept."""
        self.principals_built += 1
        if isinstance(entry, KeyRecord):
            key_id, project_name, key_hash = entry.id, entry.project, entry.key_hash
            deployments, key_limits = entry.deployments, limits(entry)
            expires_at = entry.expires_at
        else:
            key_id, project_name, key_hash, raw_deployments, rpm, tpm, budget, period, raw_expires = entry
            deployments, expires_at = row_deployments(raw_deployments), row_time(raw_expires)
            # Limits stored before the admin API bounded them are read within the bounds.
            key_limits = limits(bounded_limits(LimitFields(rpm=rpm, tpm=tpm, budget=budget, budget_period=period)))
        project = self._projects.get(project_name)
        principal = Principal(
            key_id=key_id, project=project_name,
            deployments=_allowed(deployments, project.deployments if project else None),
            key_limits=key_limits, project_limits=limits(project) if project else Limits(),
            safety=project.safety if project else None)
        expires = expires_at.timestamp() if expires_at is not None else None
        active = self._by_hash[key_hash] = ActiveKey(id=key_id, principal=principal, expires_at=expires)
        return active


def _ident(entry: _Entry) -> tuple[str, str, str]:
    """(id, project, key hash) of a record or a row."""
    if isinstance(entry, KeyRecord):
        return entry.id, entry.project, entry.key_hash
    return entry[_ID], entry[_PROJECT], entry[_HASH]


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection in the block: objects made in bulk to live on (keys at
    start-up) are not walked again and again while they are made."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def limits(record: LimitFields) -> Limits:
    return Limits(rpm=record.rpm, tpm=record.tpm, budget=record.budget, budget_period=record.budget_period)


def _allowed(key: list[str] | None, project: list[str] | None) -> frozenset[str] | None:
    """A key may call what both it and its project allow; None allows every deployment."""
    if key is None and project is None:
        return None
    if key is None:
        return frozenset(project or ())
    if project is None:
        return frozenset(key)
    return frozenset(key) & frozenset(project)

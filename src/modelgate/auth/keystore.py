"""Project keys: made, hashed, and held in memory so that checking one costs no database trip.

A key is ``mg-`` and 43 URL-safe characters (256 random bits). Only its SHA-256 is stored: a
slow password hash buys nothing for a random secret that long, and one fast hash keeps the
lookup on the request path at about a microsecond. The ``KeyCache`` maps hashes to principals
for every key not revoked; ``auth/keysync.py`` keeps it in step with the database.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from modelgate.pipeline.contract import Limits, Principal
from modelgate.schema.errors import AuthenticationFailed
from modelgate.storage.records import KeyChanges, KeyRecord, LimitFields, ProjectRecord

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


class KeyCache:
    """The keys not revoked, by hash, with the principal each one authenticates as."""

    def __init__(self) -> None:
        self.revision = 0  # every change up to this revision is applied
        self._keys: dict[str, KeyRecord] = {}  # by id
        self._projects: dict[str, ProjectRecord] = {}
        self._by_hash: dict[str, ActiveKey] = {}

    def __len__(self) -> int:
        return len(self._by_hash)

    def load(self, changes: KeyChanges) -> None:
        """Replace everything with a full load (``KeyRepository.load_active``)."""
        self._keys.clear()
        self._projects.clear()
        self._by_hash.clear()
        self.revision = -1
        self.apply(changes)

    def apply(self, changes: KeyChanges) -> None:
        """Apply changed keys and projects; a change already applied is applied again harmlessly."""
        if changes.revision < self.revision:
            return
        for project in changes.projects:
            self._projects[project.name] = project
        changed_projects = {project.name for project in changes.projects}
        for key in changes.keys:
            self._keys[key.id] = key
        touched = {key.id for key in changes.keys}
        touched |= {key.id for key in self._keys.values() if key.project in changed_projects}
        for key_id in touched:
            record = self._keys[key_id]
            if record.revoked_at is not None:
                del self._keys[key_id]
                self._by_hash.pop(record.key_hash, None)
            else:
                self._by_hash[record.key_hash] = self._active(record)
        self.revision = changes.revision

    def lookup(self, key: str, now: float | None = None) -> Principal | None:
        """The principal of a key, or None if it is no key of ours (revoked ones included).
        Raises ``AuthenticationFailed`` for a key past its expiry."""
        active = self._by_hash.get(hash_key(key))
        if active is None:
            return None
        if active.expires_at is not None and (now if now is not None else time.time()) >= active.expires_at:
            raise AuthenticationFailed(
                f"This API key ({active.id}) expired at "
                f"{datetime.fromtimestamp(active.expires_at, UTC).isoformat(timespec='seconds')}. "
                "Ask for a new one ('modelgate keys create').")
        return active.principal

    def _active(self, record: KeyRecord) -> ActiveKey:
        project = self._projects.get(record.project)
        allowed = _allowed(record.deployments, project.deployments if project else None)
        principal = Principal(
            key_id=record.id, project=record.project, deployments=allowed,
            key_limits=limits(record), project_limits=limits(project) if project else Limits())
        expires = record.expires_at.timestamp() if record.expires_at is not None else None
        return ActiveKey(id=record.id, principal=principal, expires_at=expires)


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

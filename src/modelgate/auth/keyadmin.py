"""Creating, changing and revoking projects and keys: what the admin API and the CLI share.

Bodies use the names of the CLI flags (``project``, ``deployments``, ``rpm``, ``tpm``,
``budget``, ``budget_period``, ``expires``, ``name``); a mistake is an ``InvalidRequest`` naming
the field. Every value is checked against what the database and the gateway can hold
(``storage.bounds``): a value let through here is stored and used without failing. Every change
is announced (``changed``) so that each gateway process applies it before the call returns
(auth/keysync.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from modelgate.auth.keystore import SHOWN_PREFIX, generate_key, hash_key, new_key_id
from modelgate.schema.errors import Conflict, InvalidRequest, NotFound
from modelgate.storage import AlreadyExists, KeyRecord, LimitFields, ProjectRecord, RecordNotFound, Storage
from modelgate.storage.bounds import MAX_BUDGET, MAX_RPM, MAX_TPM, text_length, text_problem
from modelgate.storage.records import BUDGET_PERIODS
from modelgate.storage.tables import api_keys

NAME_LENGTH = text_length(api_keys, "project")
NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:@-]{{0,{NAME_LENGTH - 1}}}")
KEY_NAME_LENGTH = text_length(api_keys, "name")
LIMIT_FIELDS = ("deployments", "rpm", "tpm", "budget", "budget_period")
KEY_FIELDS = {"project", "name", "expires", *LIMIT_FIELDS}
PROJECT_FIELDS = {"name", "safety", *LIMIT_FIELDS}


@dataclass(slots=True, kw_only=True)
class KeySpec:
    project: str
    name: str | None = None
    limits: LimitFields = field(default_factory=LimitFields)
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IssuedKey:
    record: KeyRecord
    key: str  # the plaintext, shown this once


def parse_key_spec(body: Any, deployments: Collection[str]) -> KeySpec:
    body = _mapping(body, "a JSON object with project and optional limits")
    _known_fields(body, KEY_FIELDS)
    project = _name(body.get("project"), "project")
    name = body.get("name")
    if name is not None:
        if not isinstance(name, str):
            raise InvalidRequest(f"'name' must be a string, got {name!r}", param="name")
        problem = text_problem(name, KEY_NAME_LENGTH)
        if problem is not None:
            raise InvalidRequest(f"'name' {problem}", param="name")
    expires = body.get("expires")
    return KeySpec(project=project, name=name or None, limits=parse_limits(body, deployments),
                   expires_at=parse_expires(expires) if expires is not None else None)


def parse_project_spec(body: Any, deployments: Collection[str]) -> tuple[str, LimitFields]:
    body = _mapping(body, "a JSON object with name and optional limits")
    _known_fields(body, PROJECT_FIELDS)
    return _name(body.get("name"), "name"), parse_limits(body, deployments)


def parse_limit_changes(body: Any, deployments: Collection[str],
                        policies: Collection[str] | None = None) -> dict[str, Any]:
    """The limits a PATCH body sets; null clears a limit. With ``policies`` (a project's), its
    content policy too."""
    body = _mapping(body, "a JSON object of limits to change")
    _known_fields(body, set(LIMIT_FIELDS) | ({"safety"} if policies is not None else set()))
    limits = parse_limits(body, deployments)
    changes = {name: getattr(limits, name) for name in LIMIT_FIELDS if name in body}
    if policies is not None and "safety" in body:
        changes["safety"] = parse_safety(body, policies)
    return changes


def parse_safety(body: Mapping[str, Any], policies: Collection[str]) -> str | None:
    """A project's ``safety``: the name of a content policy of the config, or null for none."""
    value = body.get("safety")
    if value is None:
        return None
    if not isinstance(value, str) or value not in policies:
        known = ", ".join(policies) or "none are configured (safety.policies)"
        raise InvalidRequest(f"'safety' must name a content policy of the config or be null, got {value!r}; "
                             f"policies: {known}", param="safety")
    return value


def parse_limits(body: Mapping[str, Any], deployments: Collection[str]) -> LimitFields:
    limits = LimitFields()
    allowed = body.get("deployments")
    if allowed is not None:
        if not isinstance(allowed, list) or not all(isinstance(d, str) and d for d in allowed):
            raise InvalidRequest("'deployments' must be a list of deployment names", param="deployments")
        unknown = [d for d in allowed if d not in deployments]
        if unknown:
            raise InvalidRequest(f"'deployments' names {', '.join(map(repr, unknown))}, which the gateway does "
                                 f"not have; configured: {', '.join(deployments) or 'none'}", param="deployments")
        limits.deployments = list(dict.fromkeys(allowed))
    for name, top in (("rpm", MAX_RPM), ("tpm", MAX_TPM)):
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
                raise InvalidRequest(f"'{name}' must be a whole number from 1 to {top}, got {value!r}", param=name)
            setattr(limits, name, value)
    budget = body.get("budget")
    if budget is not None:
        if (isinstance(budget, bool) or not isinstance(budget, int | float) or not math.isfinite(budget)
                or not 0 <= budget <= MAX_BUDGET):
            raise InvalidRequest(f"'budget' must be USD as a number from 0 to {MAX_BUDGET:.0f}, got {budget!r}",
                                 param="budget")
        limits.budget = float(budget)
    period = body.get("budget_period")
    if period is not None:
        if period not in BUDGET_PERIODS:
            raise InvalidRequest(f"'budget_period' must be one of {', '.join(BUDGET_PERIODS)}, got {period!r}",
                                 param="budget_period")
        limits.budget_period = period
    return limits


def parse_expires(value: Any, now: datetime | None = None) -> datetime:
    """An ISO date (midnight UTC) or date-time (UTC unless it names a zone) in the future."""
    if not isinstance(value, str):
        raise InvalidRequest(f"'expires' must be an ISO date such as 2030-01-31, got {value!r}", param="expires")
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        # OverflowError: a time whose UTC is past the year 9999.
        raise InvalidRequest(f"'expires' must be an ISO date (2030-01-31) or date-time "
                             f"(2030-01-31T12:00:00Z) up to 9999-12-31, got {value!r}", param="expires") from None
    if moment <= (now or datetime.now(UTC)):
        raise InvalidRequest(f"'expires' is in the past ({value}); give a future date", param="expires")
    return moment


def _mapping(body: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest(f"The body must be {what}.")
    return body


def _known_fields(body: Mapping[str, Any], allowed: set[str]) -> None:
    for name in body:
        if name not in allowed:
            raise InvalidRequest(f"Unknown field '{name}'; allowed: {', '.join(sorted(allowed))}", param=name)


def _name(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise InvalidRequest(f"'{field_name}' is required: letters, digits and . _ : @ - (up to {NAME_LENGTH}), "
                             f"starting with a letter or digit; got {value!r}", param=field_name)
    return value


class KeyAdmin:
    """Changes to projects and keys, announced to every gateway process before they return."""

    def __init__(self, storage: Storage, deployments: Collection[str],
                 changed: Callable[[int], Awaitable[object]]) -> None:
        self.storage = storage
        self.deployments = deployments
        self.changed = changed

    async def create_key(self, spec: KeySpec) -> IssuedKey:
        key = generate_key()
        record = await self.storage.keys.create_key(
            id=new_key_id(), project=spec.project, key_hash=hash_key(key), prefix=key[:SHOWN_PREFIX],
            name=spec.name, limits=spec.limits, expires_at=spec.expires_at)
        await self.changed(record.revision)
        return IssuedKey(record=record, key=key)

    async def revoke_key(self, id: str) -> KeyRecord:
        try:
            record = await self.storage.keys.revoke_key(id)
        except RecordNotFound as error:
            raise NotFound(str(error), code="key_not_found") from None
        await self.changed(record.revision)
        return record

    async def create_project(self, name: str, limits: LimitFields, safety: str | None = None) -> ProjectRecord:
        try:
            record = await self.storage.keys.create_project(name, limits, safety)
        except AlreadyExists as error:
            raise Conflict(f"{error}; change its limits with PATCH /admin/projects/{name}") from None
        await self.changed(record.revision)
        return record

    async def update_project(self, name: str, changes: dict[str, Any]) -> ProjectRecord:
        try:
            record = await self.storage.keys.update_project(name, changes)
        except RecordNotFound as error:
            raise NotFound(str(error), code="project_not_found") from None
        await self.changed(record.revision)
        return record

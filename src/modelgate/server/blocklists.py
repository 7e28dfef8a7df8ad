"""Content-policy blocklists set through the admin API, applied on every gateway process.

A list is declared in the config (``safety.blocklists``, maybe empty: ``NAME: {}``); ``PUT
/admin/blocklists/{name}`` stores terms and patterns that replace the config's while they are
stored, and ``DELETE`` brings the config's back. The same two paths as deployment changes
(storage/revisions.py): the process that takes the change stores it, applies it here and
publishes the new ``blocklist_revision`` on the installation's Redis channel, waiting for the
other processes; each also polls the revision every ``REFRESH_INTERVAL`` seconds.

Applying a change compiles the policies again and hands them to the safety stage whole: a request
already being checked keeps the policy it started with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelgate.catalog import Catalog
from modelgate.config.fields import Reader
from modelgate.config.safety import BlocklistSettings, SafetySettings, hold_back_needed, read_blocklist
from modelgate.redis_client import RedisClient
from modelgate.safety import ContentSafety, compile_policies
from modelgate.schema.errors import InvalidRequest, NotFound
from modelgate.storage import BlocklistRecord, RecordNotFound, Storage
from modelgate.storage.revisions import REFRESH_INTERVAL, RevisionFollower

log = logging.getLogger("modelgate.safety")

TOPIC = "blocklists"  # the installation's Redis channel for blocklist changes


@dataclass(frozen=True, slots=True)
class BlocklistView:
    name: str
    terms: tuple[str, ...]
    patterns: tuple[str, ...]
    source: str  # "config" | "api"
    updated_at: datetime | None
    used_by: tuple[str, ...]  # the policies with a check that names it


class BlocklistSync:
    """The blocklists in force (the config's, with those set through the admin API in their place),
    kept current in the safety stage's policies (see the module docstring)."""

    def __init__(self, storage: Storage, safety: SafetySettings, stage: ContentSafety | None,
                 redis: RedisClient | None, interval: float = REFRESH_INTERVAL) -> None:
        self.storage = storage
        self.safety = safety
        self.stage = stage
        self.records: dict[str, BlocklistRecord] = {}  # the lists set through the API, in force
        self.lists: dict[str, BlocklistSettings] = {}
        self.revision = 0
        self.follower = RevisionFollower(storage, redis, TOPIC, refresh=self._apply_changes,
                                         revision=lambda: self.revision, interval=interval, what="blocklist",
                                         logger=log)

    async def start(self) -> None:
        await self.follower.refresh()
        await self.follower.start()

    async def stop(self) -> None:
        await self.follower.stop()

    async def _apply_changes(self) -> bool:
        changes = await self.storage.blocklists.changes_since(self.revision)
        if changes is None:
            return False
        for record in changes.records:
            lists = None if record.body is None else self._usable(record)
            if lists is None:
                self.records.pop(record.name, None)
                self.lists.pop(record.name, None)
            else:
                self.records[record.name] = record
                self.lists[record.name] = lists
        if self.stage is not None:
            self.stage.policies = compile_policies(self.safety, self.lists, self.stage.shields)
        self.revision = changes.revision
        log.info("blocklists applied: %s", ", ".join(
            f"{r.name} ({'set' if r.name in self.lists else 'from the config'})" for r in changes.records))
        return True

    def _usable(self, record: BlocklistRecord) -> BlocklistSettings | None:
        if record.name not in self.safety.blocklists:
            return None  # not a list of this config: nothing here uses it
        reader = Reader({}, Catalog.builtin())
        made = read_blocklist(reader, record.body, f"blocklists.{record.name}")
        if made is None:
            log.warning("blocklist %r of the database cannot be used and the config's is kept: %s",
                        record.name, "; ".join(reader.problems))
        return made

    # -- the admin API ----------------------------------------------------------------------------

    def listed(self) -> list[BlocklistView]:
        return [self._view(name) for name in self.safety.blocklists]

    def get(self, name: str) -> BlocklistView:
        self._declared(name)
        return self._view(name)

    async def put(self, name: str, body: Any) -> BlocklistView:
        self._declared(name)
        reader = Reader({}, Catalog.builtin())
        made = read_blocklist(reader, body, "")
        problems = reader.problems or ([] if made is not None else ["expected a mapping with terms: and patterns:"])
        if made is None or problems:
            first = problems[0].split(": ", 1)[0].lstrip(".")
            raise InvalidRequest("The blocklist is not valid: " + "; ".join(p.lstrip(".") for p in problems),
                                 param=first.split("[")[0] or None, code="invalid_blocklist")
        self._fits_windows(name, made)
        record = await self.storage.blocklists.put(name, {"terms": list(made.terms), "patterns": list(made.patterns)})
        await self.follower.changed(record.revision)
        return self._view(name)

    async def delete(self, name: str) -> BlocklistView:
        self._declared(name)
        try:
            record = await self.storage.blocklists.delete(name)
        except RecordNotFound:
            raise NotFound(f"Blocklist {name!r} has no terms set through the admin API; it has the config's.",
                           code="blocklist_not_set") from None
        await self.follower.changed(record.revision)
        return self._view(name)

    def _declared(self, name: str) -> None:
        if name not in self.safety.blocklists:
            known = ", ".join(self.safety.blocklists) or "none are declared"
            raise NotFound(f"There is no blocklist {name!r} in the config ({known}). Declare it under "
                           f"safety.blocklists (an empty entry, {name}: {{}}, is enough) so that a check can use "
                           f"it as list: {name}, and restart.", code="blocklist_not_found")

    def _fits_windows(self, name: str, lists: BlocklistSettings) -> None:
        """A term of several words must fit the stream window of each policy whose output checks use it."""
        for policy_name, policy in self.safety.policies.items():
            uses = [c for c in policy.output if c.check == "blocklist" and c.blocklist == name]
            needed = hold_back_needed(uses, {name: lists})
            if policy.stream_hold_back < needed:
                raise InvalidRequest(f"A term of the blocklist is {needed} characters of several words, more than "
                                     f"policy {policy_name!r} holds back on streams ({policy.stream_hold_back}); "
                                     "shorten it, or raise that policy's stream_hold_back in the config.",
                                     param="terms", code="invalid_blocklist")

    def _view(self, name: str) -> BlocklistView:
        record = self.records.get(name)
        lists = self.lists.get(name) or self.safety.blocklists[name]
        used_by = tuple(policy_name for policy_name, policy in self.safety.policies.items()
                        if any(c.blocklist == name for c in (*policy.input, *policy.output)))
        return BlocklistView(name, lists.terms, lists.patterns, "api" if record else "config",
                             record.updated_at if record else None, used_by)


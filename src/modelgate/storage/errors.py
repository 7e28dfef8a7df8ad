"""Errors of the storage layer.

    StorageError
    ├── StorageUnavailable   the database cannot be reached (down, restarting, locked too long)
    ├── DataRejected         the database refused the values written: the same write fails again
    ├── SchemaOutdated       migrations are pending: run `modelgate db upgrade`
    ├── AlreadyExists        a project of that name exists
    └── RecordNotFound       no project or key with that name or id
"""

from __future__ import annotations


class StorageError(Exception):
    """A problem with the gateway's database."""


class StorageUnavailable(StorageError):
    """The database cannot be reached now; the same call may succeed later."""


class DataRejected(StorageError):
    """The database refused the values of a write (a NUL in a text, a number out of its column's
    range, a wrong type): the same write will fail again, whatever the database's state."""


class SchemaOutdated(StorageError):
    """The database's schema is older than this gateway's; the message names the fix."""


class AlreadyExists(StorageError):
    """A record with that name exists already."""


class RecordNotFound(StorageError):
    """No record has that name or id."""

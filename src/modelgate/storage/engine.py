"""The async engine for a ``database_url``, and transactions that report every failure of the
database as a ``StorageError``: ``StorageUnavailable`` when it cannot be reached (the same call may
work later), ``DataRejected`` when it refused the values written (the same call fails again),
``SchemaOutdated`` when its tables are missing or old.

``sqlite:///PATH`` is the embedded default: aiosqlite, WAL mode (readers never wait for the
writer), a busy timeout, and ``BEGIN IMMEDIATE`` for write transactions so that two processes
writing at once queue up instead of failing with "database is locked" when a read lock cannot be
upgraded. ``postgresql://`` runs on asyncpg with a connection pool that checks a connection
before lending it, so a restarted server costs no failed request.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from modelgate.storage.errors import AlreadyExists, DataRejected, SchemaOutdated, StorageError, StorageUnavailable

SQLITE_BUSY_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_S = 5.0
# SQLSTATE classes of a server that went away: 08 connection exception, 57 operator intervention
# (admin shutdown, crash shutdown, cannot connect now).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "57")
# SQLSTATE classes of values refused: 22 data exception (a NUL in a text, a number out of range, a
# text too long for its column, a value of the wrong type), 23 integrity constraint violation.
_REJECTED_SQLSTATE_CLASSES = ("22", "23")
# PostgreSQL's undefined_table and undefined_column.
_MISSING_SQLSTATES = ("42P01", "42703")


def async_url(database_url: str) -> tuple[str, str]:
    """The SQLAlchemy URL for a config ``database_url``, and its dialect name."""
    scheme, sep, rest = database_url.partition("://")
    if not sep:
        raise StorageError(f"database_url {database_url!r} is not a URL; use sqlite:///PATH or "
                           "postgresql://USER:PASSWORD@HOST:5432/DATABASE")
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        return f"sqlite+aiosqlite://{rest}", "sqlite"
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        return f"postgresql+asyncpg://{rest}", "postgresql"
    raise StorageError(f"database_url scheme {scheme!r} is not supported; use sqlite:///PATH or "
                       "postgresql://USER:PASSWORD@HOST:5432/DATABASE")


def describe(database_url: str) -> str:
    """The URL with its password hidden, for logs and messages."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return database_url


class Database:
    def __init__(self, database_url: str) -> None:
        url, self.dialect = async_url(database_url)
        self.url = database_url
        if self.dialect == "sqlite":
            self.engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
            _sqlite_transactions(self.engine)
        else:
            self.engine = create_async_engine(
                url, pool_pre_ping=True, pool_size=5, max_overflow=10, pool_timeout=CONNECT_TIMEOUT_S,
                connect_args={"timeout": CONNECT_TIMEOUT_S})
        self._writer = self.engine.execution_options(modelgate_write=True)

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A transaction for reading."""
        async with _translated(self.url), self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction for writing; committed when the block ends without an error."""
        async with _translated(self.url), self._writer.begin() as conn:
            yield conn


def _sqlite_transactions(engine: AsyncEngine) -> None:
    # pysqlite's own transaction handling begins transactions late and not at all for DDL; let
    # SQLAlchemy issue BEGIN itself (the recipe of SQLAlchemy's SQLite dialect documentation).
    @event.listens_for(engine.sync_engine, "connect")
    def connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _enter_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode across process crashes
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def begin(conn: Any) -> None:
        write = conn.get_execution_options().get("modelgate_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _enter_wal(cursor: Any) -> None:
    """Switch a new database file to WAL. The switch needs the file to itself and SQLite answers
    "database is locked" at once, without its busy timeout, while another connection holds it
    (two processes opening a new file together): so wait here, on the connection's own thread."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@asynccontextmanager
async def _translated(url: str) -> AsyncIterator[None]:
    try:
        yield
    except StorageError:
        raise
    except exc.DBAPIError as error:
        if _missing_table(error):
            raise SchemaOutdated(f"the database {describe(url)} has no modelgate tables or old ones: "
                                 f"run `modelgate db upgrade` ({error.orig})") from error
        if _unavailable(error):
            raise StorageUnavailable(f"the database {describe(url)} cannot be reached: {error.orig}") from error
        if _duplicate(error):
            raise AlreadyExists(f"a record with that key exists already: {error.orig}") from error
        if _rejected(error):
            raise DataRejected(f"the database {describe(url)} refused the values: {error.orig}") from error
        raise StorageError(f"the database {describe(url)} failed: {error.orig}") from error
    except (UnicodeError, OverflowError) as error:
        # SQLite's driver cannot bind the value (a lone surrogate, an integer past 64 bits).
        raise DataRejected(f"the database {describe(url)} refused the values: {error}") from error
    except (OSError, TimeoutError) as error:
        # Connection refused or timed out before SQLAlchemy had a connection to wrap it in.
        raise StorageUnavailable(f"the database {describe(url)} cannot be reached: {error!r}") from error


def _sqlstate(error: exc.DBAPIError) -> str:
    sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return sqlstate if isinstance(sqlstate, str) else ""


def _missing_table(error: exc.DBAPIError) -> bool:
    if _sqlstate(error) in _MISSING_SQLSTATES:
        return True
    text = str(error.orig)
    return isinstance(error, exc.OperationalError) and ("no such table" in text or "no such column" in text)


def _unavailable(error: exc.DBAPIError) -> bool:
    if error.connection_invalidated or isinstance(error, exc.OperationalError | exc.InterfaceError):
        return True
    return _sqlstate(error)[:2] in _UNAVAILABLE_SQLSTATE_CLASSES


def _duplicate(error: exc.DBAPIError) -> bool:
    # PostgreSQL's unique_violation; SQLite says it in words.
    return _sqlstate(error) == "23505" or (
        isinstance(error, exc.IntegrityError) and "UNIQUE constraint failed" in str(error.orig))


def _rejected(error: exc.DBAPIError) -> bool:
    return isinstance(error, exc.DataError | exc.IntegrityError) or _sqlstate(error)[:2] in _REJECTED_SQLSTATE_CLASSES

"""Engine and session factory, built once at start-up from Settings."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from m365connect.db.errors import translate_driver_errors

# How much longer than the server's own statement_timeout the client waits for an answer. A live server
# cancels the statement itself (the connection stays usable); only a silent one is given up on here.
_CLIENT_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class DatabaseTimeouts:
    """Bounds, in seconds, on waiting for the database; None leaves the driver's own (mostly unbounded).

    `connect`: opening a connection (asyncpg's `timeout`, handshake and authentication included).
    `statement`: one statement (PostgreSQL's `statement_timeout`, and asyncpg's `command_timeout` a little
    later for a server that has gone silent; the pre-ping on checkout is such a statement).
    `pool`: waiting for a free connection of the pool.
    """

    connect: float | None = None
    statement: float | None = None
    pool: float | None = None


def create_engine(
    database_url: str, *, timeouts: DatabaseTimeouts | None = None, **kwargs: Any
) -> AsyncEngine:
    """An async engine; SQLite connections enforce foreign keys and wait for locks instead of failing.

    Statement parameters never appear in SQLAlchemy's exception text (`hide_parameters`): they carry
    addresses, names and sealed secrets, and exceptions end up in logs.
    """
    url = make_url(database_url)
    bounds = timeouts or DatabaseTimeouts()
    # An in-memory SQLite database has one static connection: no pool to wait for.
    if bounds.pool is not None and (url.get_backend_name() != "sqlite" or sqlite_file(url) is not None):
        kwargs.setdefault("pool_timeout", bounds.pool)
    if url.get_backend_name() == "sqlite":
        create_private_sqlite_file(url)
        engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        connect_args = _asyncpg_connect_args(bounds) if url.get_driver_name() == "asyncpg" else {}
        engine = create_async_engine(
            url, pool_pre_ping=True, hide_parameters=True, connect_args=connect_args, **kwargs
        )
    translate_driver_errors(engine)
    return engine


def _asyncpg_connect_args(bounds: DatabaseTimeouts) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if bounds.connect is not None:
        args["timeout"] = bounds.connect
    if bounds.statement is not None:
        args["command_timeout"] = bounds.statement + _CLIENT_GRACE_SECONDS
        args["server_settings"] = {"statement_timeout": str(max(1, round(bounds.statement * 1000)))}
    return args


def sqlite_file(url: URL) -> str | None:
    """The file of a SQLite URL; None for an in-memory database (or a `file:` URI, left to SQLite)."""
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file:") or url.query.get("mode"):
        return None
    return database


def create_private_sqlite_file(url: URL) -> None:
    """Create a SQLite database file readable by its owner only (0600), before SQLite creates it 0644.

    SQLite gives the -wal and -shm files it creates later the permissions of the database file. An
    existing file is left as it is (the operator may have chosen its mode).
    """
    path = sqlite_file(url)
    if path is None:
        return
    # O_EXCL: an existing file is never touched. A file that cannot be created (no such folder, not a folder,
    # no permission) raises the OSError here, before any connection: left to SQLite, the failed connect
    # raced aiosqlite's worker thread against the end of the event loop, which then printed a traceback
    # after the command's one-line error (1 run in 4 of tests/test_cli.py).
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)

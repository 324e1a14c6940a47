"""Which database errors are passing conditions, so that the request may be sent again as it is.

Drivers raise some of them as plain Python exceptions that SQLAlchemy passes on untouched: asyncpg's
refused connection (ConnectionRefusedError), its connect and command timeouts (TimeoutError). Plain
`OSError`/`TimeoutError` also come from anywhere else (Redis, a socket, a bug), so `translate_driver_errors`
turns the database's into `DatabaseUnreachable` at the engine, and only that is answered as "database
unavailable".
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Dialect, ExceptionContext
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry

# SQLSTATEs after which the whole transaction was rolled back and the same request may well succeed.
RETRYABLE_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available (lock_timeout)
        "57014",  # query_canceled: statement_timeout, or the driver's cancel of a silent statement
    }
)


def sqlstate(exc: DBAPIError) -> str | None:
    """The SQLSTATE the driver reported, if any (asyncpg and psycopg both name it `sqlstate`)."""
    code = getattr(exc.orig, "sqlstate", None)
    return code if isinstance(code, str) else None


def is_transient(exc: DBAPIError) -> bool:
    """The database could not be reached or gave up on this transaction; nothing of it was saved."""
    if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
        return True
    return sqlstate(exc) in RETRYABLE_SQLSTATES


class DatabaseUnreachable(Exception):
    """The database driver could not connect, or a statement got no answer in time (OSError/TimeoutError)."""


_DRIVER_FAILURES = (OSError, TimeoutError)


def translate_driver_errors(engine: AsyncEngine) -> None:
    """Make the engine raise DatabaseUnreachable for its driver's plain connection and timeout errors."""
    event.listen(engine.sync_engine, "do_connect", _connect)
    event.listen(engine.sync_engine, "handle_error", _on_error)


def _connect(dialect: Dialect, _record: ConnectionPoolEntry, cargs: Any, cparams: Any) -> Any:
    try:
        return dialect.connect(*cargs, **cparams)
    except _DRIVER_FAILURES as exc:
        raise DatabaseUnreachable(str(exc) or type(exc).__name__) from exc


def _on_error(context: ExceptionContext) -> None:
    original = context.original_exception
    if context.sqlalchemy_exception is None and isinstance(original, _DRIVER_FAILURES):
        raise DatabaseUnreachable(str(original) or type(original).__name__) from original

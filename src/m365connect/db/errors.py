"""Which database errors are passing conditions, so that the request may be sent again as it is."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

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

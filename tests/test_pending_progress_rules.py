"""Which database errors mean "away, keep the write and retry" rather than "refused": pure."""
from __future__ import annotations

import asyncpg
import sqlalchemy as sa

from server.learning.pending_progress import database_away


def wrapped(error: Exception) -> sa.exc.DBAPIError:
    return sa.exc.DBAPIError("INSERT INTO progress ...", {}, error)


def test_a_restarting_or_stopping_postgres_is_away():
    for error in (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
                  asyncpg.exceptions.AdminShutdownError("terminating connection"),
                  asyncpg.exceptions.CrashShutdownError("terminating connection"),
                  asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")):
        assert database_away(wrapped(error)), error.sqlstate


def test_a_write_the_database_refuses_is_not_away():
    for error in (asyncpg.exceptions.UniqueViolationError("duplicate key"),
                  asyncpg.exceptions.NotNullViolationError("null value"),
                  asyncpg.exceptions.UndefinedTableError("no such table")):
        assert not database_away(wrapped(error)), error.sqlstate


def test_connection_failures_below_the_driver_are_away():
    assert database_away(ConnectionRefusedError(111, "refused"))
    assert database_away(sa.exc.OperationalError("SELECT 1", {}, OSError("reset")))

"""Thin async reads and writes over the AsyncEngine; each returns frozen dataclasses, never ORM rows.

One module per noun (users, catalog, progress, runs, subscriptions). Upserts
pick the dialect's INSERT ... ON CONFLICT through `upsert()` so the same call
works on Postgres and SQLite.
"""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


# Each dialect's INSERT with `.on_conflict_do_update/nothing`, by dialect name.
INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def upsert(bind: AsyncEngine | AsyncConnection, table: Any) -> Any:
    """`INSERT` with `.on_conflict_do_update/nothing` for the dialect of an engine (or of a
    connection in a transaction)."""
    if bind.dialect.name not in INSERTS:
        raise NotImplementedError(f"no upsert for {bind.dialect.name}")
    return INSERTS[bind.dialect.name](table)


T = TypeVar("T")


def from_row(cls: type[T], row: sa.RowMapping, **overrides: Any) -> T:
    """The dataclass `cls` from the same-named columns of a result row."""
    return cls(**{f.name: overrides[f.name] if f.name in overrides else row[f.name]
                  for f in dataclasses.fields(cls)})

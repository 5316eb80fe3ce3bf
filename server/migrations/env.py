"""Alembic environment: online migrations only, one transaction, one migrator at a time.

`server.db` builds the Config in code with `sqlalchemy.url` set. Run by hand
(`alembic -c server/migrations/alembic.ini ...`, e.g. for `revision
--autogenerate`), the URL comes from the LS_* settings like everywhere else.
"""
from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context

from server import models

# Any fixed 64-bit number: serializes concurrent `db upgrade` runs on Postgres.
MIGRATION_LOCK = 0x6C657373_6F6E5F64


def database_url() -> str:
    url = context.config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from server import config, db
    return db.sync_url(config.load(os.environ))


def run_migrations_online() -> None:
    engine = sa.create_engine(database_url(), poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        context.configure(
            connection=connection,
            target_metadata=models.Base.metadata,
            render_as_batch=sqlite,        # SQLite alters tables by copying them
            compare_type=True,
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Several servers started at once must not migrate twice.
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": MIGRATION_LOCK})
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()

"""What a job needs from the process that runs it: the settings and open connections.

RQ calls a job with the arguments stored in Redis, and those must not carry
secrets such as the database URL. So the process running jobs (the worker,
or the job thread in embedded mode) provides a JobDeps around each job, in
a context variable, and the job asks for it with `current()`.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import sqlalchemy as sa

from server.config import Settings
from workers.trace_store import TraceStore, open_store

_current: contextvars.ContextVar["JobDeps"] = contextvars.ContextVar("lessonserver_job_deps")


class JobDeps:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._traces: TraceStore | None = None
        self._database: sa.Engine | None = None

    def trace_store(self) -> TraceStore:
        """Opened on first use and kept: one connection serves every batch of this process."""
        if self._traces is None:
            self._traces = open_store(self.settings.sqlalchemy_url)
        return self._traces

    def database(self) -> sa.Engine:
        """A blocking engine on the same tables (emails' rows); made on first use and kept."""
        if self._database is None:
            from server.db import sync_url
            self._database = sa.create_engine(sync_url(self.settings), pool_size=1,
                                              pool_pre_ping=True)
        return self._database

    def close(self) -> None:
        if self._traces is not None:
            self._traces.close()
            self._traces = None
        if self._database is not None:
            self._database.dispose()
            self._database = None


@contextlib.contextmanager
def provided(deps: JobDeps) -> Iterator[JobDeps]:
    token = _current.set(deps)
    try:
        yield deps
    finally:
        _current.reset(token)


def current() -> JobDeps:
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("a job ran outside a worker: no JobDeps were provided") from None

"""What every part of the store shares: one engine, its read and write transactions, and IN (...) chunking."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloud_svc import db
from cloud_svc.errors import StorageUnavailable, WriteConflict
from cloud_svc.sqlbulk import BulkWriter
from edgert.backoff import Backoff

IN_CHUNK = 1000           # ids per IN (...) list

# MySQL/MariaDB error numbers (a PyMySQL error's args[0]) after which the transaction has been rolled back because
# it lost a race: run again, it usually succeeds. On a Galera cluster both a certification failure (another node
# committed a writeset touching the same rows first; seen at COMMIT) and a brute-force abort (a replicated writeset
# needed a row lock this transaction held; seen at its next statement or COMMIT) come as ER_LOCK_DEADLOCK, with
# "Deadlock found when trying to get lock" or "Deadlock: wsrep aborted transaction".
ER_LOCK_WAIT_TIMEOUT = 1205
ER_LOCK_DEADLOCK = 1213
CONFLICTS = frozenset({ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT})
# Galera's "WSREP has not yet prepared node for application use": this node is not Synced or is outside the
# Primary component. Not a race: it lasts until the node rejoins, so it is an outage of this node.
ER_UNKNOWN_COM_ERROR = 1047
# A transaction that lost a race is run again soon, at a fully random point of a short, growing step, so that the
# losers of one race (committers of several replicas, claimers on several nodes) do not meet again in step.
CONFLICT_BACKOFF = Backoff(0.01, 0.5, jitter=1.0)
CONFLICT_RETRIES = 5

T = TypeVar("T")


def chunks(seq: Sequence, n: int = IN_CHUNK) -> Iterator[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def mysql_errno(exc: BaseException) -> Optional[int]:
    """The server's error number behind a SQLAlchemy DBAPIError (None for SQLite and client-side errors)."""
    args = getattr(getattr(exc, "orig", None), "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def storage_error(exc: BaseException) -> StorageUnavailable:
    """The domain error for a failed statement or COMMIT: WriteConflict when the transaction lost a race (run it
    again), StorageUnavailable when the database, or this node of it, is not serving."""
    errno = mysql_errno(exc)
    detail = getattr(exc, "orig", exc)
    if errno in CONFLICTS:
        return WriteConflict(f"write conflict, rolled back: {detail}")
    if errno == ER_UNKNOWN_COM_ERROR:
        return StorageUnavailable(f"database node not ready (a Galera node not Synced or outside the Primary "
                                  f"component): {detail}")
    return StorageUnavailable(f"database error: {detail}")


class Database:
    """Thread-safe (one engine, a connection per call). Transient DB failures surface as StorageUnavailable, a
    transaction that lost a race (a deadlock, a Galera certification failure) as its subclass WriteConflict."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.sqlite = db.is_sqlite(engine)
        self.bulk = BulkWriter(engine.dialect)
        self._ignore = "OR IGNORE" if self.sqlite else "IGNORE"

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction; on SQLite it takes the write lock at BEGIN (IMMEDIATE)."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(sqlite_immediate=True)
                with conn.begin():
                    yield conn
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise storage_error(exc) from exc

    def transact(self, fn: Callable[[Connection], T], *, retries: int = CONFLICT_RETRIES) -> T:
        """fn(conn) in a write transaction, run again after a short random wait while it loses races
        (WriteConflict), at most `retries` more times. fn must decide only on what it reads inside the
        transaction, so that a second run does the right thing whatever the winner wrote."""
        attempt = 0
        while True:
            try:
                with self.write() as conn:
                    return fn(conn)
            except WriteConflict:
                if attempt >= retries:
                    raise
                time.sleep(CONFLICT_BACKOFF.delay(attempt))
                attempt += 1

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                with conn.begin():
                    yield conn
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise storage_error(exc) from exc

    def insert_ignore(self, table: sa.Table):
        return table.insert().prefix_with(self._ignore)

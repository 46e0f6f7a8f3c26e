"""What every part of the store shares: one engine, its read and write transactions, and IN (...) chunking."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloud_svc import db
from cloud_svc.errors import StorageUnavailable
from cloud_svc.sqlbulk import BulkWriter

IN_CHUNK = 1000           # ids per IN (...) list


def chunks(seq: Sequence, n: int = IN_CHUNK) -> Iterator[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


class Database:
    """Thread-safe (one engine, a connection per call). Transient DB failures surface as StorageUnavailable."""

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
            raise StorageUnavailable(f"database error: {getattr(exc, 'orig', exc)}") from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                with conn.begin():
                    yield conn
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise StorageUnavailable(f"database error: {getattr(exc, 'orig', exc)}") from exc

    def insert_ignore(self, table: sa.Table):
        return table.insert().prefix_with(self._ignore)

"""Multi-row INSERT (ignore / upsert) for the store's ingest path (cloud_svc.store.ingest), fast on both stores.

SQLAlchemy's executemany through PyMySQL escapes every value in Python, several microseconds each, which
caps ingest far below the budget. Here MySQL gets one multi-row statement per table rendered with
type-specific literals (strings through PyMySQL's escape table, bytes as hex), split to stay under
`max_statement_bytes`; SQLite gets sqlite3's C executemany with bound parameters.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Optional, Sequence

import pymysql
from pymysql.converters import escape_string
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

MAX_STATEMENT_BYTES = 4 << 20  # well under MariaDB's default max_allowed_packet (16 MiB)


def _bytes(v) -> str:
    b = bytes(v)
    return "X'" + b.hex() + "'" if b else "''"


# One value as a MySQL literal (the connection speaks utf8mb4 with backslash escapes), by exact type.
_LITERAL: dict[type, Callable[[Any], str]] = {
    str: lambda v: "'" + escape_string(v) + "'",
    int: str,
    float: lambda v: repr(v) if math.isfinite(v) else "NULL",
    type(None): lambda v: "NULL",
    bool: lambda v: "1" if v else "0",
    bytes: _bytes, bytearray: _bytes, memoryview: _bytes,
}


def mysql_literal(v) -> str:
    try:
        return _LITERAL[type(v)](v)
    except KeyError:
        raise TypeError(f"no SQL literal for {type(v).__name__}") from None


def mysql_row(r: Sequence) -> str:
    lit = _LITERAL
    return "(" + ",".join([lit[type(v)](v) for v in r]) + ")"


class BulkWriter:
    def __init__(self, dialect):
        self.sqlite = dialect.name == "sqlite"
        self.q = dialect.identifier_preparer.quote

    def insert(self, conn: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple], *,
               ignore: bool = False, conflict: Optional[Sequence[str]] = None,
               update: Iterable[str] = (), returning: Sequence[str] = ()) -> list[tuple[Any, ...]]:
        """INSERT rows; `ignore` skips duplicates; `update` columns are overwritten on a duplicate of the unique
        key `conflict` (SQLite needs it named; MySQL applies any unique key). `returning` columns of the rows
        this statement inserted (not of ignored duplicates) come back on MariaDB >= 10.5 (`INSERT ... RETURNING`);
        MySQL has no such clause and SQLite's executemany cannot return rows, so there it returns []."""
        if not rows:
            return []
        update = list(update)
        cols = ", ".join(self.q(c) for c in columns)
        tq = self.q(table)
        if self.sqlite:
            verb = "INSERT OR IGNORE" if ignore else "INSERT"
            tail = ""
            if update:
                if not conflict:
                    raise ValueError("an upsert on SQLite needs the unique key named (conflict=...)")
                sets = ", ".join(f"{self.q(c)} = excluded.{self.q(c)}" for c in update)
                tail = f" ON CONFLICT ({', '.join(self.q(c) for c in conflict)}) DO UPDATE SET {sets}"
            sql = f"{verb} INTO {tq} ({cols}) VALUES ({', '.join('?' * len(columns))}){tail}"
            conn.exec_driver_sql(sql, [tuple(r) for r in rows])
            return []
        head = f"{'INSERT IGNORE' if ignore else 'INSERT'} INTO {tq} ({cols}) VALUES "
        tail = ""
        if update:
            tail = " ON DUPLICATE KEY UPDATE " + ", ".join(f"{self.q(c)} = VALUES({self.q(c)})" for c in update)
        if returning and not self.returning_supported(conn):
            returning = ()  # MySQL proper has no INSERT ... RETURNING: the caller looks the rows up instead
        if returning:
            tail += " RETURNING " + ", ".join(self.q(c) for c in returning)
        out: list[tuple[Any, ...]] = []
        parts: list[str] = []
        size = 0
        for r in rows:
            lit = mysql_row(r)
            if parts and size + len(lit) > MAX_STATEMENT_BYTES:
                out += self._exec(conn, head + ",".join(parts) + tail, rows=bool(returning))
                parts, size = [], 0
            parts.append(lit)
            size += len(lit) + 1
        out += self._exec(conn, head + ",".join(parts) + tail, rows=bool(returning))
        return out

    @staticmethod
    def returning_supported(conn: Connection) -> bool:
        """INSERT ... RETURNING exists on MariaDB from 10.5, not on MySQL."""
        d = conn.dialect
        return bool(getattr(d, "is_mariadb", False)) and tuple(d.server_version_info or ()) >= (10, 5)

    def select_in(self, conn: Connection, table: str, columns: Sequence[str], key: str, values: Sequence, *,
                  for_update: bool = False) -> Sequence[Sequence[Any]]:
        """SELECT columns FROM table WHERE key IN (values) [FOR UPDATE], without SQLAlchemy compiling one bind
        per value (SQLite has no FOR UPDATE: its writers hold the database lock from BEGIN IMMEDIATE)."""
        if not values:
            return []
        head = f"SELECT {', '.join(self.q(c) for c in columns)} FROM {self.q(table)} WHERE {self.q(key)} IN "
        if self.sqlite:
            return conn.exec_driver_sql(head + "(" + ",".join("?" * len(values)) + ")", tuple(values)).all()
        lock = f" ORDER BY {self.q(key)} FOR UPDATE" if for_update else ""
        return self._exec(conn, head + mysql_row(values) + lock, rows=True)

    def update_by_key(self, conn: Connection, table: str, key: str, columns: dict[str, dict]) -> None:
        """UPDATE table SET col = CASE key WHEN k THEN v ... END, ... WHERE key IN (keys of all columns)."""
        columns = {c: vals for c, vals in columns.items() if vals}
        keys = sorted({k for vals in columns.values() for k in vals})
        if not keys:
            return
        kq = self.q(key)
        if self.sqlite:
            params: list = []
            sets = []
            for col, vals in columns.items():
                sets.append(f"{self.q(col)} = CASE {kq} " + " ".join("WHEN ? THEN ?" for _ in vals)
                            + f" ELSE {self.q(col)} END")
                for k, v in vals.items():
                    params += [k, v]
            sql = f"UPDATE {self.q(table)} SET {', '.join(sets)} WHERE {kq} IN ({','.join('?' * len(keys))})"
            conn.exec_driver_sql(sql, tuple(params + keys))
            return
        sets = [f"{self.q(col)} = CASE {kq} "
                + " ".join(f"WHEN {mysql_literal(k)} THEN {mysql_literal(v)}" for k, v in vals.items())
                + f" ELSE {self.q(col)} END" for col, vals in columns.items()]
        self._exec(conn, f"UPDATE {self.q(table)} SET {', '.join(sets)} WHERE {kq} IN {mysql_row(keys)}")

    @staticmethod
    def _exec(conn: Connection, sql: str, rows: bool = False) -> list[tuple[Any, ...]]:
        """One fully rendered MySQL statement on the transaction's own DBAPI cursor. SQLAlchemy's execution
        context costs more CPU per statement than PyMySQL's round trip here, and these statements need none of
        it: no parameters (so PyMySQL does no "%" formatting), no result typing. Driver errors are raised as
        SQLAlchemy's, as exec_driver_sql would, so callers see one kind of exception. Returns the rows when
        `rows`, else []."""
        dbapi_conn = conn.connection.dbapi_connection
        assert dbapi_conn is not None  # None only once the pooled connection is invalidated or detached
        cur = dbapi_conn.cursor()
        try:
            cur.execute(sql)
            return list(cur.fetchall()) if rows else []
        except pymysql.err.Error as err:
            gone = conn.dialect.is_disconnect(err, dbapi_conn, cur)
            if gone:  # as SQLAlchemy does for its own statements: the pool must never hand this one out again
                conn.invalidate(err)
            raise sa_exc.DBAPIError.instance(sql[:200], None, err, pymysql.err.Error,
                                             connection_invalidated=gone, dialect=conn.dialect) from err
        finally:
            cur.close()

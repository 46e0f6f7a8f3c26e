"""Bulk inserts render every value exactly, on SQLite and MariaDB (quotes, backslashes, %, unicode, bytes)."""
from __future__ import annotations

import math

from cloud_svc.db import make_engine
from cloud_svc.sqlbulk import BulkWriter

NASTY = ["it's", 'say "hi"', "back\\slash", "100% %s %(x)s", "zero\x00byte", "ünïcødé 🎤", "", "a\nb\r\x1a"]


def test_values_round_trip_exactly(db_url):
    engine = make_engine(db_url)
    rows = [(i, s, float(i) / 3, b"\x00\x01%\xff" * i or None, None) for i, s in enumerate(NASTY)]
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE bulk_t (id INTEGER PRIMARY KEY, s VARCHAR(64), f DOUBLE, b BLOB, n INTEGER)")
    try:
        bw = BulkWriter(engine.dialect)
        with engine.begin() as c:
            bw.insert(c, "bulk_t", ("id", "s", "f", "b", "n"), rows)
            bw.insert(c, "bulk_t", ("id", "s", "f", "b", "n"), rows, ignore=True)  # duplicates: ignored
            bw.update_by_key(c, "bulk_t", "id", {"n": {0: 7, 3: 9}, "f": {}})
        with engine.connect() as c:
            got = c.exec_driver_sql("SELECT id, s, f, b, n FROM bulk_t ORDER BY id").all()
            picked = bw.select_in(c, "bulk_t", ("id", "s"), "s", ["it's", "100% %s %(x)s"])
        assert [r[1] for r in got] == NASTY
        assert all(math.isclose(r[2], i / 3) for i, r in enumerate(got))
        assert [bytes(r[3]) if r[3] is not None else None for r in got] == [r[3] for r in rows]
        assert [r[4] for r in got] == [7, None, None, 9] + [None] * (len(NASTY) - 4)
        assert sorted(r[0] for r in picked) == [0, 3]
    finally:
        with engine.begin() as c:
            c.exec_driver_sql("DROP TABLE bulk_t")
        engine.dispose()


def test_a_lost_mysql_connection_is_an_operational_error_and_never_pooled_again(_mariadb_session):
    import sqlalchemy as sa

    engine = make_engine(_mariadb_session.url)
    bw = BulkWriter(engine.dialect)
    try:
        with engine.connect() as c:
            victim = c.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
        with engine.connect() as c, engine.connect() as killer:  # the pooled connection is `victim` again
            assert c.exec_driver_sql("SELECT CONNECTION_ID()").scalar() == victim
            killer.exec_driver_sql(f"KILL {victim}")
            try:
                bw.select_in(c, "devices", ("id",), "id", ["x"])
            except sa.exc.OperationalError as exc:  # what the store turns into StorageUnavailable
                assert exc.connection_invalidated
            else:
                raise AssertionError("a statement on a killed connection succeeded")
        for _ in range(3):  # every later checkout is a live connection, never the dead one
            with engine.connect() as c:
                assert c.exec_driver_sql("SELECT CONNECTION_ID()").scalar() != victim
                assert bw.select_in(c, "devices", ("id",), "id", ["x"]) == []
    finally:
        engine.dispose()

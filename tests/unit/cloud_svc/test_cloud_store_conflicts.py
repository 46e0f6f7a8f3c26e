"""Transactions that lose a race: which database errors are a WriteConflict (run it again) and which an outage, a
real InnoDB deadlock surfacing as one and run again by Database.transact, and a group commit that is safe to
run again whole because every row goes in by its natural key (SQLite and MariaDB). The same on a Galera cluster,
with certification failures between nodes, is in tests/system/test_galera_store.py."""
from __future__ import annotations

import sqlite3
import threading
import uuid

import grpc
import pymysql
import pytest
import sqlalchemy as sa
from store_records import end, rec, start

from cloud_svc.domain import AlertIn, BatchIn, ClipIn, HeartbeatIn, RejectIn
from cloud_svc.errors import StorageUnavailable, WriteConflict, status_of
from cloud_svc.schema import device_health, devices, metadata
from cloud_svc.store.base import storage_error
from support import wipe


def _wrapped(orig: BaseException) -> sa.exc.DBAPIError:
    """The exception SQLAlchemy raises for a driver error in a statement or COMMIT."""
    base = pymysql.err.Error if isinstance(orig, pymysql.err.Error) else sqlite3.Error
    wrapped = sa.exc.DBAPIError.instance("COMMIT", None, orig, base)
    assert isinstance(wrapped, sa.exc.OperationalError)  # what Database.write catches
    return wrapped


@pytest.mark.parametrize("errno,message", [
    (1213, "Deadlock found when trying to get lock; try restarting transaction"),
    (1213, "Deadlock: wsrep aborted transaction"),                      # Galera: certification failure, BF abort
    (1205, "Lock wait timeout exceeded; try restarting transaction"),
])
def test_a_lost_race_is_a_write_conflict_that_clients_see_as_unavailable(errno, message):
    err = storage_error(_wrapped(pymysql.err.OperationalError(errno, message)))
    assert isinstance(err, WriteConflict) and message in str(err)
    assert status_of(err) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("orig", [
    pymysql.err.OperationalError(1047, "WSREP has not yet prepared node for application use"),
    pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"),
    pymysql.err.OperationalError(1045, "Access denied for user 'edgert'@'10.0.0.3'"),
    sqlite3.OperationalError("database is locked"),
])
def test_an_outage_or_a_node_not_ready_is_unavailable_but_not_a_conflict(orig):
    err = storage_error(_wrapped(orig))
    assert type(err) is StorageUnavailable and str(orig.args[-1]) in str(err)
    if getattr(orig, "args", (None,))[0] == 1047:
        assert "not Synced" in str(err)  # the message says what to look at


@pytest.fixture
def mariadb_store(_mariadb_session):
    from cloud_svc.store import Store

    s = Store.open(_mariadb_session.url)
    wipe(s.engine)
    yield s
    s.close()


def test_a_real_deadlock_is_a_write_conflict_and_transact_runs_the_loser_again(mariadb_store):
    """Two transactions update rows a and b in opposite orders; InnoDB kills one of them (1213). Through
    Database.write the victim sees WriteConflict; through Database.transact it runs again and both commit."""
    store = mariadb_store
    store.devices.add_devices(["a", "b"])
    db = store.db

    def bump(conn, first: str, second: str, meet: threading.Barrier, runs: list) -> None:
        runs.append(first)
        for i, d in enumerate((first, second)):
            conn.execute(devices.update().where(devices.c.id == d).values(acked_seq=devices.c.acked_seq + 1))
            if i == 0 and runs.count(first) == 1:
                meet.wait(10)  # both hold their first row: the second updates deadlock (a run again goes on)

    def race(run, runs: list) -> list[BaseException]:
        meet = threading.Barrier(2)
        errors: list[BaseException] = []

        def one(first, second):
            try:
                run(lambda conn: bump(conn, first, second, meet, runs))
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=one, args=p) for p in (("a", "b"), ("b", "a"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        return errors

    def plain(fn) -> None:
        with db.write() as conn:
            fn(conn)

    errors = race(plain, [])
    assert len(errors) == 1 and isinstance(errors[0], WriteConflict), errors
    assert "1213" in str(errors[0])
    with store.engine.connect() as c:
        assert dict(c.execute(sa.select(devices.c.id, devices.c.acked_seq)).all()) == {"a": 1, "b": 1}

    runs: list[str] = []
    errors = race(db.transact, runs)
    assert errors == [] and len(runs) == 3 and len(set(runs)) == 2  # the victim ran twice
    with store.engine.connect() as c:
        assert dict(c.execute(sa.select(devices.c.id, devices.c.acked_seq)).all()) == {"a": 3, "b": 3}


TABLES = [metadata.tables[t] for t in ("events", "event_ends", "top_classes", "clips", "verifications", "alerts",
                                       "alert_events", "rejects")]


def _counts(store) -> dict[str, int]:
    with store.engine.connect() as c:
        return {t.name: int(c.scalar(sa.select(sa.func.count()).select_from(t))) for t in TABLES}


def _group(ids: list[str]) -> list[BatchIn]:
    """Two devices' batches with every kind of row; d1 misses seq 1, so its watermark stays 0 and nothing of
    the batch counts as a replay: a second commit goes all the way to the INSERTs."""
    clip = ClipIn("flac", 16000, 10**18, 1.0, sha256="cd" * 32, size=3)
    d1 = BatchIn("d1", 1, [rec(2, "event", start(ids[0])), rec(3, "event_end", end(ids[0], clip=clip)),
                           rec(4, "event_end", end(ids[1], label="scream")),   # its start never came
                           rec(5, "alert", AlertIn("distress", ["glass_break", "scream"], 1, 2, ids[:2])),
                           rec(6, "reject", RejectIn("event.label", "unknown label"))])
    d2 = BatchIn("d2", 1, [rec(1, "event", start(ids[2], label="gunshot")),
                           rec(2, "event_end", end(ids[2], label="gunshot"))])
    return [d1, d2]


def test_a_group_commit_run_again_after_it_committed_adds_no_row(store):
    """A retry whose earlier attempt did commit (the connection died in its COMMIT): every row, past the
    watermark too, is inserted by its natural key and ignored the second time; the watermarks are the same."""
    store.devices.add_devices(["d1", "d2"])
    ids = [uuid.uuid4().hex for _ in range(3)]
    beats = [HeartbeatIn("d1", 1, 0, 0)]
    first = store.ingest.commit(_group(ids), beats)
    counts = _counts(store)
    assert counts == {"events": 3, "event_ends": 3, "top_classes": 5, "clips": 1, "verifications": 3, "alerts": 1,
                      "alert_events": 2, "rejects": 1}
    again = store.ingest.commit(_group(ids), beats)
    assert _counts(store) == counts
    assert [r.acked_seq for r in again.results] == [r.acked_seq for r in first.results] == [0, 2]
    assert again.alerts == 0  # the device alert is not announced twice
    with store.engine.connect() as c:
        assert c.scalar(sa.select(sa.func.count()).select_from(device_health)) == 1  # sampled once a minute

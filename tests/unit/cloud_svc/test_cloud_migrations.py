"""Alembic migrations create exactly the schema the code declares, on SQLite and MariaDB, and run idempotently."""
from __future__ import annotations

import subprocess
import sys

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from cloud_svc import db
from cloud_svc.schema import metadata
from support import REPO, env_with_repo


def test_the_migrated_schema_matches_the_declared_one(db_url):
    engine = db.make_engine(db_url)
    with engine.connect() as c:
        ctx = MigrationContext.configure(c, opts={"compare_type": True})
        diff = compare_metadata(ctx, metadata)
    engine.dispose()
    assert diff == []


def test_db_upgrade_is_idempotent_and_reports_the_head(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    for _ in range(2):
        out = subprocess.run([sys.executable, "-m", "cloud_svc", "db", "upgrade", "--db", url], capture_output=True,
                             text=True, cwd=REPO, env=env_with_repo(), check=True).stdout
        assert f"at revision {db.head_revision()}" in out
    engine = db.make_engine(url)
    assert db.current_revision(engine) == db.head_revision()
    assert {"devices", "events", "event_ends", "top_classes", "clips", "verifications", "alerts",
            "alert_events"} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


def test_events_are_unique_per_device_and_seq(db_url):
    engine = db.make_engine(db_url)
    uniques = {tuple(u["column_names"]) for u in sa.inspect(engine).get_unique_constraints("events")}
    engine.dispose()
    assert ("device_id", "seq") in uniques


def test_events_carry_the_covering_indexes_of_issue_14(db_url):
    engine = db.make_engine(db_url)
    indexes = {tuple(i["column_names"]) for i in sa.inspect(engine).get_indexes("events")}
    engine.dispose()
    assert ("start_ns", "label", "device_id", "lat", "lon") in indexes  # time-window aggregates: index only
    assert ("label", "start_ns", "lat", "lon") in indexes  # label + time + box: the box tested on the index
    assert ("start_ns",) not in indexes and ("label", "start_ns") not in indexes  # replaced: their prefixes


def test_0006_goes_down_and_up_again_over_stored_events(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    db.upgrade(engine)
    with engine.begin() as c:
        c.exec_driver_sql("INSERT INTO devices (id, created_ns) VALUES ('d', 1)")
        c.exec_driver_sql("INSERT INTO events (device_id, seq, event_id, label, start_ns, score, created_ns, "
                          "received_ns) VALUES ('d', 1, 'e1', 'shout', 5, 0.9, 6, 7)")
    from alembic import command

    cfg = db.alembic_config(str(engine.url))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006-1")
    assert db.current_revision(engine) != "0006"
    assert {tuple(i["column_names"]) for i in sa.inspect(engine).get_indexes("events")} >= {("start_ns",),
                                                                                              ("label", "start_ns")}
    assert db.upgrade(engine) == db.head_revision()
    with engine.connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM events").scalar() == 1
    engine.dispose()

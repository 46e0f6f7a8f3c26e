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

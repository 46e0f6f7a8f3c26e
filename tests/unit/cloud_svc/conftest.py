"""Fixtures of the cloud_svc unit tests: the generated gRPC code, a migrated SQLite or MariaDB per test."""
from __future__ import annotations

import pytest

from edgert import protos_build
from support import TempMariaDB, mariadb_available, wipe


@pytest.fixture(scope="session", autouse=True)
def _generated_code():
    protos_build.build()  # no-op when current


@pytest.fixture(scope="session")
def _mariadb_session():
    why = mariadb_available()
    if why:
        pytest.fail(why)
    db = TempMariaDB()
    from cloud_svc.store import Store

    store = Store.open(db.url)
    store.upgrade()
    store.close()
    yield db
    db.drop()


@pytest.fixture(params=["sqlite", "mariadb"])
def db_url(request, tmp_path):
    """A migrated, empty database: a fresh SQLite file, or the session's MariaDB database wiped clean."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cloud.db'}"
        from cloud_svc.store import Store

        store = Store.open(url)
        store.upgrade()
        store.close()
        return url
    db = request.getfixturevalue("_mariadb_session")
    from cloud_svc.db import make_engine

    engine = make_engine(db.url)
    wipe(engine)
    engine.dispose()
    return db.url


@pytest.fixture
def store(db_url):
    from cloud_svc.store import Store

    s = Store.open(db_url, distress_labels=["glass_break", "scream", "shout", "gunshot"], sample_rate=0.0)
    yield s
    s.close()

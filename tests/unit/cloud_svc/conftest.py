"""Fixtures of the cloud_svc unit tests: the generated gRPC code, a migrated SQLite or MariaDB per test."""
from __future__ import annotations

import pytest

from edgert import protos_build
from cloud_svc.testing import TempMariaDB, mariadb_available, wipe


@pytest.fixture(scope="session", autouse=True)
def _generated_code():
    protos_build.build()  # no-op when current


@pytest.fixture(scope="session")
def _mariadb_session():
    why = mariadb_available()
    if why:
        pytest.fail(why)
    db = TempMariaDB()
    from cloud_svc.repository import Repository

    repo = Repository.open(db.url)
    repo.upgrade()
    repo.close()
    yield db
    db.drop()


@pytest.fixture(params=["sqlite", "mariadb"])
def db_url(request, tmp_path):
    """A migrated, empty database: a fresh SQLite file, or the session's MariaDB database wiped clean."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cloud.db'}"
        from cloud_svc.repository import Repository

        r = Repository.open(url)
        r.upgrade()
        r.close()
        return url
    db = request.getfixturevalue("_mariadb_session")
    from cloud_svc.db import make_engine

    engine = make_engine(db.url)
    wipe(engine)
    engine.dispose()
    return db.url


@pytest.fixture
def repo(db_url):
    from cloud_svc.repository import Repository

    r = Repository.open(db_url, distress_labels=["glass_break", "scream", "shout", "gunshot"], sample_rate=0.0)
    yield r
    r.close()

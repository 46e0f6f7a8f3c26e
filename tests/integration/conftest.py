"""Fixtures of the cloud integration tests: generated gRPC code, throwaway databases, the server, edge runs."""
from __future__ import annotations

import pytest

from edgert import protos_build
from support import TempMariaDB, mariadb_available


@pytest.fixture(scope="session", autouse=True)
def _cloud_generated_code():
    protos_build.build()  # no-op when current


@pytest.fixture(params=["sqlite", "mariadb"])
def cloud_db(request, tmp_path):
    """A fresh, empty database URL (the server migrates it): a SQLite file or a new MariaDB database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cloud.db'}"
        return
    why = mariadb_available()
    if why:
        pytest.fail(why)
    db = TempMariaDB()
    try:
        yield db.url
    finally:
        db.drop()


@pytest.fixture
def mariadb_url():
    why = mariadb_available()
    if why:
        pytest.fail(why)
    db = TempMariaDB()
    try:
        yield db.url
    finally:
        db.drop()

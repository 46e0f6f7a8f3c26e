"""Engines for the two supported stores (SQLite embedded, MySQL/MariaDB via PyMySQL) and the Alembic upgrade."""
from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from cloud_svc.errors import ConfigError, StorageUnavailable

log = logging.getLogger("cloud_svc.db")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_MS = 30000


def is_sqlite(engine_or_url) -> bool:
    if isinstance(engine_or_url, Engine):
        name = engine_or_url.dialect.name
    else:
        name = make_url(str(engine_or_url)).get_backend_name()
    return name == "sqlite"


def make_engine(url: str, *, pool_size: int = 24) -> Engine:
    """An engine with the settings the delivery semantics need: durable commits, FKs on, no surprise locking."""
    try:
        u = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"not a database URL: {url!r} ({exc})") from None
    backend = u.get_backend_name()
    if backend == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(u, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_MS / 1000})
        _sqlite_transactions(engine)
        return engine
    if backend == "mysql":
        if u.get_driver_name() != "pymysql":
            raise ConfigError(f"MySQL/MariaDB goes through PyMySQL: use mysql+pymysql://..., not {u.drivername}")
        # READ COMMITTED keeps InnoDB from taking gap locks that would make ingest, verifiers and the
        # correlator deadlock each other; every read-modify-write we do locks its rows explicitly.
        # No pre-ping and no rollback on return: both cost a round trip per transaction, and every transaction
        # here ends explicitly; a connection that died with the server fails once, is replaced, and the
        # committer retries (Query calls answer UNAVAILABLE once). The pool is sized for the server's threads
        # so that connections are not opened and closed per request.
        return sa.create_engine(u, pool_pre_ping=False, pool_reset_on_return=None, pool_recycle=1800,
                                pool_size=pool_size, max_overflow=pool_size // 2,
                                isolation_level="READ COMMITTED", connect_args={"charset": "utf8mb4"})
    raise ConfigError(f"unsupported database {backend!r}: use sqlite:///FILE or mysql+pymysql://USER@HOST/DB")


def _sqlite_transactions(engine: Engine) -> None:
    """pysqlite's implicit transactions are replaced by explicit BEGIN (IMMEDIATE for writers), WAL and fsync."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # an acked commit survives power loss
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # Writers take the write lock up front: SQLite's answer to SELECT ... FOR UPDATE.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("sqlite_immediate") else "BEGIN")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Run the migrations up to `revision` and return the revision the database is at (None at "base")."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        return current_revision(engine)
    except sa.exc.OperationalError as exc:
        raise StorageUnavailable(f"cannot migrate {engine.url.render_as_string()}: {exc.orig}") from exc


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS}"
    return head

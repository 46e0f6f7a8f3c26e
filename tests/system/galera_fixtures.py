"""Fixtures of the system tests that run the cloud on the Galera cluster (tests/system/galera.py): the cluster for
the session (reused when it answers, else started and stopped at the end), a migrated database on it, and reads
that wait for every writeset the cluster committed before them. Test modules import the fixtures by name."""
from __future__ import annotations

import secrets
import time
from typing import Iterator

import pytest
from galera import GaleraCluster, GaleraError, missing_packages

NODES = (1, 2, 3)
START_S = 240.0


@pytest.fixture(scope="session")
def cluster() -> Iterator[GaleraCluster]:
    why = missing_packages()
    if why:
        pytest.fail(why)
    c = GaleraCluster()
    started_here = not c.answers()
    t0 = time.monotonic()
    try:
        c.start(timeout=START_S)
    except GaleraError as exc:
        pytest.fail(f"the Galera cluster did not start: {exc}")
    if started_here:
        print(f"\nGalera: started 3 nodes in {time.monotonic() - t0:.1f} s")
    yield c
    if started_here:
        c.stop()


@pytest.fixture(scope="module")
def galera_db(cluster: GaleraCluster) -> Iterator[str]:
    """A database with the cloud's schema, created and migrated through node 1 (so on all), dropped at the end."""
    from cloud_svc.store import Store

    name = f"test_galera_{secrets.token_hex(4)}"
    sql(cluster, 1, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    store = Store.open(cluster.node(1).url(name))
    try:
        store.upgrade()
    finally:
        store.close()
    yield name
    synced = [i for i in NODES if cluster.is_synced(i)]
    if synced:
        sql(cluster, synced[0], f"DROP DATABASE IF EXISTS `{name}`")


def sql(cluster: GaleraCluster, node: int, statement: str, args=None, database: str | None = None) -> list[tuple]:
    """One statement on one node, after that node has applied every writeset the cluster committed before it
    (wsrep_sync_wait), so a read right after writes through other nodes sees them all."""
    conn = cluster.connect(node, database, timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION wsrep_sync_wait = 1")
            cur.execute(statement, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def wipe_db(cluster: GaleraCluster, database: str) -> None:
    """Every cloud table emptied (children first), through node 1."""
    from cloud_svc.schema import metadata

    conn = cluster.connect(1, database, timeout=10)
    try:
        with conn.cursor() as cur:
            for table in reversed(metadata.sorted_tables):
                cur.execute(f"DELETE FROM `{table.name}`")
    finally:
        conn.close()


def lost_races(cluster: GaleraCluster) -> int:
    """Transactions the cluster has rolled back for losing a race, so far, on all nodes: certification failures
    (the later of two conflicting commits) and brute-force aborts (a local transaction holding a lock that a
    replicated write needed)."""
    total = 0
    for i in NODES:
        for _name, value in sql(cluster, i, "SHOW GLOBAL STATUS WHERE Variable_name IN "
                                            "('wsrep_local_cert_failures', 'wsrep_local_bf_aborts')"):
            total += int(value)
    return total

"""The cloud's store on a real three-node MariaDB Galera cluster on loopback (tests/system/galera.py, the same
cluster `make galera` starts): one synced Primary component, writes through any node read through the others,
the cloud's migrations run through one node and present on all, and a node killed with SIGKILL that the other
two serve without, then rejoins by IST. The cluster is reused when it answers, else started here and stopped
at the end."""
from __future__ import annotations

import secrets
import subprocess
import sys
import time

import pytest
import yaml
from galera import MARIADBD, GaleraCluster, GaleraError, missing_packages

from support import REPO, env_with_repo

NODES = (1, 2, 3)
DOWN_DETECTED_S = 45.0   # evs.suspect_timeout is 5 s; the rest is slack for a loaded 2-core machine
REJOIN_S = 120.0
UPGRADE_S = 180.0


@pytest.fixture(scope="module")
def cluster():
    why = missing_packages()
    if why:
        pytest.fail(why)
    c = GaleraCluster()
    started_here = not c.answers()
    t0 = time.monotonic()
    try:
        c.start(timeout=240)
    except GaleraError as exc:
        pytest.fail(f"the Galera cluster did not start: {exc}")
    if started_here:
        print(f"\nGalera: started 3 nodes in {time.monotonic() - t0:.1f} s")
    yield c
    if started_here:
        c.stop()


@pytest.fixture
def database(cluster):
    """A new database, created through node 1 (so by replication on all) and dropped through a synced node."""
    name = f"test_galera_{secrets.token_hex(4)}"
    run_sql(cluster, 1, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    yield name
    synced = [i for i in NODES if cluster.is_synced(i)]
    if synced:
        run_sql(cluster, synced[0], f"DROP DATABASE IF EXISTS `{name}`")


def run_sql(cluster: GaleraCluster, node: int, sql: str, args=None, database: str | None = None,
            causal: bool = False) -> list[tuple]:
    """One statement on one node. causal=True waits until the node has applied every writeset the cluster
    committed before the read (wsrep_sync_wait), so a read right after a write elsewhere is deterministic."""
    conn = cluster.connect(node, database)
    try:
        with conn.cursor() as cur:
            if causal:
                cur.execute("SET SESSION wsrep_sync_wait = 1")
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def schema_of(cluster: GaleraCluster, node: int, database: str) -> dict[str, str]:
    """{table: SHOW CREATE TABLE} of every table of `database` as node `node` has it."""
    tables = [r[0] for r in run_sql(cluster, node, "SHOW TABLES", database=database, causal=True)]
    return {t: run_sql(cluster, node, f"SHOW CREATE TABLE `{t}`", database=database)[0][1] for t in tables}


def mariadbd_accepts(cnf_text: str, tmp_path) -> subprocess.CompletedProcess:
    cnf = tmp_path / "my.cnf"
    cnf.write_text(cnf_text)
    return subprocess.run([MARIADBD, f"--defaults-file={cnf}", "--verbose", "--help"], capture_output=True,
                          text=True, timeout=60)


def test_mariadbd_accepts_the_wsrep_config_of_the_kubernetes_manifests(tmp_path):
    """The schema check cannot see inside galera.cnf; mariadbd itself rejects an unknown or misspelt option."""
    why = missing_packages()
    if why:
        pytest.fail(why)
    docs = [d for d in yaml.safe_load_all((REPO / "deploy" / "galera.yaml").read_text()) if d]
    cnf = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["galera.cnf"]
    per_pod = "wsrep_node_name=galera-0\nwsrep_node_address=10.0.0.10\nwsrep_sst_auth=mariabackup:x\nuser=mysql\n"
    res = mariadbd_accepts(cnf + per_pod, tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    for option, value in (("binlog-format", "ROW"), ("innodb-autoinc-lock-mode", "2"),
                          ("default-storage-engine", "InnoDB"), ("wsrep-sst-method", "mariabackup")):
        assert any(line.split() == [option, value] for line in res.stdout.splitlines()), (option, value)
    res = mariadbd_accepts(cnf + per_pod + "wsrep_sst_metod=rsync\n", tmp_path)  # the check can fail
    assert res.returncode != 0 and "unknown variable 'wsrep_sst_metod=rsync'" in res.stderr


def test_three_nodes_are_synced_in_one_primary_component(cluster):
    states = {i: cluster.wsrep_status(i) for i in NODES}
    for i, st in states.items():
        assert st is not None, f"node{i} does not answer:\n{cluster.status()}"
        assert st["wsrep_cluster_size"] == "3", (i, st["wsrep_cluster_size"])
        assert st["wsrep_cluster_status"] == "Primary", (i, st["wsrep_cluster_status"])
        assert st["wsrep_local_state_comment"] == "Synced", (i, st["wsrep_local_state_comment"])
        assert st["wsrep_ready"] == "ON" and st["wsrep_connected"] == "ON", i
    assert len({st["wsrep_cluster_state_uuid"] for st in states.values()}) == 1, "the nodes hold different histories"
    assert len({st["wsrep_gcomm_uuid"] for st in states.values()}) == 3, "a node is counted twice"
    incoming = states[1]["wsrep_incoming_addresses"]
    for i in NODES:
        assert f"127.0.0.1:{cluster.node(i).sql_port}" in incoming, incoming


def test_a_row_written_through_node_1_is_read_through_nodes_2_and_3(cluster, database):
    run_sql(cluster, 1, "CREATE TABLE t (id BIGINT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(32) NOT NULL)",
            database=database)
    values = [f"from-node1-{k}" for k in range(5)]
    conn = cluster.connect(1, database)
    try:
        with conn.cursor() as cur:
            conn.begin()
            cur.executemany("INSERT INTO t (v) VALUES (%s)", [(v,) for v in values])
            conn.commit()  # returns once the writeset is certified on every node
    finally:
        conn.close()
    for node in (2, 3):
        rows = run_sql(cluster, node, "SELECT v FROM t ORDER BY id", database=database, causal=True)
        assert [r[0] for r in rows] == values, f"node{node} reads {rows}"


def test_every_node_takes_writes_and_every_node_sees_all_of_them(cluster, database):
    run_sql(cluster, 2, "CREATE TABLE t (id BIGINT AUTO_INCREMENT PRIMARY KEY, node INT NOT NULL)", database=database)
    for node in NODES:
        run_sql(cluster, node, "INSERT INTO t (node) VALUES (%s)", (node,), database=database, causal=True)
    for node in NODES:
        rows = run_sql(cluster, node, "SELECT id, node FROM t ORDER BY node", database=database, causal=True)
        assert [r[1] for r in rows] == list(NODES), f"node{node} reads {rows}"
        assert len({r[0] for r in rows}) == 3, f"auto-increment ids collide across nodes: {rows}"


def test_db_upgrade_through_node_2_gives_every_node_the_same_schema(cluster, database):
    url = cluster.node(2).url(database)
    res = subprocess.run([sys.executable, "-m", "cloud_svc", "db", "upgrade", "--db", url], cwd=REPO,
                         env=env_with_repo(), capture_output=True, text=True, timeout=UPGRADE_S)
    assert res.returncode == 0, f"db upgrade through node2 failed:\n{res.stdout[-3000:]}{res.stderr[-3000:]}"
    through = schema_of(cluster, 2, database)
    assert "events" in through and "alembic_version" in through, sorted(through)
    for node in (1, 3):
        assert schema_of(cluster, node, database) == through, f"node{node}'s schema differs from node2's"
    assert run_sql(cluster, 3, "SELECT version_num FROM alembic_version", database=database, causal=True) == \
        run_sql(cluster, 2, "SELECT version_num FROM alembic_version", database=database)
    # Galera replicates row changes by primary key: a table without one is a hazard in a cluster
    no_pk = run_sql(cluster, 1, """
        SELECT t.table_name FROM information_schema.tables t
        LEFT JOIN information_schema.table_constraints c
          ON c.table_schema = t.table_schema AND c.table_name = t.table_name AND c.constraint_type = 'PRIMARY KEY'
        WHERE t.table_schema = %s AND c.constraint_name IS NULL""", (database,))
    assert no_pk == [], f"tables without a primary key: {no_pk}"
    # the events table keeps its (device_id, seq) contract on every node
    for node in NODES:
        keys = run_sql(cluster, node, """
            SELECT GROUP_CONCAT(column_name ORDER BY seq_in_index) FROM information_schema.statistics
            WHERE table_schema = %s AND table_name = 'events' AND non_unique = 0 GROUP BY index_name""", (database,))
        assert ("device_id,seq",) in keys, f"node{node}: unique keys of events are {keys}"


def test_a_node_killed_with_sigkill_leaves_two_serving_and_rejoins_by_ist(cluster, database):
    run_sql(cluster, 1, "CREATE TABLE t (id BIGINT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(32) NOT NULL)",
            database=database)
    run_sql(cluster, 1, "INSERT INTO t (v) VALUES ('before')", database=database)
    log_before = cluster.log_size(1)

    t0 = time.monotonic()
    cluster.kill(1)  # the node that bootstrapped the cluster: it has no special role once the cluster formed
    cluster.wait_size(2, nodes=[2, 3], timeout=DOWN_DETECTED_S)
    detected_s = time.monotonic() - t0
    assert cluster.wsrep_status(1) is None, "node1 answers after SIGKILL"

    # the two survivors are a Primary component: both take writes and see each other's
    for node in (2, 3):
        run_sql(cluster, node, "INSERT INTO t (v) VALUES (%s)", (f"while-down-{node}",), database=database)
    for node in (2, 3):
        rows = run_sql(cluster, node, "SELECT v FROM t ORDER BY v", database=database, causal=True)
        assert [r[0] for r in rows] == ["before", "while-down-2", "while-down-3"], f"node{node} reads {rows}"

    t1 = time.monotonic()
    cluster.restart(1, timeout=REJOIN_S)
    rejoin_s = time.monotonic() - t1
    cluster.wait_size(3, timeout=30)
    assert cluster.ist_received(1, since=log_before) is True, \
        f"node1 did not rejoin by IST; its log since the kill ends:\n{cluster.log_tail(1, 40)}"
    rows = run_sql(cluster, 1, "SELECT v FROM t ORDER BY v", database=database, causal=True)
    assert [r[0] for r in rows] == ["before", "while-down-2", "while-down-3"], f"node1 reads {rows} after rejoining"
    print(f"\nGalera: SIGKILL of node1 seen by the others in {detected_s:.1f} s; rejoined by IST in {rejoin_s:.1f} s")

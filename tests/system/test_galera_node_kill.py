"""A Galera node killed with SIGKILL mid-ingest: three `serve` replicas, each on a node of its own, real edges in
real time and a busy device all given every replica. The replica whose node died answers UNAVAILABLE; its
devices move to the next replica and resend what was not acked; the node comes back by IST. 0 records lost, 0
duplicate rows, every distress event verified exactly once."""
# ruff: noqa: F811 - the fixtures imported from galera_fixtures are parameters of the tests, by name
from __future__ import annotations

import time

from busy_device import BusyDevice, every_tenth
from exactly_once import check_exactly_once
from galera_fixtures import NODES, cluster, galera_db, wipe_db  # noqa: F401 - fixtures

from cloud_svc.store import Store
from edge_rt.config import CloudConfig
from support import ServerProcess, edge_run, env_with_repo

KILLED = 2
DOWN_S = 20.0


def test_a_galera_node_killed_mid_ingest_loses_and_duplicates_nothing(cluster, galera_db, tmp_path):
    wipe_db(cluster, galera_db)
    # a job claimed by the replica whose node dies is claimed again by another after its lease (10 s here)
    env = {**env_with_repo(), "CLOUD_SVC__VERIFY__LEASE_S": "10", "CLOUD_SVC__VERIFY__POLL_S": "0.2",
           "CLOUD_SVC__FLEET__POLL_S": "0.2"}
    servers = {i: ServerProcess(cluster.node(i).url(galera_db), clips=str(tmp_path / "clips"),
                                log_path=tmp_path / f"serve-node{i}.log", env=env,
                                extra=("--verify-workers", "1", "--no-migrate")) for i in NODES}
    try:
        for s in servers.values():
            s.start(timeout=90)
        _ingest_through_a_node_kill(cluster, galera_db, servers, tmp_path)
    finally:
        for s in servers.values():  # also when a step failed: no replica outlives the test
            s.terminate()


def _ingest_through_a_node_kill(cluster, galera_db: str, servers: dict, tmp_path) -> None:
    addresses = ",".join(s.target for s in servers.values())
    devices = ["lamp-a", "lamp-b", "lamp-c", "fire-1"]
    admin = Store.open(cluster.node(1).url(galera_db))
    try:
        tokens = admin.devices.add_devices(devices)
    finally:
        admin.close()
    edges = {d: edge_run("synth:tour,seed=%d" % k, tmp_path / f"spool-{d}", cloud=addresses, device_id=d,
                         token=tokens[d], fast=False, env={"EDGE_RT__RUNTIME__GRACE_S": "120"}, wait=False)
             for k, d in enumerate(devices[:3])}
    try:
        with BusyDevice(tmp_path / "fire", addresses, "fire-1", tokens["fire-1"], make=every_tenth("scream"),
                        options=CloudConfig(backoff_initial_s=0.2, backoff_max_s=2.0, heartbeat_s=2.0)) as fire:
            time.sleep(8.0)
            assert fire.uplink.acked_seq > 0, "nothing was acked before the node died"
            cluster.kill(KILLED)  # mid-ingest: its replica's open transactions die with it
            cluster.wait_size(2, nodes=[i for i in NODES if i != KILLED], timeout=60)
            time.sleep(DOWN_S)
            cluster.restart(KILLED)  # rejoins by IST
            cluster.wait_synced(KILLED, size=3, timeout=120)
            time.sleep(3.0)
            fire.drain()
        for d, p in edges.items():
            _, err = p.communicate(timeout=180)
            assert p.returncode == 0, f"edge {d}: {err[-3000:]}"
        for i, s in servers.items():
            assert s.proc is not None and s.proc.poll() is None, f"the replica on node {i} died"
    finally:
        for p in edges.values():
            if p.poll() is None:
                p.kill()
    outboxes = {d: tmp_path / f"spool-{d}" / "outbox.db" for d in devices[:3]}
    outboxes["fire-1"] = tmp_path / "fire" / "outbox.db"
    verdict = check_exactly_once(cluster.node(1).url(galera_db), outboxes)
    print(f"\nGalera node {KILLED} killed for {DOWN_S:g} s: {verdict}")
    assert verdict.events > 100 and verdict.verified > 10

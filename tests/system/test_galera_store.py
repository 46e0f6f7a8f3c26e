"""The cloud's store with its writers on different nodes of a real three-node Galera cluster (row locks are local
to a node there; a conflicting commit fails certification instead of waiting): a group commit that fails
certification is run again and stores each row once; committers on two nodes storing the same batches store
each row once; verification claimers on three nodes hammering the same jobs verify each exactly once; two fleet
correlators on two nodes that both try to lead make each fleet alert once, and hand the lead over."""
# ruff: noqa: F811 - the fixtures imported from galera_fixtures are parameters of the tests, by name
from __future__ import annotations

import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from galera_fixtures import NODES, cluster, galera_db, lost_races, sql, wipe_db  # noqa: F401 - fixtures

from cloud_svc.clipstore import FileClipStore
from cloud_svc.config import FleetConfig, IngestConfig
from cloud_svc.domain import AlertIn, BatchIn, EventIn, RecordIn, VerifyResult
from cloud_svc.fleet import FleetIndex, FleetStore
from cloud_svc.ingest import Committer
from cloud_svc.store import Store
from cloud_svc.workers import Correlator

DISTRESS = ["glass_break", "scream", "shout", "gunshot"]
R, T = 500.0, 10.0


@pytest.fixture
def stores(cluster, galera_db):
    """A Store per node over the emptied test database: three servers, each talking to its own node."""
    wipe_db(cluster, galera_db)
    opened = {i: Store.open(cluster.node(i).url(galera_db), distress_labels=DISTRESS) for i in NODES}
    yield opened
    for s in opened.values():
        s.close()


def count(cluster, db, table: str, where: str = "1") -> int:
    return int(sql(cluster, 3, f"SELECT COUNT(*) FROM `{table}` WHERE {where}", database=db)[0][0])


def event(label: str, t: int, *, end: bool, lat: float = 52.52, lon: float = 13.40, eid: str = "") -> EventIn:
    return EventIn(eid or uuid.uuid4().hex, label, t, t + 700_000_000 if end else None, 0.9, [("Glass", 0.9)],
                   lat, lon, "onnxruntime", "ab" * 32, 1.5)


def test_a_group_commit_that_fails_certification_is_run_again_and_stores_each_row_once(
        cluster, galera_db, stores, tmp_path):
    """Node 2 commits a change to the device's row while node 1's group commit, which also changes it, is about
    to COMMIT: Galera aborts node 1's transaction (1213), and the committer runs it again whole."""
    s1 = stores[1]
    s1.devices.add_device("d1")
    t = time.time_ns()
    e1, e2 = event("glass_break", t, end=False), event("scream", t, end=False)
    batch = BatchIn("d1", 1, [RecordIn(1, t, "event", e1),
                              RecordIn(2, t, "event_end", event("glass_break", t, end=True, eid=e1.event_id)),
                              RecordIn(3, t, "event", e2),
                              RecordIn(4, t, "alert", AlertIn("distress", ["glass_break", "scream"], t, t + 1,
                                                              [e1.event_id, e2.event_id]))])
    meddled = []

    def node2_writes_the_same_row_first(conn) -> None:  # the engine's `commit` event: before the DBAPI COMMIT
        if not meddled:
            meddled.append(1)
            sql(cluster, 2, "UPDATE devices SET agent = 'node2' WHERE id = 'd1'", database=galera_db)

    before = lost_races(cluster)
    committer = Committer(s1.ingest, FileClipStore(tmp_path), IngestConfig(commit_retries=3)).start()
    sa.event.listen(s1.engine, "commit", node2_writes_the_same_row_first)
    try:
        result = committer.submit(batch).result(60)
    finally:
        sa.event.remove(s1.engine, "commit", node2_writes_the_same_row_first)
        committer.stop()
    assert (result.acked_seq, result.stored, result.duplicates) == (4, 4, 0)
    assert (committer.conflicts, committer.commits, committer.failures) == (1, 1, 0)
    assert lost_races(cluster) > before
    assert sql(cluster, 3, "SELECT acked_seq, agent FROM devices", database=galera_db) == [(4, "node2")]
    assert {t: count(cluster, galera_db, t) for t in ("events", "event_ends", "top_classes", "alerts",
                                                      "alert_events", "verifications")} == \
        {"events": 2, "event_ends": 1, "top_classes": 3, "alerts": 1, "alert_events": 2, "verifications": 1}


def test_committers_on_two_nodes_storing_the_same_batches_store_each_row_once(
        cluster, galera_db, stores, tmp_path):
    """Each batch of 6 devices reaches a committer on node 1 and one on node 2 at once (as when devices fail over
    between replicas mid-batch), round after round: all are acked, and each record is stored once."""
    devices = [f"lamp-{i}" for i in range(6)]
    stores[1].devices.add_devices(devices)
    n_events, per_batch = 30, 2
    t = time.time_ns()
    rounds: list[list[BatchIn]] = [[] for _ in range(2 * n_events // per_batch)]
    for d in devices:
        recs = []
        for k in range(n_events):
            label = DISTRESS[k % 4] if k % 2 else "siren"
            e = event(label, t + k * 10**9, end=False)
            recs += [RecordIn(2 * k + 1, t, "event", e),
                     RecordIn(2 * k + 2, t, "event_end", event(label, e.start_ns, end=True, eid=e.event_id))]
        for r, i in enumerate(range(0, len(recs), per_batch)):
            rounds[r].append(BatchIn(d, recs[i].seq, recs[i:i + per_batch]))
    before = lost_races(cluster)
    cfg = IngestConfig(commit_retries=20, commit_linger_ms=1)
    committers = [Committer(stores[i].ingest, FileClipStore(tmp_path), cfg).start() for i in (1, 2)]
    results = []
    try:
        for batches in rounds:  # a round's batches go to both committers together; the next round after them
            futures = [c.submit(b) for b in batches for c in committers]
            results += [f.result(60) for f in futures]
    finally:
        for c in committers:
            c.stop()
    print(f"\n{len(results)} batches through 2 nodes: {sum(c.commits for c in committers)} commits, "
          f"{sum(c.conflicts for c in committers)} run again after a conflict, {lost_races(cluster) - before} "
          f"transactions rolled back by the cluster")
    assert sum(c.failures for c in committers) == 0
    assert max(r.acked_seq for r in results) == 2 * n_events
    assert sum(r.stored for r in results) == len(devices) * 2 * n_events  # each record stored by one of the two
    assert dict(sql(cluster, 3, "SELECT id, acked_seq FROM devices", database=galera_db)) == \
        {d: 2 * n_events for d in devices}
    n = len(devices) * n_events
    assert count(cluster, galera_db, "events") == n
    assert sql(cluster, 3, "SELECT COUNT(DISTINCT device_id, seq) FROM events", database=galera_db)[0][0] == n
    assert count(cluster, galera_db, "event_ends") == n and count(cluster, galera_db, "top_classes") == 2 * n
    assert count(cluster, galera_db, "verifications") == len(devices) * (n_events // 2)  # the distress ones


def test_verification_claimers_on_three_nodes_verify_each_job_exactly_once(cluster, galera_db, stores):
    """Three workers, one per node, claim the same 300 pending jobs four at a time and store a verdict for each
    claimed job; node-local SKIP LOCKED lets them pick the same rows, and certification must sort it out."""
    n_jobs = 300
    stores[1].devices.add_device("d1")
    t = time.time_ns()
    stores[1].ingest.commit([BatchIn("d1", 1, [RecordIn(i + 1, t, "event_end", event("gunshot", t + i, end=True))
                                               for i in range(n_jobs)])])
    handed: list[tuple[int, int]] = []
    stored: list[int] = []
    lock = threading.Lock()
    meet = threading.Barrier(len(NODES))
    failures: list[BaseException] = []

    def worker(node: int) -> None:
        jobs = stores[node].jobs
        try:
            meet.wait(30)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                claimed = jobs.claim_jobs(f"node{node}", 4, lease_s=120, max_attempts=3)
                if not claimed:
                    if count(cluster, galera_db, "verifications", "status = 'pending'") == 0:
                        return
                    continue
                for j in claimed:
                    ok = jobs.finish_job(j, VerifyResult("fake", [j.label], {j.label: 0.9}, True))
                    with lock:
                        handed.append((j.id, node))
                        if ok:
                            stored.append(j.id)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    before = lost_races(cluster)
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in NODES]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    lost = lost_races(cluster) - before
    per_node = {i: sum(1 for _, n in handed if n == i) for i in NODES}
    print(f"\n{n_jobs} jobs by claimers on 3 nodes in {time.monotonic() - t0:.1f} s: {per_node} per node, "
          f"{lost} claims or verdicts rolled back by the cluster and run again")
    assert failures == []
    ids = [j for j, _ in handed]
    assert len(ids) == len(set(ids)) == n_jobs, "a job was handed to two claims, or one was never handed out"
    assert sorted(stored) == sorted(ids), "a verdict was not stored, or stored twice"
    assert sql(cluster, 3, "SELECT status, attempts, COUNT(*) FROM verifications GROUP BY status, attempts",
               database=galera_db) == [("done", 1, n_jobs)]
    by_node = dict(sql(cluster, 3, "SELECT claimed_by, COUNT(*) FROM verifications GROUP BY claimed_by",
                       database=galera_db))
    assert by_node == {f"node{i}": n for i, n in per_node.items() if n}
    assert lost > 0, "the claimers never collided across nodes: the test proved nothing"


def _pair_hears(store: Store, k: int, label: str = "gunshot") -> None:
    """Devices pair-k-a and pair-k-b, 10 m apart at a place of their own (k degrees east), hear `label` now."""
    t = time.time_ns()
    batches = []
    for j, side in enumerate("ab"):
        d = f"pair-{k}-{side}"
        store.devices.add_device(d)
        batches.append(BatchIn(d, 1, [RecordIn(1, t, "event", event(label, t + j * 10**8, end=False, lat=10.0,
                                                                     lon=float(k) + j * 1e-4))]))
    store.ingest.commit(batches)


def _fleet(cluster, db) -> list[tuple[int, str]]:
    """(alert id, the devices of its events in order) of every fleet alert, read through node 3."""
    return [(int(a), str(d)) for a, d in sql(cluster, 3, """
        SELECT a.id, GROUP_CONCAT(e.device_id ORDER BY e.device_id) FROM alerts a
        JOIN alert_events ae ON ae.alert_id = a.id JOIN events e ON e.id = ae.event_pk
        WHERE a.kind = 'fleet' GROUP BY a.id ORDER BY a.id""", database=db)]


def test_two_correlators_on_two_nodes_that_both_take_the_lead_make_one_fleet_alert(
        cluster, galera_db, stores, monkeypatch):
    """Both see the lease free and take it in their own node's view, plan and link the same pair, then commit:
    one step fails certification, links nothing and starts its index over, then follows the winner."""
    sql(cluster, 1, "INSERT INTO cursors (name, value) VALUES ('fleet', 0), ('fleet:leader', 0)", database=galera_db)
    _pair_hears(stores[3], 1)
    assert count(cluster, galera_db, "events") == 2
    for i in (1, 2):  # both nodes have the pair before the race (a causal read on each)
        assert sql(cluster, i, "SELECT COUNT(*) FROM events", database=galera_db) == [(2,)]
    meet = threading.Barrier(2)
    real_plan = FleetStore._plan_links

    def plan_together(self, conn, index, pos, mine, *a, **kw):
        plan = real_plan(self, conn, index, pos, mine, *a, **kw)
        meet.wait(30)  # both hold the lease in their own node's view; neither has committed
        return plan

    monkeypatch.setattr(FleetStore, "_plan_links", plan_together)
    ix = {1: FleetIndex(R, T, 60), 2: FleetIndex(R, T, 60)}
    out: dict[int, object] = {}

    def step(node: int) -> None:
        try:
            out[node] = stores[node].fleet.correlate(ix[node], settle_s=0.0)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            out[node] = exc

    before = lost_races(cluster)
    threads = [threading.Thread(target=step, args=(i,)) for i in (1, 2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    monkeypatch.undo()
    assert all(isinstance(r, list) for r in out.values()), out
    [winner] = [i for i in (1, 2) if out[i]]
    loser = 3 - winner
    assert out[loser] == [] and ix[loser].seen_id == 0 and ix[loser].size() == 0  # starts over
    assert lost_races(cluster) > before
    assert _fleet(cluster, galera_db) == [(out[winner][0], "pair-1-a,pair-1-b")]  # type: ignore[index]
    # the loser now follows the winner's lease: it reads the pair into its index and links nothing
    _pair_hears(stores[3], 2)
    assert sql(cluster, loser, "SELECT COUNT(*) FROM events", database=galera_db) == [(4,)]
    assert stores[loser].fleet.correlate(ix[loser], settle_s=0.0) == []
    assert ix[loser].seen_id > 0 and len(_fleet(cluster, galera_db)) == 1
    assert len(stores[winner].fleet.correlate(ix[winner], settle_s=0.0)) == 1
    assert [d for _, d in _fleet(cluster, galera_db)] == ["pair-1-a,pair-1-b", "pair-2-a,pair-2-b"]


def test_correlators_on_two_nodes_over_a_stream_of_events_make_each_fleet_alert_once(
        cluster, galera_db, stores):
    """Two Correlator workers (nodes 1 and 2) while node 3 stores 30 pairs of events; halfway the leader stops
    and hands over. Every pair makes exactly one fleet alert, no event is in two, and the cursor reaches the
    last event."""
    cfg = FleetConfig(settle_s=0.0, poll_s=0.05)
    workers = {i: Correlator(stores[i].fleet, cfg).start() for i in (1, 2)}
    pairs, handed_over = 30, None
    try:
        for k in range(pairs):
            _pair_hears(stores[3], k)
            time.sleep(0.05)
            if k == pairs // 2:
                leading = [i for i, w in workers.items() if w.alerts]
                assert len(leading) == 1, {i: w.alerts for i, w in workers.items()}
                handed_over = leading[0]
                workers[handed_over].stop()
        last = int(sql(cluster, 3, "SELECT MAX(id) FROM events", database=galera_db)[0][0])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
                len(_fleet(cluster, galera_db)) < pairs
                or sql(cluster, 3, "SELECT value FROM cursors WHERE name = 'fleet'", database=galera_db)[0][0] < last):
            time.sleep(0.2)
    finally:
        for w in workers.values():
            w.stop()
    fleet = _fleet(cluster, galera_db)
    assert sorted(d for _, d in fleet) == sorted(f"pair-{k}-a,pair-{k}-b" for k in range(pairs))
    assert sql(cluster, 3, "SELECT event_pk FROM alert_events GROUP BY event_pk HAVING COUNT(*) > 1",
               database=galera_db) == []
    assert sql(cluster, 3, "SELECT value FROM cursors WHERE name = 'fleet'", database=galera_db)[0][0] == last
    assert handed_over is not None and all(w.alerts for w in workers.values()), "the lead was not handed over"
    assert all(w.errors == 0 for w in workers.values()), {i: w.errors for i, w in workers.items()}

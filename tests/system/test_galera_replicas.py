"""Scale-out on a real three-node Galera cluster: three `python -m cloud_svc serve` replicas, each talking to a node
of its own, each with a verification worker and a fleet correlator, and six real edges (`edge_rt run --source
synth:...`) spread across them in pairs that hear the same things in three cities, each pair split over two
replicas. Every record is acked and stored once, every distress event verified once, and every pair's shared
events make one fleet alert, not one per replica."""
# ruff: noqa: F811 - the fixtures imported from galera_fixtures are parameters of the tests, by name
from __future__ import annotations

import re
import time
from collections import Counter, defaultdict

import pytest
from galera_fixtures import NODES, cluster, galera_db, lost_races, sql, wipe_db  # noqa: F401 - fixtures

from cloud_svc.store import Store
from edge_rt.outbox import Outbox
from edgert.labels import distress_labels
from support import ServerProcess, edge_run, env_with_repo

SCENARIO = "synth:tour,seed=4"   # glass, scream, shout, siren, baby cry over 34 s of audio
PLACES = {"berlin": (52.5200, 13.4050), "paris": (48.8570, 2.3520), "rome": (41.9000, 12.5000)}
WINDOW_NS = 10 * 10**9           # the fleet correlator's default window_s; the pairs are 10 m apart (radius 500 m)
SUMMARY_RE = re.compile(r"(\d+) events, (\d+) alerts")
EDGE_S = 120.0
SETTLE_S = 60.0


def _edges() -> list[tuple[str, float, float, int]]:
    """(device id, lat, lon, node of its replica): pair p's two devices talk to replicas p and p + 1."""
    out = []
    for p, (place, (lat, lon)) in enumerate(PLACES.items()):
        for k in (0, 1):
            out.append((f"{place}-{k}", lat, lon + k * 1.4e-4, NODES[(p + k) % len(NODES)]))
    return out


@pytest.fixture
def replicas(cluster, galera_db, tmp_path):
    """A `serve` per node, sharing one clip store; the schema is migrated once, by galera_db."""
    wipe_db(cluster, galera_db)
    env = {**env_with_repo(), "CLOUD_SVC__FLEET__POLL_S": "0.2", "CLOUD_SVC__FLEET__SETTLE_S": "2",
           "CLOUD_SVC__VERIFY__POLL_S": "0.2"}
    servers = {i: ServerProcess(cluster.node(i).url(galera_db), clips=str(tmp_path / "clips"),
                                log_path=tmp_path / f"serve-node{i}.log", env=env,
                                extra=("--verify-workers", "1", "--no-migrate")) for i in NODES}
    try:
        for s in servers.values():
            s.start(timeout=90)
        yield servers
    finally:
        for s in servers.values():
            s.terminate()


def test_replicas_on_three_nodes_store_verify_and_correlate_what_six_edges_send_exactly_once(
        cluster, galera_db, replicas, tmp_path):
    t0 = time.monotonic()
    races_before = lost_races(cluster)
    edges = _edges()
    admin = Store.open(cluster.node(1).url(galera_db))
    try:
        tokens = admin.devices.add_devices([d for d, *_ in edges])
    finally:
        admin.close()

    procs = {d: edge_run(SCENARIO, tmp_path / f"spool-{d}", cloud=replicas[node].target, device_id=d,
                         token=tokens[d], lat=lat, lon=lon, wait=False)
             for d, lat, lon, node in edges}
    made: dict[str, tuple[int, int]] = {}  # device -> (events, device alerts) its edge made and sent
    for d, p in procs.items():
        out, err = p.communicate(timeout=EDGE_S)
        assert p.returncode == 0, f"edge {d} exited {p.returncode}:\n{err[-3000:]}"
        m = SUMMARY_RE.search(out + err)
        assert m, f"edge {d} printed no run summary:\n{(out + err)[-2000:]}"
        made[d] = (int(m.group(1)), int(m.group(2)))
    edges_s = time.monotonic() - t0

    # every record acked: each outbox is empty, and its acked seq is the last it gave out
    sent_seq = {}
    for d, *_ in edges:
        ob = Outbox(tmp_path / f"spool-{d}" / "outbox.db")
        st = ob.stats()
        ob.close()
        assert st["depth"] == 0 and st["dropped"] == 0 and st["acked"] == st["next_seq"] - 1, (d, st)
        sent_seq[d] = st["acked"]
    assert dict(sql(cluster, 3, "SELECT id, acked_seq FROM devices", database=galera_db)) == sent_seq

    # stored once: per device the events and device alerts its edge made, keyed by (device_id, seq)
    stored = {d: (int(n), int(a)) for d, n, a in sql(cluster, 3, """
        SELECT d.id, (SELECT COUNT(*) FROM events e WHERE e.device_id = d.id),
               (SELECT COUNT(*) FROM alerts a WHERE a.device_id = d.id AND a.kind = 'device') FROM devices d""",
                                                     database=galera_db)}
    assert stored == made, f"stored (events, alerts) per device {stored} != what the edges made {made}"
    assert all(n > 0 for n, _ in made.values()), made
    total = sum(n for n, _ in made.values())
    assert sql(cluster, 3, "SELECT COUNT(DISTINCT device_id, seq), COUNT(DISTINCT event_id), COUNT(*), "
                           "(SELECT COUNT(*) FROM event_ends) FROM events", database=galera_db) == \
        [(total, total, total, total)]

    # every distress event verified, exactly once, by one of the three replicas' workers
    distress = tuple(distress_labels())
    marks = ", ".join(["%s"] * len(distress))
    n_distress = int(sql(cluster, 3, f"SELECT COUNT(*) FROM events WHERE label IN ({marks})", distress,
                         database=galera_db)[0][0])
    assert n_distress > 0

    def verifications() -> list[tuple]:
        return sql(cluster, 3, f"""
            SELECT v.status, v.attempts, v.verifier, v.claimed_by FROM events e
            LEFT JOIN verifications v ON v.event_pk = e.id WHERE e.label IN ({marks})""", distress,
                   database=galera_db)

    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline and any(v[0] != "done" for v in verifications()):
        time.sleep(0.5)
    rows = verifications()
    assert len(rows) == n_distress
    assert Counter((s, a, v) for s, a, v, _ in rows) == {("done", 1, "yamnet"): n_distress}, rows
    workers = {c.split(":")[1] for *_, c in rows}  # host:pid:i of the worker that claimed it

    # fleet alerts: each event heard by both devices of its pair (same label, within the window) is in
    # exactly one fleet alert, together with its partner; no other event is in any
    events = sql(cluster, 3, "SELECT id, device_id, label, start_ns FROM events", database=galera_db)
    pair_of = {d: d.rsplit("-", 1)[0] for d, *_ in edges}
    partnered = {pk for pk, d, label, t in events
                 if any(pair_of[d2] == pair_of[d] and d2 != d and l2 == label and abs(t2 - t) <= WINDOW_NS
                        for _, d2, l2, t2 in events)}
    assert partnered, "no pair heard the same thing: the scenario or the edges' timing changed"
    last = max(pk for pk, *_ in events)

    def fleet() -> list[tuple]:
        return sql(cluster, 3, """SELECT ae.alert_id, ae.event_pk, a.label, a.device_count FROM alert_events ae
                                  JOIN alerts a ON a.id = ae.alert_id WHERE a.kind = 'fleet'""", database=galera_db)

    def cursor() -> int:
        rows = sql(cluster, 3, "SELECT value FROM cursors WHERE name = 'fleet'", database=galera_db)
        return int(rows[0][0]) if rows else 0

    while time.monotonic() < deadline and ({pk for _, pk, *_ in fleet()} != partnered or cursor() < last):
        time.sleep(0.5)
    links = fleet()
    per_event = Counter(pk for _, pk, *_ in links)
    assert [pk for pk, n in per_event.items() if n > 1] == [], "an event is in two fleet alerts"
    assert set(per_event) == partnered, (sorted(set(per_event) - partnered), sorted(partnered - set(per_event)))
    members: dict[int, set] = defaultdict(set)
    by_pk = {pk: (d, label) for pk, d, label, _ in events}
    for alert_id, pk, label, device_count in links:
        members[alert_id].add(by_pk[pk])
        assert by_pk[pk][1] == label and device_count == 2
    for alert_id, ms in members.items():
        assert len({pair_of[d] for d, _ in ms}) == 1 and len({d for d, _ in ms}) == 2, (alert_id, ms)
    assert cursor() == last
    leaders = sql(cluster, 3, "SELECT COUNT(*) FROM cursors WHERE name = 'fleet:leader'", database=galera_db)
    assert leaders == [(1,)]

    for node, srv in replicas.items():
        log = srv.log_path.read_text(errors="replace")
        assert "Traceback" not in log, f"serve on node{node} logged a traceback:\n{log[-3000:]}"
    print(f"\n6 edges over 3 replicas on 3 Galera nodes: {total} events ({n_distress} distress, verified by "
          f"{len(workers)} workers), {len(members)} fleet alerts, {lost_races(cluster) - races_before} transactions "
          f"rolled back by the cluster and run again; edges done in {edges_s:.1f} s, all checked in "
          f"{time.monotonic() - t0:.1f} s")

"""Several notification bridges on one MariaDB database, as on the replicas of a scaled-out cloud: a real Mosquitto
gets every note once while one bridge relays and the others stand by; when the relaying bridge is kill -9'd, another
takes over within its lease from the stored cursors and nothing is lost (only what the dead one had published but
not yet recorded comes twice); a clean stop hands over at once. And with verification on (two `serve --mqtt
--verify-workers 1` replicas, a real synth: edge), each verified distress event gets its "verified" note, once,
after its start and end notes."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from mosquitto import Collector, Mosquitto

from cloud_svc.domain import BatchIn, EventIn, RecordIn
from cloud_svc.store import Store
from support import REPO, ServerProcess, add_device, edge_run, env_with_repo, wait_for

LEASE_S = 3.0
POLL_S = 0.2
BRIDGE_ENV = {"CLOUD_SVC__BRIDGE__LEASE_S": str(LEASE_S), "CLOUD_SVC__BRIDGE__POLL_S": str(POLL_S)}
RELAYS = "this bridge relays now"
CLASSES = [("Glass", 0.8), ("Shatter", 0.4)]


def start_bridge(db_url: str, broker: str, log: Path) -> subprocess.Popen:
    """`python -m cloud_svc mqtt` with a short lease, until it says what it bridges."""
    proc = subprocess.Popen([sys.executable, "-m", "cloud_svc", "-v", "mqtt", "--db", db_url, "--broker", broker],
                            cwd=REPO, env={**env_with_repo(), **BRIDGE_ENV}, stdout=subprocess.PIPE,
                            stderr=open(log, "ab"), text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("bridging "), f"{line!r}; see {log}"
    return proc


def relays(log: Path) -> int:
    """How often the bridge logging to `log` took the lead."""
    return log.read_text(errors="replace").count(RELAYS)


class Feeder:
    """Stores events (a start and an end each) straight through the store, as the ingest committers would."""

    def __init__(self, store: Store, device: str = "d1"):
        self.store, self.device, self.seq = store, device, 0
        self.eids: list[str] = []
        store.devices.add_device(device)

    def add(self, n: int = 1) -> list[str]:
        records, eids = [], []
        for _ in range(n):
            eid, t = uuid.uuid4().hex, time.time_ns()
            records += [RecordIn(self.seq + 1, t, "event", EventIn(eid, "glass_break", t, None, 0.6, CLASSES)),
                        RecordIn(self.seq + 2, t, "event_end",
                                 EventIn(eid, "glass_break", t, t + 700_000_000, 0.9, CLASSES))]
            self.seq += 2
            eids.append(eid)
        self.store.ingest.commit([BatchIn(self.device, records[0].seq, records)])
        self.eids += eids
        return eids

    def want(self) -> set[str]:
        return {f"event/{self.device}/{e}/{phase}" for e in self.eids for phase in ("start", "end")}


def deliveries(c: Collector) -> list[str]:
    return [json.loads(p)["delivery"] for t, p, _ in c.snapshot() if t.endswith("/event")]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_one_of_two_bridges_relays_and_the_other_takes_over_when_it_is_killed(mariadb_url, tmp_path):
    store = Store.open(mariadb_url)
    store.upgrade()
    feed = Feeder(store)
    broker = Mosquitto(tmp_path / "broker").start()
    c = Collector(broker.url, ["edgert/+/event", "edgert/bridge/status"])
    logs = {k: tmp_path / f"bridge-{k}.log" for k in "ab"}
    procs = {"a": start_bridge(mariadb_url, broker.url, logs["a"])}
    try:
        assert wait_for(lambda: relays(logs["a"]) == 1, timeout=10), logs["a"].read_text()
        procs["b"] = start_bridge(mariadb_url, broker.url, logs["b"])

        # both run: every note once, all from a
        for _ in range(5):
            feed.add(4)
        c.wait_for(lambda m: feed.want() <= set(deliveries(c)), timeout=20)
        time.sleep(1.0)                                   # anything sent twice would have come by now
        got = deliveries(c)
        assert sorted(got) == sorted(feed.want()), "missing or repeated notes while both bridges ran"
        assert relays(logs["b"]) == 0 and "standing by" in logs["b"].read_text()

        # kill -9 the relaying bridge while events keep coming
        running = threading.Event()
        running.set()

        def keep_feeding() -> None:
            while running.is_set():
                feed.add(1)
                time.sleep(0.1)

        feeder = threading.Thread(target=keep_feeding, daemon=True)
        feeder.start()
        time.sleep(1.5)
        procs["a"].kill()
        procs["a"].wait(10)
        killed = time.monotonic()
        # b cannot have taken over yet (a renewed at most a lease ago, and at least half a lease ago): whatever
        # arrived by now was published by a
        time.sleep(0.5)
        by_a = set(deliveries(c))
        assert wait_for(lambda: relays(logs["b"]) == 1, timeout=LEASE_S + 3), logs["b"].read_text()
        took_over = time.monotonic() - killed
        time.sleep(1.0)
        running.clear()
        feeder.join(10)
        c.wait_for(lambda m: feed.want() <= set(deliveries(c)), timeout=20)
        time.sleep(1.0)
    finally:
        for p in procs.values():
            stop(p)
        c.close()
        broker.stop()
        store.close()
    got = deliveries(c)
    assert set(got) == feed.want(), f"lost: {sorted(feed.want() - set(got))}"
    repeated = {d for d in got if got.count(d) > 1}
    assert repeated <= by_a, f"repeated, though the dead bridge never sent them: {sorted(repeated - by_a)}"
    assert not [d for d in got if got.count(d) > 2], "a note came three times"
    assert took_over <= LEASE_S + 2 * POLL_S + 1.0, f"b took over {took_over:.1f} s after the kill"
    # a's will said offline when it died; b said online when it took over, and that is what the broker keeps
    states = [json.loads(p)["state"] for p, _ in c.on("edgert/bridge/status")]
    assert "offline" in states and states[-1] == "offline"  # b's clean stop at the end
    assert states[states.index("offline") + 1] == "online"


def test_a_cleanly_stopped_bridge_hands_over_at_once_and_nothing_is_sent_twice(mariadb_url, tmp_path):
    store = Store.open(mariadb_url)
    store.upgrade()
    feed = Feeder(store)
    broker = Mosquitto(tmp_path / "broker").start()
    c = Collector(broker.url, ["edgert/+/event", "edgert/bridge/status"])
    logs = {k: tmp_path / f"bridge-{k}.log" for k in "ab"}
    procs = {"a": start_bridge(mariadb_url, broker.url, logs["a"])}
    try:
        assert wait_for(lambda: relays(logs["a"]) == 1, timeout=10), logs["a"].read_text()
        procs["b"] = start_bridge(mariadb_url, broker.url, logs["b"])
        feed.add(5)
        c.wait_for(lambda m: feed.want() <= set(deliveries(c)), timeout=20)
        procs["a"].send_signal(signal.SIGTERM)           # a settles its cursors (up to 10 s), then hands over
        out, _ = procs["a"].communicate(timeout=30)
        assert procs["a"].returncode == 0 and "stopped:" in out
        stopped = time.monotonic()
        assert wait_for(lambda: relays(logs["b"]) == 1, timeout=5), logs["b"].read_text()
        handed_over = time.monotonic() - stopped
        feed.add(5)
        c.wait_for(lambda m: feed.want() <= set(deliveries(c)), timeout=20)
        time.sleep(1.0)
    finally:
        for p in procs.values():
            stop(p)
        c.close()
        broker.stop()
        store.close()
    got = deliveries(c)
    assert sorted(got) == sorted(feed.want()), "missing or repeated notes across a clean handover"
    assert handed_over < 2 * POLL_S + 1.0, f"b took over {handed_over:.1f} s after a stopped (lease {LEASE_S:g} s)"
    # a said offline on its way out, then b online: the broker keeps online
    assert [json.loads(p)["state"] for p, _ in c.on("edgert/bridge/status")] == ["online", "offline", "online",
                                                                                 "offline"]


def test_verified_distress_events_of_a_real_edge_get_one_verified_note_each_from_two_replicas(mariadb_url, tmp_path):
    store = Store.open(mariadb_url)
    store.upgrade()
    store.close()
    broker = Mosquitto(tmp_path / "broker").start()
    c = Collector(broker.url, ["edgert/+/event"])
    servers = [ServerProcess(mariadb_url, clips=str(tmp_path / "clips"), log_path=tmp_path / f"server-{k}.log",
                             extra=("--mqtt", broker.url, "--verify-workers", "1", "--no-migrate", "--no-fleet"),
                             env={**env_with_repo(), **BRIDGE_ENV}) for k in "ab"]
    engine = sa.create_engine(mariadb_url)
    try:
        for s in servers:
            s.start()
        token = add_device(mariadb_url, "yard")
        r = edge_run("synth:distress", tmp_path / "yard", cloud=servers[1].target, device_id="yard", token=token,
                     lat=52.52, lon=13.405)
        assert r.returncode == 0, r.stderr

        def finished() -> list:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT e.event_id, v.status, v.agree FROM verifications v "
                                            "JOIN events e ON e.id = v.event_pk")).all()
            return rows if rows and all(x.status not in ("pending", "running") for x in rows) else []

        assert wait_for(finished, timeout=60, every=0.5), "verifications did not finish"
        verdicts = {x.event_id: x for x in finished()}
        with engine.connect() as conn:
            eids = list(conn.execute(sa.text("SELECT event_id FROM events")).scalars())
        want = {f"event/yard/{e}/{phase}" for e in eids for phase in ("start", "end")}
        want |= {f"event/yard/{e}/verified" for e in verdicts}
        c.wait_for(lambda m: want <= set(deliveries(c)), timeout=20)
        time.sleep(1.0)
        # one replica's bridge relayed all along (the other takes over once that replica stops, below)
        assert sorted(relays(tmp_path / f"server-{k}.log") for k in "ab") == [0, 1]
    finally:
        for s in servers:
            s.terminate()
        c.close()
        broker.stop()
        engine.dispose()
    got = deliveries(c)
    assert sorted(got) == sorted(want), "missing or repeated notes"
    notes = [json.loads(p) for t, p, _ in c.snapshot() if t == "edgert/yard/event"]
    for eid, v in verdicts.items():
        phases = [n["phase"] for n in notes if n["id"] == eid]
        assert phases == ["start", "end", "verified"], f"{eid}: {phases}"
        [note] = [n for n in notes if n["id"] == eid and n["phase"] == "verified"]
        state = {"done": "agree" if v.agree else "disagree"}.get(v.status, v.status)
        assert note["verification"]["state"] == state and note["end_ns"] is not None

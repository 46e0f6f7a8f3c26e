"""System benchmark: sound -> database row latency (p50, p99) with 100 devices on loopback, per database (SQLite,
MariaDB, a 3-node Galera cluster); and the parts of a whole running system that the soak test
(tests/system/test_soak.py) shares with it: real edge processes, a host of simulated devices, a row watcher.

Per database, against a fresh database and a freshly started `python -m cloud_svc serve`:
  - real edges: `--edges` processes of `python -m edge_rt run --source synth:... --realtime` (ONNX Runtime), each
    playing its own scenario, a known sound every `--gap` s, paced to the wall clock as a microphone delivers it;
  - simulated devices for the rest of `--devices`: one process (`bench/system.py fleet`) holding the edge's own
    Outbox and Uplink per device (its real code, one uplink thread each), each putting one event (a start record,
    then its end with the 2 KiB embedding 0.7 s later) every `--period` s on average;
  - a watcher that polls the `events` table every `--poll-ms` for the real edges' rows (on Galera through node 2,
    while the server writes through node 1: the row is replicated and visible), and a probe that times one
    single-row INSERT + COMMIT on the same database every 100 ms (through the server's node).

A sound's latency runs from the moment its audible part starts in the stream the edge hears (the edge's stream
clock, t0, plus the scenario's onset; t0 comes from the edge's log line "event L starts at S s" and the row's
start_ns = t0 + S) to the start of the first poll that sees its row. It splits at the row's created_ns (when the
edge's outbox took the record) into the edge's part (hearing a 0.96 s window, inference, detection, the outbox
write) and the cloud path (outbox fsync, uplink poll, gRPC, validation, commit, replication, poll).

The same-run peers: the edge's part alone (sound -> outbox, the same sounds), which the row cannot beat, so
"row / edge" is what the whole cloud path costs on top; and the database's bare single-row commit, which the
cloud path cannot beat. The simulated devices' outbox -> ack latency (the cloud path as each device sees it)
is reported beside them.

    .venv/bin/python bench/system.py                            # sqlite, mariadb, galera; 100 devices, 6 edges
    .venv/bin/python bench/system.py --dbs sqlite --seconds 40  # a quick look
    .venv/bin/python bench/system.py --markdown table.md        # also write the table there
"""
from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# _procs.py (also when tests/system/test_soak.py loads this file), support.py, galera.py
sys.path[:0] = [str(REPO / "bench"), str(REPO), str(REPO / "tests"), str(REPO / "tests" / "system")]

from _procs import cpu_seconds, mariadb_pids, rss_bytes  # noqa: E402,F401 - the soak samples RSS through here

from support import ServerProcess, TempMariaDB, env_with_repo, mariadb_available  # noqa: E402

LABELS = ("glass_break", "siren", "scream", "shout_help")  # scenario labels that do not overlap at a 5 s gap
EVENT_LABEL = {"shout_help": "shout"}  # scenario label -> the label the edge reports
SIM_LABELS = ("glass_break", "dog_bark", "siren", "speech", "car_horn", "alarm")
SIM_CLASSES = [("Glass", 0.81), ("Shatter", 0.4), ("Breaking", 0.2), ("Smash, crash", 0.1), ("Speech", 0.05)]
SIM_EVENT_S = 0.7  # a simulated event's end record follows its start by this much
STARTS_RE = re.compile(r"edge_rt\.pipeline: event (\S+) starts at (\d+\.\d+) s")


# ------------------------------------------------------------------------------------------------ processes
def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _reaped_cpu() -> float:
    """CPU seconds of this process's children that have exited and been waited for."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def outbox_depth(path: Path) -> Optional[int]:
    """Records waiting in an edge's outbox (its running total), read beside the running edge; None if unreadable."""
    if not path.is_file():  # not made yet (connecting would create it)
        return None
    try:
        con = sqlite3.connect(str(path), timeout=5)
        try:
            row = con.execute("SELECT value FROM meta WHERE key='depth'").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return int(row[0]) if row else None


class RealEdge:
    """One `python -m edge_rt -v run` process streaming to the cloud; its log goes to a file (it never blocks on
    a pipe however long it runs) and says when each event started in stream seconds."""

    def __init__(self, device_id: str, token: str, source: str, work: Path, target: str, *, loop: bool = False,
                 backend: str = "onnxruntime"):
        self.device_id, self.token, self.source, self.target = device_id, token, source, target
        self.spool = work / "spool"
        self.log = work / "edge.log"
        self.cmd = [sys.executable, "-m", "edge_rt", "-v", "run", "--source", source, "--realtime",
                    "--spool", str(self.spool), "--device-id", device_id, "--cloud", target, "--backend", backend,
                    *(["--loop"] if loop else [])]
        self.proc: Optional[subprocess.Popen] = None

    @property
    def outbox(self) -> Path:
        return self.spool / "outbox.db"

    def start(self) -> "RealEdge":
        env = env_with_repo()
        env["EDGE_RT__CLOUD__TOKEN"] = self.token  # off the command line, as the edge's help says
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (the edge stops its loop, drains briefly and exits); its exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def starts(self) -> list[tuple[str, float]]:
        """(label, stream seconds) of every event start the edge logged once its outbox held it, in order."""
        return [(m.group(1), float(m.group(2))) for m in STARTS_RE.finditer(self.log.read_text(errors="replace"))]

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Fleet:
    """`bench/system.py fleet` as a child process: simulated devices through the edge's real Outbox and Uplink."""

    def __init__(self, target: str, devices: list[tuple[str, str]], work: Path, *, period_s: float,
                 poll_s: float = 0.01, seed: int = 0):
        self.work = work
        self.devices_file = work / "devices.json"
        self.results_file = work / "results.json"
        self.acks_file = work / "acks.bin"
        self.out = work / "fleet.log"
        self.spool = work / "spools"
        self.n = len(devices)
        work.mkdir(parents=True, exist_ok=True)
        self.devices_file.write_text(json.dumps(devices))
        self.cmd = [sys.executable, str(Path(__file__).resolve()), "fleet", "--target", target,
                    "--devices", str(self.devices_file), "--spool", str(self.spool), "--period", str(period_s),
                    "--poll-s", str(poll_s), "--seed", str(seed), "--results", str(self.results_file),
                    "--acks", str(self.acks_file)]
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 120.0) -> int:
        """Start it and wait until its devices' streams are open; returns how many connected."""
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=env_with_repo(), stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(r"^ready (\d+)/", self.out.read_text(errors="replace"), re.M)
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError(f"the simulated fleet exited with {self.proc.returncode}:\n{self.tail()}")
            time.sleep(0.1)
        self.proc.kill()
        raise TimeoutError(f"the simulated fleet did not connect within {timeout:.0f} s:\n{self.tail()}")

    def outboxes(self) -> list[Path]:
        return sorted(self.spool.glob("*/outbox.db"))

    def stop(self, timeout: float = 90.0) -> dict:
        """SIGTERM: it stops producing, waits for the acks in flight, stops its uplinks and writes its results."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise RuntimeError(f"the simulated fleet did not stop within {timeout:.0f} s:\n{self.tail()}") from None
        if rc != 0 or not self.results_file.is_file():
            raise RuntimeError(f"the simulated fleet exited with {rc}:\n{self.tail()}")
        res = json.loads(self.results_file.read_text())
        res["acks"] = read_acks(self.acks_file)
        return res

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.out.read_text(errors="replace").splitlines()[-lines:])


# ------------------------------------------------------------------------------------------------ the fleet process
def _sim_parts():
    """The edge's classes, imported only in the fleet process (the bench itself never needs them)."""
    from edge_rt.config import CloudConfig
    from edge_rt.outbox import Outbox
    from edge_rt.uplink import Uplink

    class TimedOutbox(Outbox):
        """The edge's outbox, noting when each record was put and when the cloud's ack for it arrived."""

        def __init__(self, path: Path, sink: "AckLog"):
            super().__init__(path)
            self._put_ns: dict[int, int] = {}  # only what is not acked yet
            self._sink = sink
            self._times_lock = threading.Lock()

        def put_many(self, records, now_ns=None):
            now_ns = time.time_ns() if now_ns is None else now_ns
            seqs = super().put_many(records, now_ns)
            with self._times_lock:
                self._put_ns.update((s, now_ns) for s in seqs)
            return seqs

        def ack(self, upto_seq: int, consumer: str = "cloud") -> int:
            now = time.time_ns()  # the ack's arrival, before the outbox deletes what it covers
            with self._times_lock:
                done = [s for s in self._put_ns if s <= upto_seq]
                puts = [self._put_ns.pop(s) for s in done]
            self._sink.write(puts, now)
            return super().ack(upto_seq, consumer)

    class OwnConnectionUplink(Uplink):
        """The edge's Uplink on a channel with its own TCP connection: gRPC shares one connection among a process's
        channels to the same target, and every real device has its own."""

        def _channel(self):
            import grpc

            o = self.o
            return grpc.insecure_channel(self.target, options=[
                ("grpc.max_send_message_length", o.max_message_bytes),
                ("grpc.max_receive_message_length", o.max_message_bytes),
                ("grpc.enable_retries", 0),
                ("grpc.keepalive_time_ms", int(o.keepalive_s * 1000)),
                ("grpc.keepalive_timeout_ms", int(o.keepalive_timeout_s * 1000)),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.initial_reconnect_backoff_ms", int(o.backoff_initial_s * 1000)),
                ("grpc.max_reconnect_backoff_ms", int(o.backoff_max_s * 1000)),
                ("grpc.use_local_subchannel_pool", 1)])

    return CloudConfig, TimedOutbox, OwnConnectionUplink


ACK_DTYPE = np.dtype([("put_ns", "<i8"), ("ms", "<f4")])


class AckLog:
    """(put time, put -> ack ms) of every acked record, appended to a file: the fleet's memory must not grow with
    the records it sends (the soak measures it)."""

    def __init__(self, path: Path):
        self._fh = open(path, "wb")
        self._lock = threading.Lock()
        self.n = 0

    def write(self, puts: list[int], ack_ns: int) -> None:
        if puts:
            rows = np.array([(p, (ack_ns - p) / 1e6) for p in puts], dtype=ACK_DTYPE)
            with self._lock:
                self._fh.write(rows.tobytes())
                self.n += len(rows)

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def read_acks(path: Path) -> np.ndarray:
    """An AckLog's file as a structured array (put_ns, ms)."""
    return np.fromfile(path, dtype=ACK_DTYPE) if path.is_file() else np.zeros(0, ACK_DTYPE)


@dataclass
class _SimDevice:
    device_id: str
    outbox: object
    uplink: object
    builder: object
    embedding: np.ndarray
    events: int = 0
    open: dict = field(default_factory=dict)  # event_id -> Event whose end is still to come


def fleet_main(argv: list[str]) -> int:
    """The simulated devices' process: each device an edge Outbox + Uplink; one thread puts their events."""
    ap = argparse.ArgumentParser(prog="bench/system.py fleet")
    ap.add_argument("--target", required=True)
    ap.add_argument("--devices", required=True, help="JSON file: [[device_id, token], ...]")
    ap.add_argument("--spool", required=True, help="one outbox folder per device is made under it")
    ap.add_argument("--period", type=float, default=1.0, help="mean seconds between one device's events")
    ap.add_argument("--poll-s", type=float, default=0.01, help="the uplinks' poll_s (the edge's default 0.01)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", required=True)
    ap.add_argument("--acks", required=True, help="binary file of (put ns, put -> ack ms) per acked record")
    args = ap.parse_args(argv)

    from edge_rt.detector import Event
    from edge_rt.records import RecordBuilder

    CloudConfig, TimedOutbox, OwnConnectionUplink = _sim_parts()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    rng = random.Random(args.seed)
    acks = AckLog(Path(args.acks))
    options = CloudConfig(poll_s=args.poll_s)
    devices = []
    for i, (device_id, token) in enumerate(json.loads(Path(args.devices).read_text())):
        outbox = TimedOutbox(Path(args.spool) / device_id / "outbox.db", acks)
        lat, lon = -60 + (i % 100) * 1.2, -170 + (i // 100) * 3.4  # far apart: no fleet alerts among them
        uplink = OwnConnectionUplink(outbox, args.target, device_id, token, options=options,
                                     heartbeat=lambda: {"simulated": 1.0})
        builder = RecordBuilder(backend="onnxruntime", model_sha256="ab" * 32, lat=lat, lon=lon, t0_ns=0)
        emb = np.random.default_rng(i).standard_normal(1024).astype(np.float32)
        devices.append(_SimDevice(device_id, outbox, uplink, builder, emb))
    for d in devices:
        d.uplink.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(d.uplink.connected for d in devices) and not stop.is_set():
        time.sleep(0.05)
    print(f"ready {sum(d.uplink.connected for d in devices)}/{len(devices)}", flush=True)

    # One heap of (due, device, event) for every device: a start record at `due`, its end SIM_EVENT_S later.
    now = time.monotonic()
    heap: list[tuple[float, int, str]] = [(now + rng.uniform(0, args.period), i, "") for i in range(len(devices))]
    heapq.heapify(heap)
    puts = 0
    while not stop.is_set():
        due, i, event_id = heap[0]
        if stop.wait(max(0.0, due - time.monotonic())):
            break
        heapq.heappop(heap)
        d = devices[i]
        if not event_id:
            label = SIM_LABELS[(i + d.events) % len(SIM_LABELS)]
            ev = Event(label=label, start_s=0.0, score=0.81, end_s=SIM_EVENT_S, classes=list(SIM_CLASSES))
            d.builder.t0_ns = time.time_ns()
            st = d.builder.started(ev, inference_ms=1.9)
            d.open[ev.event_id] = (ev, d.builder.t0_ns)
            d.events += 1
            heapq.heappush(heap, (due + SIM_EVENT_S, i, ev.event_id))
            heapq.heappush(heap, (due + args.period * rng.uniform(0.5, 1.5), i, ""))
        else:
            ev, t0 = d.open.pop(event_id)
            d.builder.t0_ns = t0
            st = d.builder.ended(ev, embedding=d.embedding)
        d.outbox.put(st.kind, st.body, st.clip)
        puts += 1

    # Stopping: give the cloud a moment to ack what is in flight, then stop every uplink at once.
    end = time.monotonic() + 10
    while time.monotonic() < end and any(d.outbox.stats()["depth"] for d in devices):
        time.sleep(0.05)
    for d in devices:
        d.uplink.stop(timeout=0)
    for d in devices:
        d.uplink.stop(timeout=10)
    stats = [d.uplink.stats() for d in devices]
    depth = sum(d.outbox.stats()["depth"] for d in devices)
    for d in devices:
        d.outbox.close()
    acks.close()
    Path(args.results).write_text(json.dumps({
        "devices": len(devices), "events": sum(d.events for d in devices), "records_put": puts,
        "records_acked": acks.n, "depth_at_end": depth,
        "connects": sum(s["connects"] for s in stats), "retries": sum(s["retries"] for s in stats),
        "rejects": sum(s["rejects"] for s in stats), "failed": [s["failed"] for s in stats if s["failed"]]}))
    return 0


# ------------------------------------------------------------------------------------------------ databases
@dataclass
class Database:
    kind: str
    url: str            # what the server writes to
    reader: str         # where the watcher reads (Galera: another node)
    cleanup: object = None


def _dbapi(url: str):
    """(DBAPI connection, paramstyle marker) for a sqlite:/// or mysql+pymysql:// URL; MySQL in autocommit."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        con = sqlite3.connect(u.database, timeout=30, isolation_level=None, check_same_thread=False)
        return con, "?"
    import pymysql

    return pymysql.connect(host=u.host or "127.0.0.1", port=u.port or 3306, user=u.username or "root",
                           password=u.password or "", database=u.database, autocommit=True), "%s"


def open_database(kind: str, tmp: Path) -> Database:
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'cloud.db'}"
        return Database(kind, url, url)
    if kind == "mariadb":
        why = mariadb_available()
        if why:
            raise RuntimeError(why)
        db = TempMariaDB("bench_system")
        return Database(kind, db.url, db.url, db.drop)
    if kind == "galera":
        from galera import GaleraCluster

        cluster = GaleraCluster()
        started_here = not cluster.answers()
        if started_here:  # and stopped again at the end; a cluster that was running stays up
            print("starting the Galera cluster (tests/system/galera.py)", file=sys.stderr, flush=True)
            cluster.start()
        name = f"bench_system_{uuid.uuid4().hex[:8]}"
        conn = cluster.connect(1)
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        conn.close()

        def drop():
            c = cluster.connect(1)
            with c.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            c.close()
            if started_here:
                cluster.stop()

        return Database(kind, cluster.node(1).url(name), cluster.node(2).url(name), drop)
    raise ValueError(f"unknown database {kind!r}: sqlite, mariadb or galera")


class RowWatcher(threading.Thread):
    """Polls `events` for some devices' rows; notes, for each row, the start of the first poll that saw it."""

    def __init__(self, url: str, device_ids: list[str], every_s: float):
        super().__init__(name="row-watcher", daemon=True)
        self.url, self.device_ids, self.every_s = url, list(device_ids), every_s
        self.rows: dict[tuple[str, int], dict] = {}
        self.polls = 0
        self.error: Optional[BaseException] = None
        self._stop_evt = threading.Event()

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(10)

    def run(self) -> None:
        try:
            con, p = _dbapi(self.url)
            marks = ",".join([p] * len(self.device_ids))
            # received_ns is stamped when the commit begins: a row becomes visible a little later, so look back
            sql = (f"SELECT device_id, seq, label, start_ns, created_ns, received_ns FROM events "
                   f"WHERE device_id IN ({marks}) AND received_ns > {p}")
            since = 0
            while not self._stop_evt.is_set():
                t = time.time_ns()
                cur = con.cursor()
                cur.execute(sql, (*self.device_ids, since))
                for device_id, seq, label, start_ns, created_ns, received_ns in cur.fetchall():
                    key = (device_id, int(seq))
                    if key not in self.rows:
                        self.rows[key] = {"device_id": device_id, "seq": int(seq), "label": label,
                                          "start_ns": int(start_ns), "created_ns": int(created_ns),
                                          "received_ns": int(received_ns), "seen_ns": t}
                        since = max(since, int(received_ns) - 10_000_000_000)
                cur.close()
                self.polls += 1
                self._stop_evt.wait(max(0.0, self.every_s - (time.time_ns() - t) / 1e9))
            con.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the bench
            self.error = exc


class CommitProbe(threading.Thread):
    """Times a single-row INSERT + COMMIT on the database every `every_s`: what one commit costs there, under the
    same load (on SQLite it waits for the same write lock the server holds)."""

    def __init__(self, url: str, every_s: float = 0.1):
        super().__init__(name="commit-probe", daemon=True)
        self.url, self.every_s = url, every_s
        self.ms: list[float] = []
        self.error: Optional[BaseException] = None
        self._stop_evt = threading.Event()

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(30)

    def run(self) -> None:
        try:
            con, p = _dbapi(self.url)
            cur = con.cursor()
            sqlite = p == "?"
            if sqlite:
                cur.execute("PRAGMA synchronous=FULL")  # as the server commits
                cur.execute("PRAGMA busy_timeout=30000")
                cur.execute("CREATE TABLE IF NOT EXISTS bench_probe (id INTEGER PRIMARY KEY, t INTEGER NOT NULL)")
            else:
                con.autocommit(False)
                cur.execute("CREATE TABLE IF NOT EXISTS bench_probe (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                            "t BIGINT NOT NULL) ENGINE=InnoDB")
                con.commit()
            while not self._stop_evt.wait(self.every_s):
                t = time.perf_counter()
                if sqlite:
                    cur.execute("BEGIN IMMEDIATE")
                cur.execute(f"INSERT INTO bench_probe (t) VALUES ({p})", (time.time_ns(),))
                if sqlite:
                    cur.execute("COMMIT")
                else:
                    con.commit()
                self.ms.append((time.perf_counter() - t) * 1e3)
            con.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the bench
            self.error = exc


# ------------------------------------------------------------------------------------------------ the benchmark
def scenario(i: int, seconds: float, gap: float, lead: float) -> str:
    """Edge i's scenario: a sound every `gap` s from `lead` s on, the labels in turn, offset per edge."""
    events, t, n = [], lead + (i * 1.3) % gap, i
    while t < seconds - gap:
        events.append(f"{LABELS[n % len(LABELS)]}@{t:.2f}")
        t, n = t + gap, n + 1
    return f"dur={seconds:g},seed={i + 1}," + ",".join(events)


def pct(xs, q) -> Optional[float]:
    return float(np.percentile(np.asarray(xs, float), q)) if len(xs) else None


def match_sounds(edge: RealEdge, truth, rows: list[dict]) -> tuple[list[dict], dict]:
    """Pair each scenario sound with the row of the event the edge reported for it; returns the pairs and how t0
    (the wall time of stream second 0) was found."""
    mine = sorted((r for r in rows if r["device_id"] == edge.device_id), key=lambda r: r["seq"])
    starts = edge.starts()
    # The edge logs each start once its outbox holds it, in seq order, so the n-th line is the n-th row.
    t0s = [r["start_ns"] - round(s * 1e9) for r, (label, s) in zip(mine, starts) if r["label"] == label]
    info = {"rows": len(mine), "logged": len(starts), "t0_spread_us": 0.0}
    if not t0s:
        return [], info
    t0 = int(statistics.median(t0s))
    info["t0_spread_us"] = (max(t0s) - min(t0s)) / 1e3  # > 1 ms would mean the pairing is wrong
    pairs, used = [], set()
    for ev in truth:
        label = EVENT_LABEL.get(ev.label, ev.label)
        sound_ns = t0 + round(ev.start_s * 1e9)
        cands = [r for r in mine if r["label"] == label and r["seq"] not in used
                 and -1.0 <= (r["start_ns"] - sound_ns) / 1e9 <= 3.0]
        if not cands:
            continue
        r = min(cands, key=lambda r: abs(r["start_ns"] - sound_ns))
        used.add(r["seq"])
        pairs.append({"label": label, "onset_error_ms": (r["start_ns"] - sound_ns) / 1e6,
                      "edge_ms": (r["created_ns"] - sound_ns) / 1e6, "received_ms": (r["received_ns"] - sound_ns) / 1e6,
                      "row_ms": (r["seen_ns"] - sound_ns) / 1e6, "cloud_ms": (r["seen_ns"] - r["created_ns"]) / 1e6})
    return pairs, info


def bench_db(kind: str, args, tmp: Path) -> dict:
    from cloud_svc.store import Store
    from edge_rt.capture.synth import SynthSource

    db = open_database(kind, tmp)
    procs: dict[str, list[int]] = {}
    srv = fleet = None
    edges: list[RealEdge] = []
    try:
        store = Store.open(db.url)
        store.upgrade()
        n_sim = args.devices - args.edges
        ids = [f"edge-{i:02d}" for i in range(args.edges)] + [f"sim-{i:04d}" for i in range(n_sim)]
        tokens = store.devices.add_devices(ids)
        store.close()
        srv = ServerProcess(db.url, clips=str(tmp / "clips"), log_path=tmp / "server.log")
        srv.start()
        fleet = Fleet(srv.target, [(d, tokens[d]) for d in ids[args.edges:]], tmp / "fleet", period_s=args.period,
                      poll_s=args.sim_poll_s)
        connected = fleet.start() if n_sim else 0
        watcher = RowWatcher(db.reader, ids[:args.edges], args.poll_ms / 1e3)
        probe = CommitProbe(db.url)
        scenarios = [scenario(i, args.seconds, args.gap, args.lead) for i in range(args.edges)]
        truths = [SynthSource(s).truth for s in scenarios]
        watcher.start()
        probe.start()
        edges = [RealEdge(ids[i], tokens[ids[i]], f"synth:{scenarios[i]}", tmp / ids[i], srv.target).start()
                 for i in range(args.edges)]
        # CPU seconds of the measurement: server and fleet (alive throughout), MariaDB, this process (the watcher
        # and the probe) and the edges, which exit before the end (counted once reaped, as children's usage)
        procs = {"server": [srv.proc.pid], "fleet": [fleet.proc.pid] if fleet.proc else [],
                 "mariadb": mariadb_pids() if kind != "sqlite" else []}
        t_begin, cpu0 = time.time_ns(), {k: cpu_seconds(v) for k, v in procs.items()}
        own0, reaped0 = _own_cpu(), _reaped_cpu()
        for e in edges:
            try:
                e.proc.wait(args.seconds + 120)
            except subprocess.TimeoutExpired:
                e.stop()
        time.sleep(max(1.0, 4 * args.poll_ms / 1e3))  # the last rows' polls
        t_end, cpu = time.time_ns(), {k: round(cpu_seconds(v) - cpu0[k], 1) for k, v in procs.items()}
        cpu.update(edges=round(_reaped_cpu() - reaped0, 1), bench=round(_own_cpu() - own0, 1))
        load = os.getloadavg()[0]
        probe.stop()
        watcher.stop()
        for th in (watcher, probe):
            if th.error is not None:
                raise RuntimeError(f"{th.name} failed: {th.error!r}")
        sim = fleet.stop() if n_sim else {"acks": read_acks(Path("/nonexistent")), "records_put": 0, "retries": 0,
                                          "failed": []}
        rows = list(watcher.rows.values())
        pairs, infos = [], {}
        for e, truth in zip(edges, truths):
            got, info = match_sounds(e, truth, rows)
            info.update(sounds=len(truth), matched=len(got), exit=e.proc.returncode)
            infos[e.device_id] = info
            pairs += got
        a = sim["acks"]
        sim_ms = a["ms"][(a["put_ns"] >= t_begin) & (a["put_ns"] <= t_end)]
        col = {k: [p[k] for p in pairs] for k in ("row_ms", "edge_ms", "cloud_ms", "received_ms", "onset_error_ms")}
        res = {"db": kind, "devices": args.devices, "edges": args.edges, "sim_connected": connected,
               "sounds": sum(i["sounds"] for i in infos.values()), "matched": len(pairs), "edge_info": infos,
               **{f"{k}_p{q}": pct(v, q) for k, v in col.items() for q in (50, 99)},
               "commit_p50": pct(probe.ms, 50), "commit_p99": pct(probe.ms, 99), "commits": len(probe.ms),
               "sim_ack_p50": pct(sim_ms, 50), "sim_ack_p99": pct(sim_ms, 99), "sim_acks": len(sim_ms),
               "sim_records_put": sim["records_put"], "sim_retries": sim["retries"], "sim_failed": len(sim["failed"]),
               "polls": watcher.polls, "cpu_s": cpu, "seconds": (t_end - t_begin) / 1e9, "load_avg_1m": load}
        if res["row_ms_p99"] is not None and res["edge_ms_p99"]:
            res["row_over_edge_p99"] = res["row_ms_p99"] / res["edge_ms_p99"]
            res["row_over_edge_p50"] = res["row_ms_p50"] / res["edge_ms_p50"]
        if res["cloud_ms_p99"] is not None and res["commit_p99"]:
            res["cloud_over_commit_p99"] = res["cloud_ms_p99"] / res["commit_p99"]
        return res
    finally:
        for e in edges:
            if e.proc is not None and e.proc.poll() is None:
                e.stop()
        if fleet is not None and fleet.proc is not None and fleet.proc.poll() is None:
            fleet.proc.kill()
            fleet.proc.wait(10)
        if srv is not None:
            srv.terminate()
        if db.cleanup is not None:
            db.cleanup()


def _ms(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def markdown(results: list[dict], args) -> str:
    cpu = platform_cpu()
    lines = [f"Run: `.venv/bin/python bench/system.py --dbs {args.dbs} --devices {args.devices} --edges {args.edges} "
             f"--seconds {args.seconds:g} --gap {args.gap:g} --period {args.period:g} --poll-ms {args.poll_ms:g}` on "
             f"{cpu}, {os.cpu_count()} CPUs (server, database, edges, simulated devices and the watcher share them), "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             "| database | sounds found | sound -> row p50 / p99 ms | edge alone (sound -> outbox) p50 / p99 ms | "
             "row / edge p50 / p99 | cloud path (outbox -> row) p50 / p99 ms | bare INSERT+COMMIT p50 / p99 ms | "
             "simulated devices outbox -> ack p50 / p99 ms | load avg |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        ratio = (f"{r['row_over_edge_p50']:.3f} / {r['row_over_edge_p99']:.3f}" if "row_over_edge_p99" in r else "-")
        lines.append(f"| {r['db']} | {r['matched']} of {r['sounds']} | "
                     f"{_ms(r['row_ms_p50'])} / {_ms(r['row_ms_p99'])} | "
                     f"{_ms(r['edge_ms_p50'])} / {_ms(r['edge_ms_p99'])} | {ratio} | "
                     f"{_ms(r['cloud_ms_p50'])} / {_ms(r['cloud_ms_p99'])} | "
                     f"{_ms(r['commit_p50'])} / {_ms(r['commit_p99'])} | "
                     f"{_ms(r['sim_ack_p50'])} / {_ms(r['sim_ack_p99'])} | {r['load_avg_1m']:.1f} |")
    return "\n".join(lines) + "\n"


def verdicts(results: list[dict]) -> list[str]:
    out = []
    for r in results:
        if r.get("row_ms_p99") is None:
            out.append(f"{r['db']}: no sound reached a row ({r['matched']} of {r['sounds']} matched): FAILED")
            continue
        extra = r["row_ms_p99"] - r["edge_ms_p99"]
        out.append(f"{r['db']}: sound -> row p99 {r['row_ms_p99']:.0f} ms, of which hearing it (edge alone) "
                   f"{r['edge_ms_p99']:.0f} ms; the cloud path adds {extra:.0f} ms at p99 "
                   f"(x{r['row_over_edge_p99']:.3f}); cloud path p99 {r['cloud_ms_p99']:.1f} ms = "
                   f"{r.get('cloud_over_commit_p99', float('nan')):.1f}x a bare commit's p99 there")
    return out


def platform_cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform

        return platform.processor() or platform.machine()


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["fleet"]:
        return fleet_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dbs", default="sqlite,mariadb,galera", help="comma-separated: sqlite, mariadb, galera")
    ap.add_argument("--devices", type=int, default=100, help="devices in all: real edges plus simulated ones")
    ap.add_argument("--edges", type=int, default=6, help="real edge processes (synth: sources in real time)")
    ap.add_argument("--seconds", type=float, default=150.0, help="audio each real edge plays")
    ap.add_argument("--gap", type=float, default=5.0, help="seconds between the sounds of one edge's scenario")
    ap.add_argument("--lead", type=float, default=4.0, help="stream seconds before an edge's first sound")
    ap.add_argument("--period", type=float, default=1.0, help="mean seconds between one simulated device's events")
    ap.add_argument("--sim-poll-s", type=float, default=0.05,
                    help="the simulated uplinks' poll_s (the edge's default is 0.01; 96 threads polling every 10 ms "
                         "would cost a core)")
    ap.add_argument("--poll-ms", type=float, default=5.0, help="how often the watcher polls for rows")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, spools, databases)")
    ap.add_argument("--markdown", help="write the table and verdicts to this file too")
    args = ap.parse_args(argv)
    if not 0 < args.edges <= args.devices:
        ap.error("--edges must be between 1 and --devices")
    results = []
    for kind in [k.strip() for k in args.dbs.split(",") if k.strip()]:
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-system-{kind}-"))
        try:
            res = bench_db(kind, args, tmp)
        except Exception as exc:  # noqa: BLE001 - one database's failure is reported, the others still run
            print(f"{kind}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            continue
        finally:
            if args.keep:
                print(f"kept {tmp}", file=sys.stderr)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        print(json.dumps(res), flush=True)
        results.append(res)
    md = markdown(results, args)
    v = verdicts(results)
    print(md)
    print("\n".join(f"- {line}" for line in v))
    if args.markdown:
        Path(args.markdown).write_text(md + "\n" + "\n".join(f"- {line}" for line in v) + "\n")
    return 0 if results and all(r.get("row_ms_p99") is not None for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The two peers `bench/ingest.py` runs beside our ingest on MariaDB: the seed's MQTT design and the database's limit.

Both store the same rows our store writes for a record, into the same tables of a freshly migrated database with
the same devices registered:
  - an `event` start record: one `events` row and one `top_classes` row (final=0);
  - its `event_end` record: one `event_ends` row (the 2 KiB float16 embedding), one `top_classes` row (final=1)
    and, for a distress label or the 5% sample, one `verifications` job (as `IngestStore` decides).
What only ours does beside them: each commit locks the devices' rows (SELECT ... FOR UPDATE), skips replays below
the stored watermark and moves it (UPDATE devices), and the fleet correlator reads the new events.

MQTT peer: every simulated device is a paho-mqtt client (asyncio, one process per --procs share) publishing each
record as one JSON message at QoS 1 to `edgert/DEVICE/events` on a Mosquitto the bench starts; the broker's
PUBACK comes when the broker has the message, before any row exists. One paho subscriber (QoS 1, PUBACK after
its callback) parses the JSON and hands the records to a writer thread, which commits up to --peer-batch records
at a time with PyMySQL executemany per table, after one SELECT of the new events' pks. Its rate is what it
committed. The peer is given every advantage the bench can give it: the broker sends up to 1000 messages in flight
to the subscriber and queues without limit, and the publishers are paced to what the subscriber commits (_Pacer).

Limit: one process, nothing else: the same rows, generated in place (pks assigned by the process, so no SELECT),
PyMySQL executemany per table and a commit every N records.
"""
from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing as mp
import os
import queue
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from _procs import mariadb_pids, measure_cpu

from cloud_svc.config import VerifyConfig
from cloud_svc.store.ingest import END_COLUMNS, EVENT_COLUMNS, sampled

TOPIC = "edgert/{}/events"
CLASSES = [["Glass", 0.81], ["Shatter", 0.4], ["Breaking", 0.2], ["Smash, crash", 0.1], ["Speech", 0.05]]
LABELS = ["glass_break", "dog_bark", "siren", "speech", "car_horn", "alarm"]  # as bench/ingest.py's devices
BACKEND, MODEL_SHA = "onnxruntime", "ab" * 32
VERIFY = VerifyConfig()
DISTRESS = frozenset(VERIFY.distress_labels)
TABLES = ("events", "event_ends", "top_classes", "verifications")


def _position(idx: int) -> tuple[float, float]:
    return -60 + (idx % 100) * 1.2, -170 + (idx // 100) * 3.4  # as bench/ingest.py: devices far apart


def _embedding(idx: int) -> bytes:
    return np.random.default_rng(idx).standard_normal(1024).astype("<f2").tobytes()


class RecordMaker:
    """One device's records as the edge makes them: alternately an event start and its end (as dicts, the JSON
    the MQTT devices publish; the end's embedding is raw bytes or base64 text)."""

    def __init__(self, idx: int, b64: bool):
        self.idx = idx
        self.lat, self.lon = _position(idx)
        emb = _embedding(idx)
        self.emb: Any = base64.b64encode(emb).decode() if b64 else emb
        self.seq = 0
        self.open: Optional[tuple[str, int, str]] = None

    def next(self) -> dict:
        self.seq += 1
        now = time.time_ns()
        if self.open is None:
            label = LABELS[(self.idx + self.seq) % len(LABELS)]
            eid = uuid.uuid4().hex
            self.open = (eid, now, label)
            return {"seq": self.seq, "created_ns": now, "kind": "event", "event_id": eid, "label": label,
                    "start_ns": now, "score": 0.81, "classes": CLASSES, "lat": self.lat, "lon": self.lon,
                    "backend": BACKEND, "model_sha256": MODEL_SHA, "inference_ms": 1.9}
        eid, start, label = self.open
        self.open = None
        return {"seq": self.seq, "created_ns": now, "kind": "event_end", "event_id": eid, "label": label,
                "start_ns": start, "end_ns": now, "score": 0.86, "classes": CLASSES, "lat": self.lat,
                "lon": self.lon, "backend": BACKEND, "model_sha256": MODEL_SHA, "embedding_f16": self.emb}


COMPACT = json.JSONEncoder(separators=(",", ":")).encode  # one encoder: json.dumps(separators=) builds one per call


def event_row(device_id: str, r: dict, now: int) -> tuple:
    """The `events` row of a start record, in EVENT_COLUMNS order (as IngestStore writes it)."""
    return (device_id, r["seq"], r["event_id"], r["label"], r["start_ns"], r["score"], r.get("lat"), r.get("lon"),
            r["backend"], r["model_sha256"], r.get("inference_ms"), r["created_ns"], now)


def other_rows(items: list[tuple[str, dict]], pk_of: Callable[[str, str], Optional[int]], now: int,
               embedding: Callable[[Any], bytes]) -> tuple[list, list, list]:
    """(event_ends, top_classes, verifications) rows of these records, as IngestStore writes them."""
    ends, classes, jobs = [], [], []
    for d, r in items:
        pk = pk_of(d, r["event_id"])
        if pk is None:  # an end whose start was never stored: ours would create the event; the peers never see one
            continue
        final = r["kind"] == "event_end"
        classes.append((pk, final, COMPACT(r["classes"])))
        if not final:
            continue
        ends.append((pk, r["seq"], r["end_ns"], r["score"], embedding(r["embedding_f16"]), None, r["created_ns"], now))
        reason = "distress" if r["label"] in DISTRESS else (
            "sample" if sampled(r["event_id"], VERIFY.sample_rate) else None)
        if reason:
            jobs.append((pk, reason, "pending", 0, now))
    return ends, classes, jobs


def _insert(columns: tuple[str, ...], table: str) -> str:
    return f"INSERT IGNORE INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"


INSERT_EVENT = _insert(EVENT_COLUMNS, "events")
INSERT_EVENT_PK = _insert(("id", *EVENT_COLUMNS), "events")
INSERT_END = _insert(END_COLUMNS, "event_ends")
INSERT_CLASSES = _insert(("event_pk", "final", "classes"), "top_classes")
INSERT_JOB = _insert(("event_pk", "reason", "status", "attempts", "created_ns"), "verifications")


def _write_rest(cur, ends: list, classes: list, jobs: list) -> int:
    """executemany into event_ends, top_classes and verifications; the rows written."""
    for sql, rows in ((INSERT_END, ends), (INSERT_CLASSES, classes), (INSERT_JOB, jobs)):
        if rows:
            cur.executemany(sql, rows)
    return len(ends) + len(classes) + len(jobs)


def _connect(db: dict):
    import pymysql

    return pymysql.connect(charset="utf8mb4", autocommit=False, **db)


def _in_window(log: list[tuple[float, int, int]], t_begin: float, t_end: float) -> dict[str, int]:
    """Records, table rows and commits of the commits that ended within [t_begin, t_end]."""
    done = [(n, rows) for t, n, rows in log if t_begin <= t <= t_end]
    return {"stored": sum(n for n, _ in done), "rows": sum(r for _, r in done), "commits": len(done)}


# ---------------------------------------------------------------------------------------------- MQTT peer
def _subscriber_proc(port: int, db: dict, batch: int, ready_q, clock, committed, stop, result_q) -> None:
    """The seed's ingest: a paho subscriber (network thread: parse) and a writer thread's batched executemany."""
    import paho.mqtt.client as mqtt

    inbox: queue.SimpleQueue = queue.SimpleQueue()
    received = [0]

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe(TOPIC.format("+"), qos=1)

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        ready_q.put("subscriber")

    def on_message(client, userdata, msg):
        received[0] += 1
        inbox.put((msg.topic.split("/", 2)[1], json.loads(msg.payload)))

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-ingest-subscriber", protocol=mqtt.MQTTv311)
    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect("127.0.0.1", port, keepalive=60)
    c.loop_start()
    conn = _connect(db)
    cur = conn.cursor()
    pks: dict[tuple[str, str], int] = {}  # events in progress: an end needs its start's pk
    log: list[tuple[float, int, int]] = []
    b64 = base64.b64decode
    while not stop.is_set():
        try:
            items = [inbox.get(timeout=0.2)]
        except queue.Empty:
            continue
        try:
            while len(items) < batch:
                items.append(inbox.get_nowait())
        except queue.Empty:
            pass
        now = time.time_ns()
        starts = [event_row(d, r, now) for d, r in items if r["kind"] == "event"]
        if starts:
            cur.executemany(INSERT_EVENT, starts)
        need = sorted({r["event_id"] for d, r in items if (d, r["event_id"]) not in pks})
        if need:
            marks = ",".join(["%s"] * len(need))
            cur.execute(f"SELECT id, device_id, event_id FROM events WHERE event_id IN ({marks})", need)
            pks.update(((d, e), pk) for pk, d, e in cur.fetchall())
        rows = len(starts) + _write_rest(cur, *other_rows(items, lambda d, e: pks.get((d, e)), now, b64))
        conn.commit()
        for d, r in items:
            if r["kind"] == "event_end":
                pks.pop((d, r["event_id"]), None)
        log.append((time.monotonic(), len(items), rows))
        with committed.get_lock():
            committed.value += len(items)
    c.loop_stop()
    c.disconnect()
    conn.close()
    result_q.put({**_in_window(log, clock[0], clock[1]), "received": received[0]})


class _Pacer:
    """Holds the publishers back while more than `cap` records are published but not yet committed (this process's
    share). The MQTT design has no such back-pressure: without it the broker's queue for the subscriber grows
    until it drops messages, and publishers burn the CPU the subscriber needs."""

    def __init__(self, cap: int, share: int, committed):
        self.cap, self.share, self.committed = cap, share, committed
        self.published = 0
        self.opened = asyncio.Event()
        self.opened.set()

    def ok(self) -> bool:
        return self.published - self.committed.value // self.share < self.cap

    async def run(self) -> None:
        while True:
            if self.ok():
                self.opened.set()
            else:
                self.opened.clear()
            await asyncio.sleep(0.002)


def _publisher_proc(port: int, devices: list[tuple[int, str]], window: int, cap: int, share: int, ready_q, go,
                    clock, committed, result_q) -> None:
    asyncio.run(_publishers(port, devices, window, cap, share, ready_q, go, clock, committed, result_q))


async def _publishers(port, devices, window, cap, share, ready_q, go, clock, committed, result_q) -> None:
    import paho.mqtt.client as mqtt

    loop = asyncio.get_running_loop()
    pacer = _Pacer(cap, share, committed)
    acked = {"n": 0}

    class Dev:
        def __init__(self, idx: int, device_id: str):
            self.topic = TOPIC.format(device_id)
            self.maker = RecordMaker(idx, b64=True)
            self.inflight = 0
            self.wake = asyncio.Event()
            self.connected = asyncio.Event()
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv311,
                            userdata=self)
            c.max_inflight_messages_set(window)
            c.max_queued_messages_set(0)
            # the asyncio loop reads the socket; writes go out at once (no writer registered unless one blocks)
            c.on_socket_open = lambda client, ud, sock: loop.add_reader(sock, client.loop_read)
            c.on_socket_close = lambda client, ud, sock: loop.remove_reader(sock)
            c.on_connect = lambda client, ud, flags, rc, props: ud.connected.set()
            c.on_publish = Dev.on_publish
            self.c = c

        @staticmethod
        def on_publish(client, ud, mid, reason_code, properties):
            ud.inflight -= 1
            if clock[0] <= time.monotonic() <= clock[1]:
                acked["n"] += 1
            ud.wake.set()

        def flush(self) -> None:
            sock = self.c.socket()
            if sock is None:
                return
            self.c.loop_write()
            if not self.c.want_write():
                loop.remove_writer(sock)

        async def run(self, start: asyncio.Event) -> int:
            await start.wait()
            t_end = clock[1]
            sent = 0
            while time.monotonic() < t_end:
                room = window - self.inflight
                if room <= 0:
                    self.wake.clear()
                    try:
                        await asyncio.wait_for(self.wake.wait(), 5.0)
                    except asyncio.TimeoutError:
                        pass
                    continue
                if not pacer.ok():
                    await pacer.opened.wait()
                    continue
                for _ in range(room):
                    self.c.publish(self.topic, COMPACT(self.maker.next()), qos=1)
                self.inflight += room
                pacer.published += room
                sent += room
                if self.c.want_write():
                    sock = self.c.socket()
                    if sock is not None:
                        loop.add_writer(sock, self.flush)
                await asyncio.sleep(0)
            return sent

    devs = [Dev(i, d) for i, d in devices]
    for dv in devs:
        dv.c.connect("127.0.0.1", port, keepalive=120)
    await asyncio.wait_for(asyncio.gather(*(dv.connected.wait() for dv in devs)), 120)

    async def misc() -> None:  # keepalive pings and retries, as loop_forever would do
        while True:
            await asyncio.sleep(1.0)
            for dv in devs:
                dv.c.loop_misc()

    misc_task = asyncio.create_task(misc())
    pacer_task = asyncio.create_task(pacer.run())
    ready_q.put(len(devs))
    await loop.run_in_executor(None, go.wait)
    start = asyncio.Event()
    start.set()
    sent = sum(await asyncio.gather(*(dv.run(start) for dv in devs)))
    await asyncio.sleep(0.5)
    misc_task.cancel()
    pacer_task.cancel()
    for dv in devs:
        dv.c.disconnect()
    await asyncio.sleep(0.2)
    result_q.put({"broker_acked": acked["n"], "published": sent})


def run_mqtt_peer(db: dict, device_ids: list[str], args, workdir: Path) -> dict:
    """Mosquitto + subscriber + publishers; records committed per second by the subscriber in the window."""
    from mosquitto import Mosquitto

    class Broker(Mosquitto):
        def _write_config(self) -> None:
            super()._write_config()
            with open(self.workdir / "mosquitto.conf", "a") as fh:
                # The subscriber's queue must hold what the pacer lets through (1000 by default: then it drops),
                # and 20 messages in flight to it (the default) would starve it whenever its writer thread holds
                # the GIL: the peer is tuned to be as fast as it can be.
                fh.write("max_queued_messages 0\nmax_inflight_messages 1000\n")

    ctx = mp.get_context("spawn")
    cap = len(device_ids) * args.batch * args.window  # records in flight: as many as our devices may have unacked
    procs = max(1, args.procs)
    clock = ctx.Array("d", [float("inf"), float("-inf")])
    committed = ctx.Value("q", 0)
    ready_q, result_q, go, stop = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Event()
    with Broker(workdir / "mosquitto") as broker:
        sub = ctx.Process(target=_subscriber_proc,
                          args=(broker.port, db, args.peer_batch, ready_q, clock, committed, stop, result_q))
        sub.start()
        ready_q.get(timeout=60)
        items = list(enumerate(device_ids))
        pubs = [ctx.Process(target=_publisher_proc,
                            args=(broker.port, items[i::procs], args.batch * args.window, cap // procs, procs,
                                  ready_q, go, clock, committed, result_q)) for i in range(procs)]
        for p in pubs:
            p.start()
        for _ in pubs:
            ready_q.get(timeout=300)
        assert broker.proc is not None
        watched = {"subscriber": [sub.pid], "broker": [broker.proc.pid], "mariadb": mariadb_pids(),
                   "clients": [p.pid for p in pubs]}
        now = time.monotonic()
        clock[0], clock[1] = now + args.warmup, now + args.warmup + args.duration
        go.set()
        time.sleep(args.warmup)
        seen = measure_cpu(watched, args.duration, db)
        pub_res = [result_q.get(timeout=120) for _ in pubs]
        for p in pubs:
            p.join(30)
        stop.set()
        sub_res = result_q.get(timeout=120)
        sub.join(30)
    stored = sub_res["stored"]
    return {"system": "mqtt", "devices": len(device_ids), "records_stored": stored,
            "records_per_s": stored / args.duration,
            "broker_acked_per_s": sum(r["broker_acked"] for r in pub_res) / args.duration,
            "table_rows_per_s": sub_res["rows"] / args.duration, "commits": sub_res["commits"],
            "batch": args.peer_batch, **seen, "load_avg_1m": os.getloadavg()[0]}


# ---------------------------------------------------------------------------------------------- the limit
def _limit_proc(db: dict, device_ids: list[str], batch: int, warmup: float, duration: float, ready_q, go,
                result_q) -> None:
    conn = _connect(db)
    cur = conn.cursor()
    makers = [(d, RecordMaker(i, b64=False)) for i, d in enumerate(device_ids)]
    pks: dict[tuple[str, str], int] = {}
    next_pk = 1
    log: list[tuple[float, int, int]] = []
    k = 0
    ready_q.put("limit")
    go.wait()
    t_begin = time.monotonic() + warmup
    t_end = t_begin + duration
    while time.monotonic() < t_end:
        items = []
        for _ in range(batch):
            d, m = makers[k % len(makers)]
            k += 1
            items.append((d, m.next()))
        now = time.time_ns()
        starts = []
        for d, r in items:
            if r["kind"] == "event":
                pks[(d, r["event_id"])] = next_pk
                starts.append((next_pk, *event_row(d, r, now)))
                next_pk += 1
        if starts:
            cur.executemany(INSERT_EVENT_PK, starts)
        rows = len(starts) + _write_rest(cur, *other_rows(items, lambda d, e: pks.get((d, e)), now, bytes))
        conn.commit()
        for d, r in items:
            if r["kind"] == "event_end":
                pks.pop((d, r["event_id"]), None)
        log.append((time.monotonic(), len(items), rows))
    conn.close()
    result_q.put(_in_window(log, t_begin, t_end))


def run_limit(db: dict, device_ids: list[str], batch: int, args) -> dict:
    ctx = mp.get_context("spawn")
    ready_q, result_q, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    p = ctx.Process(target=_limit_proc, args=(db, device_ids, batch, args.warmup, args.duration, ready_q, go,
                                              result_q))
    p.start()
    ready_q.get(timeout=60)
    watched = {"limit": [p.pid], "mariadb": mariadb_pids()}
    go.set()
    time.sleep(args.warmup)
    seen = measure_cpu(watched, args.duration, db)
    res = result_q.get(timeout=120)
    p.join(30)
    return {"system": f"limit-{batch}", "devices": len(device_ids), "records_stored": res["stored"],
            "records_per_s": res["stored"] / args.duration, "table_rows_per_s": res["rows"] / args.duration,
            "commits": res["commits"], "batch": batch, **seen, "load_avg_1m": os.getloadavg()[0]}

"""Ingest benchmark: N simulated devices (asyncio gRPC clients) stream to one `cloud_svc serve` on MariaDB and SQLite.

Two phases per database, against a fresh database and a freshly started server:
  1. throughput: every device streams batches as fast as acks allow (a window of batches in flight);
     reported as sustained records/s committed and acked (after a warm-up).
  2. latency: the devices together send `--rate` events/s (each device one record every N/rate seconds, random
     phase), one record per batch; reported as ack latency p50/p99 (send -> ack that covers it).

Records are what an edge sends: an "event" start record (5 top classes, position) and, for every event, an
"event_end" record with the final score, classes and the 2 KiB float16 embedding (no clip). Budgets
(DESIGN.md): >= 10k events/s into MariaDB with 1000 devices; p99 ack <= 50 ms at 1k events/s.

    .venv/bin/python bench/ingest.py                       # 1000 devices, MariaDB then SQLite
    .venv/bin/python bench/ingest.py --dbs mariadb --devices 200 --duration 5
    .venv/bin/python bench/ingest.py --markdown BENCHMARKS.md   # also append the results there
    .venv/bin/python bench/ingest.py --dbs mariadb --phases throughput --repeats 3   # ours against its peers

Peers (issue 14; MariaDB; bench/_ingest_peers.py says exactly what each does), run in the same invocation with the
same devices and the same rows (events, event_ends, top_classes, verifications), each on a fresh database:
  - `mqtt`: the seed's design: the devices publish JSON records at QoS 1 to a Mosquitto the bench starts, and a
    paho subscriber inserts them with batched executemany (up to --peer-batch records per commit);
  - `limit`: one process doing batched executemany of the same rows and nothing else, committing every N records
    for each N of --limit-batches.
Budgets printed as verdicts: ours (throughput phase) >= 1.0x the MQTT peer and >= 0.25x the limit with 1000-record
commits; the server's CPU per stored record and what bounds it (server vs MariaDB vs clients, in cores).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "bench"), str(REPO), str(REPO / "tests")]  # _procs.py; tests/support.py: databases, server

from _procs import mariadb_pids, measure_cpu  # noqa: E402

from support import (  # noqa: E402
    MARIADB_HOST,
    MARIADB_PORT,
    MARIADB_USER,
    ServerProcess,
    TempMariaDB,
    mariadb_available,
)

# `serve` flags per --fleet choice: the correlator's CPU is counted with the server's either way (children too).
FLEET_FLAGS = {"process": ("--fleet-process",), "thread": (), "off": ("--no-fleet",)}
CLASSES = [("Glass", 0.81), ("Shatter", 0.4), ("Breaking", 0.2), ("Smash, crash", 0.1), ("Speech", 0.05)]
LABELS = ["glass_break", "dog_bark", "siren", "speech", "car_horn", "alarm"]


# ---------------------------------------------------------------------------------------------- client side
def _templates(pb, common_pb2, device_idx: int, lat: float, lon: float) -> dict:
    """Per-device Event messages that records copy (C-level) and then adjust: keeps the clients cheap."""
    emb = np.random.default_rng(device_idx).standard_normal(1024).astype("<f2").tobytes()
    out = {}
    for label in LABELS:
        common = dict(label=label, backend="onnxruntime", model_sha256="ab" * 32,
                      classes=[common_pb2.ClassScore(name=c, score=sc) for c, sc in CLASSES],
                      position=common_pb2.Position(lat=lat, lon=lon))
        out[label] = (pb.Event(score=0.81, inference_ms=1.9, **common),
                      pb.Event(score=0.86, embedding_f16=emb, **common))
    return out


def _fill(batch, device_idx: int, first_seq: int, n: int, templates: dict, state: dict) -> None:
    """Append n outbox records from seq first_seq on to `batch`: alternately an event start and its end."""
    for seq in range(first_seq, first_seq + n):
        now = time.time_ns()
        rec = batch.records.add()
        rec.seq, rec.created_ns = seq, now
        if state.get("open") is None:
            label = LABELS[(device_idx + seq) % len(LABELS)]
            eid = uuid.uuid4().hex
            state["open"] = (eid, now, label)
            rec.event.CopyFrom(templates[label][0])
            rec.event.event_id, rec.event.start_ns = eid, now
        else:
            eid, start, label = state.pop("open")
            rec.event_end.CopyFrom(templates[label][1])
            rec.event_end.event_id, rec.event_end.start_ns, rec.event_end.end_ns = eid, start, now


async def _device(target, device_id, token, idx, phase, args, clock, results, start_evt, ready):
    import grpc

    from edgert.v1 import common_pb2, ingest_pb2_grpc
    from edgert.v1 import ingest_pb2 as pb

    rng = random.Random(idx)
    lat, lon = -60 + (idx % 100) * 1.2, -170 + (idx // 100) * 3.4  # devices far apart: no fleet alerts
    templates = _templates(pb, common_pb2, idx, lat, lon)
    state: dict = {}
    sendq: asyncio.Queue = asyncio.Queue()
    inflight: dict[int, float] = {}  # last seq of a batch -> send time
    acked = {"seq": 0, "n": 0}
    lat_ms: list[float] = []
    got_ack = asyncio.Event()

    async def requests():
        while True:
            m = await sendq.get()
            if m is None:
                return
            yield m

    # Each device its own TCP connection, as separate edge boxes have: gRPC otherwise shares one subchannel among
    # the channels of a process that have the same target and options, and 1000 devices would be streams of one
    # HTTP/2 connection (one accepted socket, so `serve --procs N` could never spread them).
    options = [("grpc.max_receive_message_length", 4 << 20)]
    if args.connections == "device":
        options.append(("grpc.use_local_subchannel_pool", 1))
    async with grpc.aio.insecure_channel(target, options=options) as ch:
        stub = ingest_pb2_grpc.IngestStub(ch)
        call = stub.Stream(requests(), metadata=(("authorization", f"Bearer {token}"),))
        await sendq.put(pb.IngestRequest(hello=pb.Hello(device_id=device_id, low_water=1)))

        async def receive():
            async for resp in call:
                if resp.WhichOneof("msg") != "ack":
                    continue
                seq = resp.ack.seq
                now = time.perf_counter()
                t_begin, t_end = clock.get("t_begin", 0.0), clock.get("t_end", 0.0)
                for last in sorted(k for k in inflight if k <= seq):
                    t = inflight.pop(last)
                    if t_begin <= t and now <= t_end:  # sent after the warm-up, acked within the run
                        lat_ms.append((now - t) * 1e3)
                if seq > acked["seq"]:
                    if t_begin <= now <= t_end:
                        acked["n"] += seq - acked["seq"]
                    acked["seq"] = seq
                got_ack.set()

        rx = asyncio.create_task(receive())
        await asyncio.wait_for(got_ack.wait(), 120)  # the Hello's ack: the stream is authenticated and open
        ready()
        await start_evt.wait()
        t_end = clock["t_end"]
        seq = 1
        if phase == "throughput":
            while time.perf_counter() < t_end:
                while len(inflight) >= args.window:
                    got_ack.clear()
                    try:
                        await asyncio.wait_for(got_ack.wait(), 5.0)
                    except asyncio.TimeoutError:
                        break
                req = pb.IngestRequest()
                req.batch.low_water = acked["seq"] + 1
                _fill(req.batch, idx, seq, args.batch, templates, state)
                inflight[seq + args.batch - 1] = time.perf_counter()
                await sendq.put(req)
                seq += args.batch
        else:
            period = args.devices / args.rate
            await asyncio.sleep(rng.uniform(0, period))
            nxt = time.perf_counter()
            while nxt < t_end:
                req = pb.IngestRequest()
                req.batch.low_water = acked["seq"] + 1
                _fill(req.batch, idx, seq, 1, templates, state)
                inflight[seq] = time.perf_counter()
                await sendq.put(req)
                seq += 1
                nxt += period
                await asyncio.sleep(max(0.0, nxt - time.perf_counter()))
        await asyncio.sleep(0.5)  # let the last acks arrive
        await sendq.put(None)
        rx.cancel()
        call.cancel()
    results.append((acked["n"], lat_ms, seq - 1))


def _client_proc(target, devices, phase, args_dict, ready_q, go, q):
    args = argparse.Namespace(**args_dict)

    async def main():
        start_evt = asyncio.Event()
        results: list = []
        clock: dict = {}
        pending = {"n": len(devices)}
        all_ready = asyncio.Event()

        def ready():
            pending["n"] -= 1
            if pending["n"] == 0:
                all_ready.set()

        tasks = [asyncio.create_task(_device(target, d, tok, i, phase, args, clock, results, start_evt, ready))
                 for i, (d, tok) in devices]
        await all_ready.wait()
        ready_q.put(len(devices))
        await asyncio.get_running_loop().run_in_executor(None, go.wait)
        clock["t_begin"] = time.perf_counter() + args.warmup
        clock["t_end"] = clock["t_begin"] + args.duration
        start_evt.set()
        errors = [r for r in await asyncio.gather(*tasks, return_exceptions=True) if isinstance(r, BaseException)]
        if errors:
            print(f"{len(errors)} simulated devices failed, e.g. {errors[0]!r}", file=sys.stderr)
        q.put(results)

    asyncio.run(main())


def run_phase(target, devs, phase, args, server_pid: int = 0, mariadb: Optional[dict] = None) -> dict:
    procs = max(1, args.procs)
    items = list(enumerate(devs))
    parts = [items[i::procs] for i in range(procs)]
    ctx = mp.get_context("spawn")
    q, ready_q, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    ps = [ctx.Process(target=_client_proc, args=(target, part, phase, vars(args), ready_q, go, q)) for part in parts]
    for p in ps:
        p.start()
    for _ in ps:  # every stream is open and authenticated before the clock starts
        ready_q.get(timeout=300)
    watched = {"server": [server_pid] if server_pid else [], "mariadb": mariadb_pids(), "clients": [p.pid for p in ps]}
    go.set()
    time.sleep(args.warmup)
    seen = measure_cpu(watched, args.duration, mariadb)
    results = []
    for _ in ps:
        results.extend(q.get(timeout=args.warmup + args.duration + 180))
    for p in ps:
        p.join(30)
    acked = sum(r[0] for r in results)
    lats = np.concatenate([np.asarray(r[1], float) for r in results if r[1]] or [np.zeros(0)])
    span = args.duration
    return {"phase": phase, "devices": len(devs), "records_acked": acked, "records_per_s": acked / span,
            "ack_p50_ms": float(np.percentile(lats, 50)) if lats.size else None,
            "ack_p99_ms": float(np.percentile(lats, 99)) if lats.size else None, "acks": int(lats.size),
            **seen, "load_avg_1m": os.getloadavg()[0]}


# ---------------------------------------------------------------------------------------------- orchestration
def _db_params(mdb: TempMariaDB) -> dict:
    """pymysql.connect() keywords for a throwaway database."""
    return {"host": MARIADB_HOST, "port": MARIADB_PORT, "user": MARIADB_USER, "database": mdb.name}


def bench_db(kind: str, args) -> list[dict]:
    from cloud_svc.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    mdb = None
    if kind == "mariadb":
        why = mariadb_available()
        if why:
            print(f"skipping MariaDB: {why}", file=sys.stderr)
            return []
        mdb = TempMariaDB("bench_edgert")
        url = mdb.url
    else:
        url = f"sqlite:///{tmp / 'cloud.db'}"
    out = []
    try:
        for n, phase in enumerate(args.phases.split(",")):
            if n or kind != args.dbs.split(",")[0]:
                # Let the previous phase's background work (InnoDB purge and flushing, the page cache writing
                # back a SQLite WAL) finish before the clock starts: it is not this phase's load.
                time.sleep(args.pause)
            store = Store.open(url)
            store.upgrade()
            ids = [f"bench-{phase[0]}-{i:05d}" for i in range(args.devices)]
            toks = store.devices.add_devices(ids)
            store.close()
            srv = ServerProcess(url, clips=str(tmp / "clips"), log_path=tmp / f"server-{phase}.log",
                                extra=("--procs", str(args.server_procs), *FLEET_FLAGS[args.fleet]))
            srv.start()
            try:
                res = run_phase(srv.target, list(toks.items()), phase, args, srv.proc.pid,
                                _db_params(mdb) if mdb is not None else None)
            finally:
                srv.terminate()
            res["db"] = kind
            out.append(res)
            print(json.dumps(res), flush=True)
    finally:
        if mdb is not None:
            mdb.drop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp} (databases, clip store, server logs)", file=sys.stderr)
    return out


def bench_peers(args) -> list[dict]:
    """The MQTT design and the limit, each on a fresh database with the schema and devices ours gets."""
    import _ingest_peers as peers

    from cloud_svc.store import Store

    why = mariadb_available()
    if why:
        print(f"skipping the peers: {why}", file=sys.stderr)
        return []
    runs: list[tuple[str, Any]] = []
    for name in [p.strip() for p in args.peers.split(",") if p.strip() not in ("", "none")]:
        if name == "mqtt":
            from mosquitto import MOSQUITTO

            if not os.access(MOSQUITTO, os.X_OK):
                print(f"skipping the MQTT peer: {MOSQUITTO} is not installed (`make sysdeps` installs it)",
                      file=sys.stderr)
                continue
            runs.append(("mqtt", lambda db, ids, tmp: peers.run_mqtt_peer(db, ids, args, tmp)))
        elif name == "limit":
            for n in [int(b) for b in args.limit_batches.split(",")]:
                runs.append((f"limit-{n}", lambda db, ids, tmp, n=n: peers.run_limit(db, ids, n, args)))
        else:
            raise SystemExit(f"unknown peer {name!r} (mqtt, limit)")
    out = []
    for label, run in runs:
        time.sleep(args.pause)  # the last run's background work (InnoDB purge, flushing) is not this one's load
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-ingest-{label}-"))
        mdb = TempMariaDB("bench_edgert")
        try:
            store = Store.open(mdb.url)
            store.upgrade()
            ids = [f"bench-{label[0]}-{i:05d}" for i in range(args.devices)]
            store.devices.add_devices(ids)
            store.close()
            res = run(_db_params(mdb), ids, tmp)
        finally:
            mdb.drop()
            shutil.rmtree(tmp, ignore_errors=True)
        res["db"] = "mariadb"
        out.append(res)
        print(json.dumps(res), flush=True)
    return out


# Budgets of issue 14: ours against the MQTT peer, and against the limit with 1000-record commits.
BUDGET_MQTT = 1.0
BUDGET_LIMIT = 0.25
BUDGET_LIMIT_BATCH = 1000
# Busy enough to be the bound: a Python process whose threads share one GIL rarely passes 0.9 of a core (hand-offs
# and I/O waits), the machine's cores are never all busy at once.
GIL_SATURATED, MACHINE_SATURATED = 0.8, 0.85
ONE_CONNECTION = ("mqtt", "limit")  # systems whose rows go through one database connection, statement by statement
# A run is quiet when at most this many cores were busy outside it and another database's statement was running in
# at most this share of the looks at MariaDB; the verdicts use the quiet runs of each system when there are any.
QUIET_OUTSIDE_CORES, QUIET_DB = 0.25, 0.2
# processes whose Python threads share one GIL, per system: their CPU cannot pass one core
GIL_BOUND = {"ours": "server", "mqtt": "subscriber", "limit": "limit"}
WRITES = {"ours": "events, event_ends, top_classes, verifications; locks and updates devices (watermark)",
          "mqtt": "events, event_ends, top_classes, verifications",
          "limit": "events, event_ends, top_classes, verifications (pks assigned by the process)"}


def _median(xs: list[float]) -> float:
    return float(np.median(xs)) if xs else 0.0


def _systems(results: list[dict]) -> dict[str, list[dict]]:
    """system name -> its MariaDB runs: ours' throughput phases and the peers."""
    by: dict[str, list[dict]] = {}
    for r in results:
        if r.get("db") != "mariadb":
            continue
        if "system" in r:
            by.setdefault(r["system"], []).append(r)
        elif r.get("phase") == "throughput":
            by.setdefault("ours", []).append(r)
    return by


def quiet(r: dict, duration: float) -> bool:
    """A run that the machine's other work left alone: few cores busy outside it, MariaDB serving little else."""
    return r.get("cpu_other_s", 0.0) / duration <= QUIET_OUTSIDE_CORES and (r.get("db_others") or 0.0) <= QUIET_DB


def _cpu_us(runs: list[dict]) -> dict[str, float]:
    """CPU us per stored record of each watched process group, over all runs of a system."""
    stored = sum(r.get("records_stored", r.get("records_acked", 0)) for r in runs)
    keys = {k for r in runs for k in r["cpu_s"]}
    return {k: sum(r["cpu_s"].get(k, 0.0) for r in runs) / max(1, stored) * 1e6 for k in keys}


def bound(system: str, runs: list[dict], duration: float) -> str:
    """What bounds a system's rate, from the cores each of its processes kept busy (its median run)."""
    ncpu = os.cpu_count() or 1
    r = sorted(runs, key=lambda x: x["records_per_s"])[len(runs) // 2]
    cores = {k: v / duration for k, v in r["cpu_s"].items()}
    mine = sum(cores.values())
    other = r.get("cpu_other_s", 0.0) / duration
    gil = GIL_BOUND[system.split("-")[0]]
    one, db = cores.get(gil, 0.0), cores.get("mariadb", 0.0)
    if one >= GIL_SATURATED:
        what = f"the {gil} process's one GIL ({one:.2f} of a core)"
    elif mine + other >= MACHINE_SATURATED * ncpu:
        what = f"the machine's {ncpu} cores ({mine + other:.2f} busy)"
    elif system.split("-")[0] in ONE_CONNECTION and one + db >= MACHINE_SATURATED:
        what = (f"one connection's round trips: the {gil} process and MariaDB take turns "
                f"({one:.2f} + {db:.2f} of a core)")
    else:
        what = "no CPU: waiting on commits and round trips"
    parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cores.items(), key=lambda kv: -kv[1]))
    out = f"{what}; cores busy: {parts}, outside the run {other:.2f}"
    clients = cores.get("clients", 0.0)
    if clients >= 0.25:
        out += f"; the simulated clients alone take {clients:.2f} of the {ncpu} cores"
    return out


def comparison(results: list[dict], args) -> tuple[str, list[str]]:
    """The side-by-side table (markdown) and the verdict lines."""
    every = _systems(results)
    if "ours" not in every or len(every) < 2:
        return "", []
    by = {k: [r for r in v if quiet(r, args.duration)] or v for k, v in every.items()}
    ours = by["ours"]
    rate = {k: _median([r["records_per_s"] for r in v]) for k, v in by.items()}
    lines = ["| system | tables written | records/s (median of quiet runs) | table rows/s | runs (quiet) | ours / it "
             "| CPU us per stored record | what bounds it |", "|---|---|---|---|---|---|---|---|"]
    for name, runs in by.items():
        us = _cpu_us(runs)
        cpu = ", ".join(f"{k} {v:.0f}" for k, v in sorted(us.items(), key=lambda kv: -kv[1]))
        ratio = "-" if name == "ours" else f"{rate['ours'] / rate[name]:.2f}x" if rate[name] else "-"
        xs = [r["records_per_s"] for r in runs]
        spread = f" ({min(xs):,.0f}-{max(xs):,.0f})" if len(xs) > 1 else ""
        rows = [r["table_rows_per_s"] for r in runs if "table_rows_per_s" in r]
        trows = f"{_median(rows):,.0f}" if rows else "-"
        n_quiet = sum(quiet(r, args.duration) for r in every[name])
        lines.append(f"| {name} | {WRITES[name.split('-')[0]]} | {rate[name]:,.0f}{spread} | {trows} "
                     f"| {len(every[name])} ({n_quiet}) | {ratio} "
                     f"| {cpu} (sum {sum(us.values()):.0f}) | {bound(name, runs, args.duration)} |")
    verdicts = []

    def verdict(peer: str, budget: float, what: str) -> None:
        if peer not in rate or not rate[peer]:
            return
        x = rate["ours"] / rate[peer]
        mine = {r["round"]: r["records_per_s"] for r in ours}
        paired = [mine[r["round"]] / r["records_per_s"] for r in by[peer] if r["round"] in mine and r["records_per_s"]]
        each = f"; per round {', '.join(f'{p:.2f}x' for p in paired)}" if len(paired) > 1 else ""
        noisy = "" if all(quiet(r, args.duration) for r in by["ours"] + by[peer]) else "; NO QUIET RUN of both"
        verdicts.append(f"VERDICT ours vs {what}: {rate['ours']:,.0f} / {rate[peer]:,.0f} records/s = {x:.2f}x "
                        f"(budget >= {budget:g}x{each}{noisy}): {'MET' if x >= budget else 'MISSED'}")

    verdict("mqtt", BUDGET_MQTT, "the MQTT peer (its broker acks before the row exists)")
    verdict(f"limit-{BUDGET_LIMIT_BATCH}", BUDGET_LIMIT, f"the limit ({BUDGET_LIMIT_BATCH}-record commits)")
    for name in by:
        if name.startswith("limit-") and name != f"limit-{BUDGET_LIMIT_BATCH}" and rate[name]:
            noisy = "" if all(quiet(r, args.duration) for r in by["ours"] + by[name]) else "; NO QUIET RUN of both"
            verdicts.append(f"INFO ours vs the limit ({name[6:]}-record commits): {rate['ours']:,.0f} / "
                            f"{rate[name]:,.0f} records/s = {rate['ours'] / rate[name]:.2f}x (no budget{noisy})")
    server_side = {"ours": ("server", "mariadb"), "mqtt": ("subscriber", "broker", "mariadb"),
                   f"limit-{BUDGET_LIMIT_BATCH}": ("limit", "mariadb")}
    costs = {n: sum(_cpu_us(by[n]).get(k, 0.0) for k in ks) for n, ks in server_side.items() if n in by}
    verdicts.append("INFO CPU per stored record, the clients left out: "
                    + ", ".join(f"{n} {c:.0f} us ({' + '.join(server_side[n])})" for n, c in costs.items()))
    us = _cpu_us(ours)
    verdicts.append(f"VERDICT server CPU per stored record: {us.get('server', 0):.0f} us ({2 * us.get('server', 0):.0f}"
                    f" us per sound, start and end); MariaDB {us.get('mariadb', 0):.0f} us, clients "
                    f"{us.get('clients', 0):.0f} us; bound: {bound('ours', ours, args.duration)}")
    return "\n".join(lines) + "\n", verdicts


def markdown(results: list[dict], args) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [f"Run: `.venv/bin/python bench/ingest.py --devices {args.devices} --duration {args.duration} "
             f"--warmup {args.warmup} "
             f"--batch {args.batch} --window {args.window} --rate {args.rate} --procs {args.procs} "
             f"--server-procs {args.server_procs} --fleet {args.fleet}` on {cpu}, "
             f"{os.cpu_count()} CPUs (server, clients and database share them), {time.strftime('%Y-%m-%d')}.", "",
             "| database | devices | sustained records/s (throughput phase) | ack p50 / p99 at "
             f"{args.rate} events/s | budget |", "|---|---|---|---|---|"]
    by = {}
    for r in results:
        if "phase" in r:  # ours; the peers have their own table (comparison)
            by.setdefault(r["db"], {})[r["phase"]] = r
    for db, ph in by.items():
        t, lat = ph.get("throughput", {}), ph.get("latency", {})
        rate = f"{t.get('records_per_s', 0):,.0f}" if t else "-"
        lt = f"{lat['ack_p50_ms']:.1f} / {lat['ack_p99_ms']:.1f} ms" if lat.get("ack_p50_ms") is not None else "-"
        lines.append(f"| {db} | {args.devices} | {rate} | {lt} | >= 10,000/s; p99 <= 50 ms |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dbs", default="mariadb,sqlite", help="comma-separated: mariadb, sqlite")
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=15.0, help="measured seconds per phase")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring")
    ap.add_argument("--batch", type=int, default=20, help="records per batch in the throughput phase")
    ap.add_argument("--window", type=int, default=1, help="batches in flight per device (throughput phase)")
    ap.add_argument("--rate", type=float, default=1000.0, help="events/s of all devices together (latency phase)")
    ap.add_argument("--procs", type=int, default=1, help="client processes")
    ap.add_argument("--server-procs", type=int, default=1, help="`serve --procs`: server processes on the port")
    ap.add_argument("--pause", type=float, default=15.0,
                    help="seconds of quiet before each phase but the first (background work of the last one)")
    ap.add_argument("--fleet", choices=sorted(FLEET_FLAGS), default="thread",
                    help="where the server runs its fleet correlator: a thread (the default, as `serve` does), "
                         "a child process (`serve --fleet-process`) or nowhere (`--no-fleet`)")
    ap.add_argument("--phases", default="throughput,latency", help="comma-separated: throughput, latency")
    ap.add_argument("--connections", choices=("device", "shared"), default="device",
                    help="a TCP connection per simulated device (as real devices), or gRPC's default for channels "
                         "of one process: one shared connection per client process (the bench before issue 14)")
    ap.add_argument("--peers", default="mqtt,limit",
                    help="comma-separated peers run beside ours on MariaDB: mqtt, limit (none: only ours)")
    ap.add_argument("--peer-batch", type=int, default=1000,
                    help="the MQTT subscriber commits at most this many records at a time")
    ap.add_argument("--limit-batches", default="1000,10", help="records per commit of the limit, one run each")
    ap.add_argument("--repeats", type=int, default=1, help="rounds of ours and the peers, in turn")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder with the server logs")
    ap.add_argument("--markdown", help="append a results table to this file")
    args = ap.parse_args()
    results = []
    for n in range(max(1, args.repeats)):
        got = []
        for kind in args.dbs.split(","):
            got += bench_db(kind.strip(), args)
        if "mariadb" in args.dbs:
            got += bench_peers(args)
        results += [{**r, "round": n} for r in got]
    md = markdown(results, args)
    table, verdicts = comparison(results, args)
    if table:
        md += "\n" + table + "\n" + "\n".join(verdicts) + "\n"
    print(md)
    if args.markdown:
        with open(args.markdown, "a") as fh:
            fh.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "bench"), str(REPO), str(REPO / "tests")]  # _procs.py; tests/support.py: databases, server

from _procs import cpu_seconds, mariadb_pids  # noqa: E402

from support import ServerProcess, TempMariaDB, mariadb_available  # noqa: E402

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

    async with grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", 4 << 20)]) as ch:
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


def run_phase(target, devs, phase, args, server_pid: int = 0) -> dict:
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
    cpu0 = {k: cpu_seconds(v) for k, v in watched.items()}
    time.sleep(args.duration)
    cpu = {k: round(cpu_seconds(v) - cpu0[k], 2) for k, v in watched.items()}
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
            "cpu_s": cpu, "load_avg_1m": os.getloadavg()[0]}


# ---------------------------------------------------------------------------------------------- orchestration
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
                res = run_phase(srv.target, list(toks.items()), phase, args, srv.proc.pid)
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
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder with the server logs")
    ap.add_argument("--markdown", help="append a results table to this file")
    args = ap.parse_args()
    results = []
    for kind in args.dbs.split(","):
        results += bench_db(kind.strip(), args)
    md = markdown(results, args)
    print(md)
    if args.markdown:
        with open(args.markdown, "a") as fh:
            fh.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

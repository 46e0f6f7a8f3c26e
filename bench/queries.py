"""Query cost as the store grows: MariaDB filled with 100k, 1M and 10M synthetic events, and the read paths timed.

    .venv/bin/python bench/queries.py [--sizes 100k,1M,10M] [--calls 300] [--keep] [--out FILE.json]

The events (1000 devices in 20 cities, 30 days, the taxonomy's 11 labels at realistic frequencies), their ends,
final top classes, clips and verification jobs of the distress labels (and a 2 % sample), and reviews of 1 % of
events, are written through the store's bulk writer (`cloud_svc.sqlbulk.BulkWriter`, what the committer uses), one
transaction per chunk. Fills are incremental and resumable: rows are a pure function of their pk, so a run that
finds 1M events goes on from there to 10M, and an interrupted fill restarts after its last whole chunk. Each size's
new rows sweep the 30 days in time order (a growing store's ids follow time).

After each fill the rollup's follower (`cloud_svc.store.rollup`, which `serve` runs in the background) catches up
with the stored events, and its pace and the rollup's rows per level are printed. At each size every query runs
`--calls` times with randomized parameters (the same sequence at every size):

- ListEvents (`QueryStore.list_events`, the Query API's page: order by id, 101 rows) with a time window, a city's
  bounding box and one or two labels;
- the dashboard's aggregates over a window: `timeline` (per label per bucket), `map_cells` (per grid cell per
  label), `false_alarms_by_device` and `review_stats` (the stats page), and `list_devices` (the devices page);
- the fleet correlator's neighbour look-up in the database (`FleetStore._near_in_db`) for a random stored event.

Windows are the dashboard's presets 1h, 6h, 24h and 7d, drawn evenly. The budgets (issue 14): ListEvents p99
<= 50 ms and each aggregate's p99 <= 200 ms at the largest size, and p99 growth from 1M to 10M <= 2x. EXPLAIN
(plain and FORMAT=JSON) of every statement each query sends is recorded at the largest size. The database
(`edgert_bench_queries` unless --db) is dropped at the end unless --keep.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import sqlalchemy as sa
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from cloud_svc.db import upgrade as upgrade_schema  # noqa: E402
from cloud_svc.domain import BBox, EventFilter  # noqa: E402
from cloud_svc.fleet.algorithm import FleetIndex, Placed  # noqa: E402
from cloud_svc.fleet.store import FleetStore  # noqa: E402
from cloud_svc.store import Store  # noqa: E402

DEFAULT_DB = "mysql+pymysql://root@127.0.0.1:3306/edgert_bench_queries"
T0_NS = 1_793_491_200 * 10**9  # 2026-11-01T00:00:00Z: the first of the 30 days
SPAN_NS = 30 * 86400 * 10**9
N_DEVICES = 1000
CHUNK = 5000                   # events per fill transaction
# label -> relative frequency; the four distress labels are about 10 % of events
LABELS = {"speech": 30, "dog_bark": 20, "car_horn": 15, "siren": 10, "alarm": 8, "baby_cry": 6, "shout": 4,
          "scream": 3, "glass_break": 2, "explosion": 1, "gunshot": 1}
DISTRESS = ("glass_break", "scream", "shout", "gunshot")
SAMPLE_RATE = 0.02             # verified at random besides the distress labels
REVIEW_RATE = 0.01             # events a person reviewed; a tenth of those twice (a changed mind)
CITIES = [(52.52, 13.40), (48.86, 2.35), (51.51, -0.13), (40.42, -3.70), (41.90, 12.50), (48.21, 16.37),
          (52.37, 4.90), (50.85, 4.35), (55.68, 12.57), (59.33, 18.07), (60.17, 24.94), (52.23, 21.01),
          (50.08, 14.44), (47.50, 19.04), (38.72, -9.14), (53.35, -6.26), (45.46, 9.19), (50.11, 8.68),
          (48.14, 11.58), (53.55, 9.99)]
CITY_SD_DEG = 0.06             # devices lie about 7 km around their city's centre
WINDOWS_S = (3600, 6 * 3600, 86400, 7 * 86400)
BUDGET_LIST_MS = 50.0
BUDGET_AGG_MS = 200.0
BUDGET_GROWTH = 2.0
CLASSES = {lb: [[lb.replace("_", " ").title(), 0.8], ["Speech", 0.2], ["Inside, small room", 0.1],
                ["Music", 0.05], ["Silence", 0.02]] for lb in LABELS}


# ------------------------------------------------------------------------------------------------ the rows
def parse_size(text: str) -> int:
    text = text.strip().lower()
    mult = {"k": 10**3, "m": 10**6}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * mult)


def devices() -> list[tuple[str, float, float]]:
    """(id, lat, lon) of the fleet, the same every run."""
    rng = random.Random("devices")
    out = []
    for i in range(N_DEVICES):
        clat, clon = CITIES[i % len(CITIES)]
        lat, lon = rng.gauss(clat, CITY_SD_DEG), rng.gauss(clon, CITY_SD_DEG * 1.5)
        out.append((f"dev-{i:04d}", round(lat, 6), round(lon, 6)))
    return out


@dataclass
class Rows:
    events: list[tuple]
    ends: list[tuple]
    classes: list[tuple]
    clips: list[tuple]
    verifications: list[tuple]
    reviews: list[tuple]


EVENT_COLS = ("id", "device_id", "seq", "event_id", "label", "start_ns", "score", "lat", "lon", "backend",
              "model_sha256", "inference_ms", "created_ns", "received_ns")
END_COLS = ("event_pk", "seq", "end_ns", "score", "embedding_f16", "clip_dropped", "created_ns", "received_ns")
CLASS_COLS = ("event_pk", "final", "classes")
CLIP_COLS = ("event_pk", "sha256", "size", "format", "sample_rate", "start_ns", "preroll_s", "uri", "created_ns")
VER_COLS = ("event_pk", "reason", "status", "attempts", "verifier", "labels", "scores", "agree", "created_ns",
            "done_ns")
REVIEW_COLS = ("id", "event_pk", "decision", "label", "reviewer", "note", "created_ns")


def chunk_rows(first: int, last: int, stage: tuple[int, int], fleet: list[tuple[str, float, float]]) -> Rows:
    """The rows of events first..last (pks), a pure function of them and their stage (lo, hi]: the stage's events
    sweep the 30 days in pk order."""
    lo, hi = stage
    rng = random.Random(f"chunk:{first}:{last}:{lo}:{hi}")
    t_a = T0_NS + SPAN_NS * (first - 1 - lo) // (hi - lo)
    t_b = T0_NS + SPAN_NS * (last - lo) // (hi - lo)
    starts = sorted(rng.randrange(t_a, max(t_b, t_a + 1)) for _ in range(last - first + 1))
    names, weights = list(LABELS), list(LABELS.values())
    labels = rng.choices(names, weights, k=len(starts))
    sha = "5e" * 32
    r = Rows([], [], [], [], [], [])
    for pk, start, label in zip(range(first, last + 1), starts, labels):
        dev, lat, lon = fleet[rng.randrange(N_DEVICES)]
        dur = rng.randrange(500_000_000, 8_000_000_000)
        score = round(rng.uniform(0.3, 0.99), 4)
        created = start + 50_000_000  # the start record enters the edge's outbox, then the cloud stores it
        received = created + rng.randrange(20_000_000, 400_000_000)
        end_created = start + dur + 50_000_000
        end_received = end_created + rng.randrange(20_000_000, 400_000_000)
        event_id = f"{pk:012x}{rng.getrandbits(80):020x}"  # ordered like a UUIDv7 (see BENCHMARKS.md)
        r.events.append((pk, dev, 2 * pk, event_id, label, start, score, lat, lon, "onnxruntime", sha, 1.9,
                         created, received))
        r.ends.append((pk, 2 * pk + 1, start + dur, min(0.999, score + 0.05), None, None, end_created,
                       end_received))
        r.classes.append((pk, True, json.dumps(CLASSES[label])))
        reason = "distress" if label in DISTRESS else ("sample" if rng.random() < SAMPLE_RATE else None)
        if reason:
            r.clips.append((pk, f"{pk:064x}", 96_000, "flac", 16000, start - 2 * 10**9, 2.0,
                            f"file:///clips/{pk:064x}.flac", end_received))
            done = rng.random() < 0.95
            agree = rng.random() < 0.8
            r.verifications.append((pk, reason, "done" if done else "pending", 1 if done else 0,
                                    "vggish" if done else None,
                                    json.dumps([label if agree else "speech"]) if done else None,
                                    json.dumps({label: 0.7}) if done else None, agree if done else None,
                                    received, received + 5 * 10**9 if done else None))
        if rng.random() < REVIEW_RATE:
            decision = rng.choices(["real", "false_alarm", "wrong_label"], [60, 30, 10])[0]
            r.reviews.append((2 * pk, pk, decision, "speech" if decision == "wrong_label" else None, "ana", None,
                              received + 3600 * 10**9))
            if rng.random() < 0.1:
                r.reviews.append((2 * pk + 1, pk, "real", None, "ben", "on second listen", received + 7200 * 10**9))
    return r


def stored(store: Store) -> int:
    with store.db.read() as conn:
        return int(conn.scalar(sa.text("SELECT COALESCE(MAX(id), 0) FROM events")))


def fill(store: Store, target: int, stage: tuple[int, int], fleet: list[tuple[str, float, float]]) -> float:
    """Add events up to pk `target` (from the largest stored), a transaction per CHUNK. Returns seconds taken."""
    db = store.db
    have = stored(store)
    if have >= target:
        return 0.0
    t = time.perf_counter()
    with tqdm(total=target, initial=have, unit="ev", unit_scale=True, desc=f"fill to {target:,}", smoothing=0.1,
              file=sys.stderr) as bar:
        while have < target:
            last = min(target, have + CHUNK)
            r = chunk_rows(have + 1, last, stage, fleet)
            with db.write() as conn:
                db.bulk.insert(conn, "events", EVENT_COLS, r.events)
                db.bulk.insert(conn, "event_ends", END_COLS, r.ends)
                db.bulk.insert(conn, "top_classes", CLASS_COLS, r.classes)
                db.bulk.insert(conn, "clips", CLIP_COLS, r.clips)
                db.bulk.insert(conn, "verifications", VER_COLS, r.verifications)
                db.bulk.insert(conn, "reviews", REVIEW_COLS, r.reviews)
            bar.update(last - have)
            have = last
    return time.perf_counter() - t


def ensure_devices(store: Store, fleet: list[tuple[str, float, float]]) -> None:
    with store.db.write() as conn:
        store.db.bulk.insert(conn, "devices", ("id", "created_ns", "lat", "lon"),
                             [(d, T0_NS, lat, lon) for d, lat, lon in fleet], ignore=True)


# ------------------------------------------------------------------------------------------------ the queries
@dataclass
class Query:
    name: str
    kind: str                          # "list" | "aggregate" | "lookup"
    make: Callable[[random.Random], Callable[[], object]]  # params drawn from rng -> the call


WINDOW_NAMES = {3600: "1h", 6 * 3600: "6h", 86400: "24h", 7 * 86400: "7d"}
_drawn: list[str] = []  # the window of each call made, in order (time_all tags its timings with them)


def _window(rng: random.Random) -> tuple[int, int]:
    w = rng.choice(WINDOWS_S)
    _drawn.append(WINDOW_NAMES[w])
    start = rng.randrange(T0_NS, T0_NS + SPAN_NS - w * 10**9)
    return start, start + w * 10**9


def _city_box(rng: random.Random) -> BBox:
    lat, lon = rng.choice(CITIES)
    half = rng.choice((0.05, 0.1, 0.2))  # a district to a whole city and its outskirts
    return BBox(lat - half, lon - half * 1.5, lat + half, lon + half * 1.5)


def _labels(rng: random.Random, most: int = 2) -> list[str]:
    return sorted(set(rng.choices(list(LABELS), list(LABELS.values()), k=rng.randint(1, most))))


def _nice_bucket(seconds: float) -> int:  # dashboard.data._nice_bucket (the bench must not import the dashboard)
    for b in (5, 10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400):
        if seconds <= b:
            return b
    return 30 * 86400


def queries(store: Store, picks: list[tuple]) -> list[Query]:
    q = store.queries

    def list_events(rng):
        s, e = _window(rng)
        f = EventFilter(start_ns=s, end_ns=e, labels=_labels(rng), bbox=_city_box(rng), limit=101)
        return lambda: q.list_events(f)

    def timeline(rng):
        s, e = _window(rng)
        f = EventFilter(start_ns=s, end_ns=e, labels=_labels(rng, 3) if rng.random() < 0.5 else [])
        bucket = _nice_bucket((e - s) / 1e9 / 60)
        return lambda: q.timeline(f, bucket)

    def map_cells(rng):
        s, e = _window(rng)
        f = EventFilter(start_ns=s, end_ns=e, labels=_labels(rng, 3) if rng.random() < 0.5 else [])
        cell = 360.0 / 2 ** rng.choice((4, 6, 8, 10)) * 48 / 256  # dashboard.data.Data.cell_deg
        return lambda: (q.map_cells(f, cell, DISTRESS, 3000), q.count_matching(f))

    def false_alarms(rng):
        s, e = _window(rng)
        f = EventFilter(start_ns=s, end_ns=e)
        return lambda: q.false_alarms_by_device(f)

    def review_stats(rng):
        s, e = _window(rng)
        f = EventFilter(start_ns=s, end_ns=e)
        return lambda: q.review_stats(f)

    def list_devices(rng):
        return q.list_devices

    index = FleetIndex(500.0, 10.0, 120.0)  # FleetConfig's defaults

    def near(rng):
        pk, dev, label, start, lat, lon, received = rng.choice(picks)
        p = Placed(pk, dev, label, start, lat, lon, received)

        def call():
            with store.db.read() as conn:
                return FleetStore._near_in_db(conn, index, p)
        return call

    return [Query("ListEvents (time+bbox+labels, 101)", "list", list_events),
            Query("timeline (per label per bucket)", "aggregate", timeline),
            Query("map_cells + count_matching", "aggregate", map_cells),
            Query("false_alarms_by_device", "aggregate", false_alarms),
            Query("review_stats", "aggregate", review_stats),
            Query("list_devices (events per device)", "aggregate", list_devices),
            Query("fleet neighbour look-up (_near_in_db)", "lookup", near)]


def pick_events(store: Store, n: int, seed: int) -> list[tuple]:
    """`n` stored events with positions, spread over the table (for the neighbour look-up)."""
    rng = random.Random(seed)
    with store.db.read() as conn:
        top = int(conn.scalar(sa.text("SELECT MAX(id) FROM events")))
        pks = sorted({rng.randint(1, top) for _ in range(n)})
        rows = conn.execute(sa.text("SELECT id, device_id, label, start_ns, lat, lon, received_ns FROM events "
                                    f"WHERE id IN ({','.join(map(str, pks))})")).all()
    return [tuple(r) for r in rows]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def time_all(store: Store, calls: int, seed: int, cap_s: float) -> dict[str, dict]:
    """name -> {p50_ms, p99_ms, max_ms, calls, by_window: {window: p99_ms}}; every query's parameters come from
    its own seeded stream, the same at every size. A query stops after `cap_s` seconds of calls (at least 20)."""
    picks = pick_events(store, 500, seed)
    out = {}
    for qd in queries(store, picks):
        rng = random.Random(f"{seed}:{qd.name}")
        _drawn.clear()
        fns = [qd.make(rng) for _ in range(calls)]
        tags = list(_drawn) if len(_drawn) == calls else ["-"] * calls
        for fn in fns[:3]:  # warm the pool and the connection
            fn()
        ms: list[float] = []
        spent = 0.0
        for fn in tqdm(fns, desc=qd.name[:32], unit="call", file=sys.stderr, leave=False):
            t = time.perf_counter()
            fn()
            ms.append((time.perf_counter() - t) * 1e3)
            spent += ms[-1] / 1e3
            if spent > cap_s and len(ms) >= 20:
                break
        by: dict[str, list[float]] = {}
        for tag, m in zip(tags, ms):
            by.setdefault(tag, []).append(m)
        out[qd.name] = {"kind": qd.kind, "calls": len(ms), "p50_ms": statistics.median(ms), "p99_ms": pct(ms, 99),
                        "max_ms": max(ms), "by_window": {k: pct(v, 99) for k, v in by.items() if k != "-"}}
        r = out[qd.name]
        windows = "  ".join(f"{k} {v:.0f}" for k, v in sorted(r["by_window"].items(), key=lambda kv: _wsort(kv[0])))
        print(f"  {qd.name:40s} p50 {r['p50_ms']:8.1f} ms  p99 {r['p99_ms']:8.1f} ms  ({len(ms)} calls)"
              + (f"  p99 by window: {windows}" if windows else ""), flush=True)
    return out


def _wsort(name: str) -> int:
    return {v: k for k, v in WINDOW_NAMES.items()}.get(name, 0)


# ------------------------------------------------------------------------------------------------ EXPLAIN
@contextmanager
def capture(engine: sa.Engine) -> Iterator[list]:
    """The (statement, parameters) of every SELECT the engine sends meanwhile."""
    seen: list = []

    def hook(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", hook)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", hook)


def explain_all(store: Store, seed: int) -> dict[str, list[dict]]:
    """name -> [{sql, plan (plain EXPLAIN rows), json}] for the statements of one call of each query."""
    picks = pick_events(store, 50, seed)
    out: dict[str, list[dict]] = {}
    for qd in queries(store, picks):
        fn = qd.make(random.Random(f"{seed}:{qd.name}"))
        with capture(store.engine) as seen:
            fn()
        plans = []
        for stmt, params in seen:
            if "top_classes" in stmt and "IN (" in stmt:
                continue  # the per-page top classes read: a primary-key look-up per row shown
            with store.engine.connect() as conn:
                cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                cur.execute("EXPLAIN " + stmt, params)
                cols = [d[0] for d in cur.description]
                rows = [dict(zip(cols, r)) for r in cur.fetchall()]
                cur.execute("EXPLAIN FORMAT=JSON " + stmt, params)
                js = json.loads(cur.fetchone()[0])
                sql = cur.mogrify(stmt, params)
                cur.close()
            plans.append({"sql": sql, "plan": rows, "json": js})
        out[qd.name] = plans
    return out


def plan_lines(plans: dict[str, list[dict]]) -> list[str]:
    lines = []
    for name, stmts in plans.items():
        lines.append(f"{name}:")
        for s in stmts:
            for r in s["plan"]:
                lines.append(f"  {r.get('select_type', '')[:12]:12s} {str(r.get('table'))[:14]:14s} "
                             f"{str(r.get('type')):11s} key={r.get('key')} rows={r.get('rows')} "
                             f"{r.get('Extra') or ''}")
    return lines


# ------------------------------------------------------------------------------------------------ main
def machine(store: Store) -> dict:
    cpu = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    with store.db.read() as conn:
        version, pool = conn.execute(sa.text("SELECT VERSION(), @@innodb_buffer_pool_size")).one()
    return {"cpu": cpu, "cores": os.cpu_count(), "mariadb": version, "innodb_buffer_pool_mb": int(pool) >> 20,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def create_database(url: str) -> None:
    u = sa.make_url(url)
    admin = sa.create_engine(u.set(database=""))
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS `{u.database}` CHARACTER SET utf8mb4 "
                             "COLLATE utf8mb4_bin")
    admin.dispose()


def drop_database(url: str) -> None:
    u = sa.make_url(url)
    admin = sa.create_engine(u.set(database=""))
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{u.database}`")
    admin.dispose()


def catch_up(store: Store) -> dict:
    """Brings the rollup's follower (cloud_svc.store.rollup) up to the stored events, as `serve` does in the
    background, and reports its pace and the rollup's size."""
    from cloud_svc.store.rollup import LEVELS

    t = time.perf_counter()
    n = 0
    with tqdm(desc="rollup follower", unit="event", file=sys.stderr, leave=False) as bar:
        while True:
            k = store.rollup.step(batch=200_000, settle_s=0.0)
            if not k:
                break
            n += k
            bar.update(k)
    spent = time.perf_counter() - t
    with store.db.read() as conn:
        found = conn.execute(sa.text("SELECT level, COUNT(*) FROM event_rollup GROUP BY level")).all()
    rows: dict[int, int] = {int(level): int(n) for level, n in found}
    out = {"rolled": n, "seconds": spent, "rows_by_level": {str(lv.id): int(rows.get(lv.id, 0)) for lv in LEVELS}}
    print(f"rollup follower: {n:,} events and reviews in {spent:.0f} s ({n / max(spent, 1e-9):,.0f}/s); rollup rows "
          f"by level {out['rows_by_level']}", flush=True)
    return out


def verdicts(results: dict[int, dict[str, dict]]) -> list[str]:
    sizes = sorted(results)
    big = sizes[-1]
    base = 1_000_000 if 1_000_000 in results else (sizes[-2] if len(sizes) > 1 else None)
    lines = []
    for name, r in results[big].items():
        budget = {"list": BUDGET_LIST_MS, "aggregate": BUDGET_AGG_MS}.get(r["kind"])
        if budget is not None:
            ok = r["p99_ms"] <= budget
            lines.append(f"{'PASS' if ok else 'FAIL'}  {name}: p99 {r['p99_ms']:.1f} ms at {big:,} events "
                         f"(budget <= {budget:.0f} ms)")
        if base is not None and base != big:
            g = r["p99_ms"] / max(results[base][name]["p99_ms"], 1e-9)
            lines.append(f"{'PASS' if g <= BUDGET_GROWTH else 'FAIL'}  {name}: p99 growth {base:,} -> {big:,} "
                         f"{g:.2f}x (budget <= {BUDGET_GROWTH:.0f}x)")
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default=DEFAULT_DB, help="a MariaDB/MySQL URL; the database is created")
    ap.add_argument("--sizes", default="100k,1M,10M", help="event counts to fill to and time, ascending")
    ap.add_argument("--calls", type=int, default=300, help="randomized calls per query per size")
    ap.add_argument("--cap-s", type=float, default=90.0,
                    help="stop a query's calls after this many seconds of them (at least 20 calls)")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--keep", action="store_true", help="keep the database (a later run goes on from it)")
    ap.add_argument("--no-explain", action="store_true")
    ap.add_argument("--out", type=Path, help="write every figure and plan here as JSON")
    ap.add_argument("--merge", type=Path, help="an earlier run's --out: its sizes join the table and verdicts")
    ap.add_argument("--revision", default="head", help="migrate to this schema revision (a before/after peer)")
    a = ap.parse_args(argv)
    sizes = sorted(parse_size(s) for s in a.sizes.split(","))
    create_database(a.db)
    store = Store.open(a.db, known_labels=list(LABELS))
    try:
        print(f"schema at revision {upgrade_schema(store.engine, a.revision)}", flush=True)
        fleet = devices()
        ensure_devices(store, fleet)
        info = machine(store)
        print(f"machine: {info}", flush=True)
        results: dict[int, dict[str, dict]] = {}
        fills: dict[int, float] = {}
        rolled: dict[int, dict] = {}
        lo = 0
        for n in sizes:
            fills[n] = fill(store, n, (lo, n), fleet)
            if stored(store) > n:
                print(f"{n:,} events: not timed, the store holds {stored(store):,} (a fresh --db times it)")
                lo = n
                continue
            rolled[n] = catch_up(store)
            with store.db.read() as conn:
                conn.exec_driver_sql("ANALYZE TABLE events, event_ends, reviews, verifications, event_rollup")
            print(f"{n:,} events (fill {fills[n]:.0f} s, {n - lo:,} added), load average {os.getloadavg()[0]:.1f}:",
                  flush=True)
            results[n] = time_all(store, a.calls, a.seed, a.cap_s)
            print(f"  load average after timing: {os.getloadavg()[0]:.1f}", flush=True)
            lo = n
        if a.merge:  # sizes timed by an earlier run (a fresh database per size: the store only grows)
            earlier = json.loads(a.merge.read_text())
            for k, v in earlier["results"].items():
                results.setdefault(int(k), v)
            sizes = sorted(set(sizes) | {int(k) for k in earlier["results"]})
        sizes = [n for n in sizes if n in results]
        if not sizes:
            return 0
        plans = {} if a.no_explain else explain_all(store, a.seed)
        print("\n| query | " + " | ".join(f"{n:,} p50 / p99 ms" for n in sizes) + " |")
        print("|---|" + "---|" * len(sizes))
        for name in results[sizes[0]]:
            print(f"| {name} | " + " | ".join(f"{results[n][name]['p50_ms']:.1f} / {results[n][name]['p99_ms']:.1f}"
                                               for n in sizes) + " |")
        print()
        for line in verdicts(results):
            print(line)
        if plans:
            print(f"\nEXPLAIN at {sizes[-1]:,} events:")
            print("\n".join(plan_lines(plans)))
        if a.out:
            a.out.write_text(json.dumps({"machine": info, "sizes": sizes, "fill_s": fills, "rollup": rolled,
                                         "results": results,
                                         "verdicts": verdicts(results), "explain": plans}, indent=1, default=str))
    finally:
        store.close()
        if not a.keep:
            drop_database(a.db)
    return 0


if __name__ == "__main__":
    sys.exit(main())

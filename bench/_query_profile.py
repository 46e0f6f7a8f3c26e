"""Where a query's time goes: each statement of ListEvents and of the map's cells, timed on a filled database.

    .venv/bin/python bench/_query_profile.py [--db URL] [--calls 40] [--window-days 7] [--seed 11]

Reads the database `bench/queries.py --keep` left (the same 1000 devices in 20 cities over 30 days) and, for
`--calls` seeded random 7-day windows, times every statement `QueryStore.list_events` (labels and a city's box) and
`QueryStore.map_cells` (zoom 4 and zoom 10) send, through a SQLAlchemy timing hook; prints each statement's median and
largest time and the whole call's. `make bench` skips it (its name starts with `_`): it is a tool for reading a
budget's bound, not a benchmark.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from queries import CITIES, DEFAULT_DB, LABELS, SPAN_NS, T0_NS  # noqa: E402

from cloud_svc.domain import BBox, EventFilter  # noqa: E402
from cloud_svc.store import Store  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default=DEFAULT_DB)
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--window-days", type=float, default=7.0)
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args(argv)
    store = Store.open(a.db)
    spent: list[tuple[float, str]] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        context._edgert_t0 = time.perf_counter()

    def after(conn, cursor, statement, parameters, context, executemany):
        spent.append((time.perf_counter() - context._edgert_t0, " ".join(statement.split())[:60]))

    sa.event.listen(store.engine, "before_cursor_execute", before)
    sa.event.listen(store.engine, "after_cursor_execute", after)
    rng = random.Random(a.seed)
    w = int(a.window_days * 86400e9)
    calls = {
        "ListEvents (labels, a city's box)": lambda f: store.queries.list_events(f),
        "map_cells zoom 4": lambda f: store.queries.map_cells(EventFilter(start_ns=f.start_ns, end_ns=f.end_ns),
                                                              360.0 / 2 ** 4 * 48 / 256, ["shout"], 3000),
        "map_cells zoom 10": lambda f: store.queries.map_cells(EventFilter(start_ns=f.start_ns, end_ns=f.end_ns),
                                                               360.0 / 2 ** 10 * 48 / 256, ["shout"], 3000),
    }
    filters = []
    for _ in range(a.calls):
        lat, lon = rng.choice(CITIES)
        half = rng.choice((0.05, 0.1, 0.2))
        s = T0_NS + rng.randrange(0, SPAN_NS - w)
        labels = sorted(set(rng.choices(list(LABELS), list(LABELS.values()), k=2)))
        filters.append(EventFilter(start_ns=s, end_ns=s + w, labels=labels, limit=101,
                                   bbox=BBox(lat - half, lon - half * 1.5, lat + half, lon + half * 1.5)))
    for name, fn in calls.items():
        fn(filters[0])  # warm the pool
        per: dict[int, list[float]] = {}
        totals, texts = [], {}
        for f in filters:
            spent.clear()
            t = time.perf_counter()
            fn(f)
            totals.append(time.perf_counter() - t)
            for i, (dt, text) in enumerate(spent):
                per.setdefault(i, []).append(dt)
                texts[i] = text
        print(f"{name}: {len(filters)} calls, median {statistics.median(totals) * 1e3:.1f} ms, largest "
              f"{max(totals) * 1e3:.1f} ms a call; per statement (the driver's reading of its rows included):",
              flush=True)
        for i, ts in sorted(per.items()):
            print(f"  {statistics.median(ts) * 1e3:7.1f} ms median {max(ts) * 1e3:7.1f} ms largest  {texts[i]}")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

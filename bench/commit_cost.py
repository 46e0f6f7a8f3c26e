"""CPU and wall time of one ingest commit (`IngestStore.commit`), the cost under every ack, on MariaDB and SQLite.

    .venv/bin/python bench/commit_cost.py [--commits 600] [--dbs mariadb,sqlite]

Each commit stores `group` single-record batches from different devices (an event start, 5 top classes, a
position), as the committer does when batches arrive one by one (group 1) or a few at a time (group 5). CPU is
this process's `time.process_time()`, so it counts the Python work and PyMySQL, not the database server.

The peer, measured in the same run on the same database: the same statements sent through SQLAlchemy's
`exec_driver_sql` (the path the bulk writer used before it took the DBAPI cursor), and every event end's pk
looked up again (no pk cache). SQLite has no peer row: its statements never took the MySQL path.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # tests/support.py: throwaway databases, the server

from cloud_svc.domain import BatchIn, EventIn, RecordIn  # noqa: E402
from cloud_svc.sqlbulk import BulkWriter  # noqa: E402
from cloud_svc.store import IngestStore, Store  # noqa: E402
from support import TempMariaDB, mariadb_available  # noqa: E402

CLASSES = [("Glass", 0.81), ("Shatter", 0.4), ("Breaking", 0.2), ("Smash, crash", 0.1), ("Speech", 0.05)]


class _NoCache(dict):
    """A pk cache that never remembers: every end record's pk is looked up, as before the cache."""

    def update(self, *a, **kw) -> None:
        pass


def measure(ingest: IngestStore, devices: list[str], group: int, commits: int, modes: dict,
            rounds: int = 7) -> dict[str, tuple[float, float]]:
    """mode name -> (median CPU us, median wall ms) per commit. Each round runs every mode once, in rotating
    order (paired rounds: the database's own drift hits all modes alike)."""
    seq = {d: 1000 for d in devices}
    k = [0]

    def batch() -> BatchIn:
        d = devices[k[0] % len(devices)]
        k[0] += 1
        seq[d] += 1
        e = EventIn(uuid.uuid4().hex, "glass_break", time.time_ns(), None, 0.8, CLASSES, 52.52, 13.40,
                    "onnxruntime", "ab" * 32, 1.9)
        return BatchIn(d, 1, [RecordIn(seq[d], time.time_ns(), "event", e)])

    for _ in range(50):  # warm the pool, caches and the database's buffer pool
        ingest.commit([batch()])
    got: dict[str, tuple[list, list]] = {m: ([], []) for m in modes}
    names = list(modes)
    n = commits // rounds
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            with modes[name]():
                c0, w0 = time.process_time(), time.perf_counter()
                for _ in range(n):
                    ingest.commit([batch() for _ in range(group)])
                got[name][0].append((time.process_time() - c0) / n * 1e6)
                got[name][1].append((time.perf_counter() - w0) / n * 1e3)
    return {m: (statistics.median(c), statistics.median(w)) for m, (c, w) in got.items()}


def _through_sqlalchemy(conn, sql: str, rows: bool = False):
    """The peer's statement path: SQLAlchemy's exec_driver_sql ("%" doubled: it passes parameters)."""
    result = conn.exec_driver_sql(sql.replace("%", "%%"))
    return [tuple(r) for r in result.all()] if rows else None


@contextlib.contextmanager
def _peer(ingest: IngestStore):
    ours_exec, ours_cache = BulkWriter.__dict__["_exec"], ingest._pk_cache  # the staticmethod itself
    BulkWriter._exec = staticmethod(_through_sqlalchemy)
    ingest._pk_cache = _NoCache()
    try:
        yield
    finally:
        BulkWriter._exec, ingest._pk_cache = ours_exec, ours_cache


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=600)
    ap.add_argument("--dbs", default="mariadb,sqlite")
    args = ap.parse_args()
    rows = []
    for kind in args.dbs.split(","):
        mdb = None
        if kind == "mariadb":
            why = mariadb_available()
            if why:
                print(f"skipping MariaDB: {why}", file=sys.stderr)
                continue
            mdb = TempMariaDB("bench_commit")
            url = mdb.url
        else:
            url = f"sqlite:///{tempfile.mkdtemp(prefix='commit-cost-')}/cloud.db"
        store = Store.open(url, distress_labels=["scream"], sample_rate=0.0)
        try:
            store.upgrade()
            devices = [f"dev-{i:04d}" for i in range(200)]
            store.devices.add_devices(devices)
            modes = {"ours": contextlib.nullcontext}
            if kind == "mariadb":
                modes["peer (SQLAlchemy path, no pk cache)"] = lambda ingest=store.ingest: _peer(ingest)
            for group in (1, 5):
                for name, (cpu, wall) in measure(store.ingest, devices, group, args.commits, modes).items():
                    rows.append((f"{kind}: {name}", group, cpu, cpu / group, wall))
        finally:
            store.close()
            if mdb is not None:
                mdb.drop()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"{args.commits} commits per case, median of 7 paired rounds, {when}")
    print("| database | batches per commit | CPU us per commit | CPU us per batch | wall ms per commit |")
    print("|---|---|---|---|---|")
    for kind, group, cpu, per, wall in rows:
        print(f"| {kind} | {group} | {cpu:.0f} | {per:.0f} | {wall:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

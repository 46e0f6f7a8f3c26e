"""The durable outbox: seq assignment, acks, bounds, and durability across kill -9."""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from edge_rt.errors import OutboxError
from edge_rt.outbox import Outbox


def test_seq_is_monotonic_and_survives_reopen(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    assert [ob.put("event", {"i": i}) for i in range(3)] == [1, 2, 3]
    ob.close()
    ob = Outbox(tmp_path / "o.db")
    assert ob.put("event", {"i": 3}) == 4
    assert [r.body["i"] for r in ob.pending()] == [0, 1, 2, 3]


def test_ack_trims_and_seq_is_never_reused(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    for i in range(5):
        ob.put("event", {"i": i})
    assert ob.ack(3) == 3
    assert [r.seq for r in ob.pending()] == [4, 5]
    ob.ack(5)
    assert ob.pending() == [] and ob.put("event", {}) == 6
    assert ob.stats()["acked"] == 5


def test_pending_pages_after_a_seq(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    for i in range(10):
        ob.put("event", {"i": i})
    assert [r.seq for r in ob.pending(after_seq=4, limit=3)] == [5, 6, 7]


def test_clip_bytes_round_trip(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    blob = os.urandom(5000)
    ob.put("event_end", {"x": 1}, clip=blob)
    assert ob.pending()[0].clip == blob


def test_byte_bound_drops_the_oldest_and_counts_it(tmp_path):
    ob = Outbox(tmp_path / "o.db", max_bytes=1 << 16)
    for i in range(10):
        ob.put("event_end", {"i": i}, clip=b"x" * 10000)
    st = ob.stats()
    assert st["bytes"] <= 1 << 16 and st["dropped"] == 10 - st["depth"] > 0
    assert ob.pending()[-1].body["i"] == 9  # the newest is kept


def test_age_bound_drops_old_records(tmp_path):
    ob = Outbox(tmp_path / "o.db", max_age_s=60)
    now = time.time_ns()
    ob.put("event", {"old": True}, now_ns=now - 120 * 10**9)
    ob.put("event", {"old": False}, now_ns=now)
    assert [r.body["old"] for r in ob.pending()] == [False]
    assert ob.stats()["dropped"] == 1


def test_unwritable_location_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutboxError, match="cannot open outbox"):
        Outbox(tmp_path / "file" / "o.db")


def test_nan_in_a_body_is_refused_not_stored(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    with pytest.raises(ValueError):
        ob.put("event", {"score": float("nan")})
    assert ob.pending() == []


WRITER = textwrap.dedent("""
    import sys
    from edge_rt.outbox import Outbox
    ob = Outbox(sys.argv[1])
    i = 0
    while True:
        seq = ob.put("event", {"i": i}, clip=b"c" * (i % 7000))
        print(seq, flush=True)  # printed only after put() returned: the record is durable
        i += 1
""")


@pytest.mark.parametrize("attempt", range(10))
def test_kill_9_loses_no_record_put_returned(tmp_path, attempt):
    db = tmp_path / "o.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    seen = []
    deadline = time.monotonic() + 20
    target = 50 + 37 * attempt
    while len(seen) < target and time.monotonic() < deadline:
        seen.append(int(proc.stdout.readline()))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(seen) == target
    stored = {r.seq for r in Outbox(db).pending(limit=100000)}
    assert set(seen) <= stored


def test_put_many_is_one_transaction_with_consecutive_seqs(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    ob.put("event", {"i": -1})
    assert ob.put_many([("event", {"i": 0}, None), ("event_end", {"i": 1}, b"clip"), ("alert", {"i": 2}, None)]) \
        == [2, 3, 4]
    with pytest.raises(ValueError):
        ob.put_many([("event", {"i": 3}, None), ("event", {"bad": float("inf")}, None)])
    assert [r.body["i"] for r in ob.pending()] == [-1, 0, 1, 2]  # nothing of the failed batch was stored
    assert ob.put("event", {"i": 5}) == 5


def _recount(path) -> tuple[int, int]:
    with sqlite3.connect(str(path)) as db:
        return db.execute("SELECT COUNT(*), COALESCE(SUM(nbytes),0) FROM outbox").fetchone()


def test_running_totals_match_a_recount_through_puts_acks_and_drops(tmp_path):
    rng = random.Random(5)
    ob = Outbox(tmp_path / "o.db", max_bytes=40_000, max_age_s=3600)
    now = 10**18
    for step in range(300):
        r = rng.random()
        if r < 0.6:
            ob.put_many([("event", {"i": step, "pad": "x" * rng.randrange(0, 900)},
                          bytes(rng.randrange(0, 3000)) or None) for _ in range(rng.randrange(1, 4))], now_ns=now)
        elif r < 0.85:
            st = ob.stats()
            ob.ack(rng.randrange(st["acked"], st["next_seq"]))
        else:
            now += int(rng.uniform(0, 2000) * 1e9)  # some records age out at the next put
        st = ob.stats()
        assert (st["depth"], st["bytes"]) == _recount(ob.path), step
        assert st["bytes"] <= 40_000
    assert ob.stats()["dropped"] > 0  # both bounds were exercised


def test_an_outbox_from_before_the_running_totals_gets_them_counted(tmp_path):
    path = tmp_path / "old.db"
    ob = Outbox(path)
    for i in range(7):
        ob.put("event", {"i": i}, clip=b"abc" * i or None)
    ob.close()
    with sqlite3.connect(str(path)) as db:  # the layout before the totals existed
        db.execute("DELETE FROM meta WHERE key IN ('depth', 'bytes')")
    ob = Outbox(path)
    st = ob.stats()
    assert (st["depth"], st["bytes"]) == _recount(path) and st["depth"] == 7

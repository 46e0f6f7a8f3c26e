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
    assert [ob.put("event", b"%d" % i) for i in range(3)] == [1, 2, 3]
    ob.close()
    ob = Outbox(tmp_path / "o.db")
    assert ob.put("event", b"3") == 4
    assert [int(r.body) for r in ob.pending()] == [0, 1, 2, 3]


def test_ack_trims_and_seq_is_never_reused(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    for i in range(5):
        ob.put("event", b"%d" % i)
    assert ob.ack(3) == 3
    assert [r.seq for r in ob.pending()] == [4, 5]
    ob.ack(5)
    assert ob.pending() == [] and ob.put("event", b"") == 6
    assert ob.stats()["acked"] == 5


def test_pending_pages_after_a_seq(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    for i in range(10):
        ob.put("event", b"%d" % i)
    assert [r.seq for r in ob.pending(after_seq=4, limit=3)] == [5, 6, 7]


def test_clip_bytes_round_trip(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    blob = os.urandom(5000)
    ob.put("event_end", b"x", clip=blob)
    assert ob.pending()[0].clip == blob


def test_byte_bound_drops_the_oldest_and_counts_it(tmp_path):
    ob = Outbox(tmp_path / "o.db", max_bytes=1 << 16)
    for i in range(10):
        ob.put("event_end", b"%d" % i, clip=b"x" * 10000)
    st = ob.stats()
    assert st["bytes"] <= 1 << 16 and st["dropped"] == 10 - st["depth"] > 0
    assert ob.pending()[-1].body == b"9"  # the newest is kept


def test_age_bound_drops_old_records(tmp_path):
    ob = Outbox(tmp_path / "o.db", max_age_s=60)
    now = time.time_ns()
    ob.put("event", b"old", now_ns=now - 120 * 10**9)
    ob.put("event", b"new", now_ns=now)
    assert [r.body for r in ob.pending()] == [b"new"]
    assert ob.stats()["dropped"] == 1


def test_unwritable_location_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutboxError, match="cannot open outbox"):
        Outbox(tmp_path / "file" / "o.db")


def test_a_body_that_is_not_a_serialized_record_is_refused_not_stored(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    with pytest.raises(OutboxError, match="serialized record"):
        ob.put("event", {"score": 0.5})
    assert ob.pending() == []


WRITER = textwrap.dedent("""
    import sys
    from edge_rt.outbox import Outbox
    ob = Outbox(sys.argv[1])
    i = 0
    while True:
        seq = ob.put("event", b"%d" % i, clip=b"c" * (i % 7000))
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
    ob.put("event", b"-1")
    assert ob.put_many([("event", b"0", None), ("event_end", b"1", b"clip"), ("alert", b"2", None)]) \
        == [2, 3, 4]
    with pytest.raises(OutboxError, match="write failed"):  # the second row breaks NOT NULL inside the transaction
        ob.put_many([("event", b"3", None), (None, b"4", None)])
    assert [int(r.body) for r in ob.pending()] == [-1, 0, 1, 2]  # nothing of the failed batch was stored
    assert ob.put("event", b"5") == 5


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
            ob.put_many([("event", b"%d" % step + b"x" * rng.randrange(0, 900),
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
        ob.put("event", b"%d" % i, clip=b"abc" * i or None)
    ob.close()
    with sqlite3.connect(str(path)) as db:  # the layout before the totals existed
        db.execute("DELETE FROM meta WHERE key IN ('depth', 'bytes')")
    ob = Outbox(path)
    st = ob.stats()
    assert (st["depth"], st["bytes"]) == _recount(path) and st["depth"] == 7


def _old_format_spool(path, bodies) -> None:
    """A spool as edge_rt wrote it before typed records: JSON bodies, PRAGMA user_version 0."""
    import json

    with sqlite3.connect(str(path)) as db:
        db.executescript("""
            CREATE TABLE outbox (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, created_ns INTEGER NOT NULL,
                                 body TEXT NOT NULL, clip BLOB, nbytes INTEGER NOT NULL);
            CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);""")
        for seq, (kind, body, clip) in enumerate(bodies, start=1):
            text = json.dumps(body)
            db.execute("INSERT INTO outbox VALUES (?,?,?,?,?,?)",
                       (seq, kind, time.time_ns(), text, clip, len(text) + len(clip or b"")))
        db.executemany("INSERT INTO meta VALUES (?,?)", [("next_seq", len(bodies) + 1), ("dropped", 0), ("acked", 0)])


def test_a_spool_of_the_json_format_is_migrated_on_open_and_nothing_is_lost(tmp_path):
    from edge_rt.records import parse

    start = 1_700_000_000_000_000_000
    ev = {"device_id": "d1", "label": "glass_break", "lat": 52.5, "lon": 13.4, "backend": "onnxruntime",
          "model_sha256": "ab" * 32, "event_id": "0" * 32, "start_ns": start, "end_ns": None, "score": 0.81,
          "classes": [["Glass", 0.81], ["Shatter", 0.4]], "inference_ms": 1.9, "stream_s": 3.0}
    end = {**ev, "end_ns": start + 700_000_000, "embedding_f16": "AAA8", "clip": {
        "format": "flac", "sample_rate": 16000, "start_ns": start - 10**9, "preroll_s": 1.0}}
    alert = {"device_id": "d1", "rule": "distress", "labels": ["glass_break", "scream"], "start_ns": start,
             "end_ns": start + 5 * 10**9, "event_ids": ["0" * 32, "1" * 32], "lat": 52.5, "lon": 13.4}
    path = tmp_path / "outbox.db"
    _old_format_spool(path, [("event", ev, None), ("event_end", end, b"fLaC..."), ("alert", alert, None),
                             ("event", {"label": "no id, no start"}, None)])
    ob = Outbox(path)
    recs = ob.pending()
    assert [(r.seq, r.kind) for r in recs] == [(1, "event"), (2, "event_end"), (3, "alert"), (4, "event")]
    first, second, third, broken = (parse(r.body) for r in recs)
    assert first.event.label == "glass_break" and first.event.start_ns == start and first.event.end_ns == 0
    assert first.event.position.lat == 52.5 and [c.name for c in first.event.classes] == ["Glass", "Shatter"]
    assert second.event_end.end_ns == start + 700_000_000 and second.event_end.clip.preroll_s == 1.0
    assert second.event_end.embedding_f16 == b"\x00\x00<" and recs[1].clip == b"fLaC..."
    assert list(third.alert.event_ids) == ["0" * 32, "1" * 32] and third.alert.rule == "distress"
    assert broken.WhichOneof("kind") is None  # kept, sent without a kind: the cloud dead-letters it, seq settles
    assert (ob.stats()["depth"], ob.stats()["bytes"]) == _recount(path) and ob.put("event", b"x") == 5
    ob.close()
    assert [r.body for r in Outbox(path).pending()] == [r.body for r in recs] + [b"x"]  # migrated once


def test_a_spool_of_a_newer_format_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "outbox.db"
    Outbox(path).close()
    with sqlite3.connect(str(path)) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(OutboxError, match=r"format 99, newer .* run the newer edge_rt that wrote it until it drains"):
        Outbox(path)

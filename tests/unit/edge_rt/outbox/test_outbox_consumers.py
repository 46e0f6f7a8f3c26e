"""The outbox with several consumers (the cloud uplink, MQTT, the webhook): a mark each, rows deleted once every
consumer registered for the run has acked them, marks in the same transactions as the deletes (kill -9 safe)."""
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
from edge_rt.outbox import CLOUD, Outbox


def _filled(path, n: int = 6, consumers=(CLOUD, "mqtt")) -> Outbox:
    ob = Outbox(path)
    ob.register(consumers)
    for i in range(n):
        ob.put("event", b"%d" % i)
    return ob


def _seqs(ob: Outbox, after: int = 0) -> list[int]:
    return [r.seq for r in ob.pending(after_seq=after, limit=100000)]


def test_a_row_goes_only_once_every_registered_consumer_acked_it(tmp_path):
    ob = _filled(tmp_path / "o.db")
    assert ob.ack(4) == 0 and _seqs(ob) == [1, 2, 3, 4, 5, 6]  # the cloud has them, MQTT does not yet
    assert ob.ack(2, "mqtt") == 2 and _seqs(ob) == [3, 4, 5, 6]
    assert ob.ack(6, "mqtt") == 2 and _seqs(ob) == [5, 6]       # now the cloud is the one behind
    assert ob.ack(6) == 2 and _seqs(ob) == [] and ob.stats()["depth"] == 0


def test_each_consumer_reads_from_its_own_mark_and_counts_its_own_backlog(tmp_path):
    ob = _filled(tmp_path / "o.db")
    ob.ack(4)
    ob.ack(1, "mqtt")
    assert (ob.mark(CLOUD), ob.mark("mqtt")) == (4, 1)
    assert _seqs(ob, ob.mark(CLOUD)) == [5, 6] and _seqs(ob, ob.mark("mqtt")) == [2, 3, 4, 5, 6]
    assert (ob.backlog(CLOUD), ob.backlog("mqtt")) == (2, 5)
    assert ob.stats()["acked"] == 4  # the cloud's mark is still 'acked' for the tools that read it


def test_a_mark_never_goes_back(tmp_path):
    ob = _filled(tmp_path / "o.db")
    ob.ack(5, "mqtt")
    ob.ack(3, "mqtt")
    assert ob.mark("mqtt") == 5


def test_marks_survive_reopen_and_each_consumer_resumes_after_its_own(tmp_path):
    ob = _filled(tmp_path / "o.db")
    ob.ack(5)
    ob.ack(2, "mqtt")
    ob.close()
    ob = Outbox(tmp_path / "o.db")
    ob.register([CLOUD, "mqtt"])
    assert _seqs(ob, ob.mark("mqtt")) == [3, 4, 5, 6] and _seqs(ob, ob.mark(CLOUD)) == [6]


def test_registration_is_per_run_a_consumer_left_out_no_longer_holds_rows(tmp_path):
    ob = _filled(tmp_path / "o.db")
    ob.ack(6)  # MQTT is behind: everything is held for it
    assert ob.stats()["depth"] == 6
    ob.close()
    ob = Outbox(tmp_path / "o.db")
    ob.register([CLOUD])  # this run has no MQTT: what the cloud acked goes at once
    assert ob.stats()["depth"] == 0 and ob.consumers == (CLOUD,)
    assert ob.mark("mqtt") == 0  # kept, for when MQTT comes back


def test_a_new_consumer_starts_from_the_oldest_row_still_held(tmp_path):
    ob = _filled(tmp_path / "o.db", consumers=[CLOUD])
    ob.ack(3)  # 1-3 went with the cloud alone
    ob.register([CLOUD, "webhook"])
    assert ob.mark("webhook") == 3 and _seqs(ob, ob.mark("webhook")) == [4, 5, 6]
    ob.ack(6)
    assert _seqs(ob) == [4, 5, 6]  # held for the webhook now
    ob.ack(6, "webhook")
    assert _seqs(ob) == []


def test_a_consumer_that_comes_back_resumes_after_its_mark_or_the_oldest_row_held(tmp_path):
    ob = _filled(tmp_path / "o.db")
    ob.ack(2, "mqtt")
    ob.register([CLOUD])     # a run without MQTT
    ob.ack(4)                # 1-4 go: nobody else holds them
    ob.put("event", b"6")
    ob.register([CLOUD, "mqtt"])  # MQTT is back: its mark (2) is below the oldest row held (5)
    assert ob.mark("mqtt") == 2 and _seqs(ob, ob.mark("mqtt")) == [5, 6, 7]


def test_with_no_consumer_registered_acks_delete_nothing(tmp_path):
    ob = _filled(tmp_path / "o.db", consumers=[])
    ob.ack(6)
    assert ob.stats()["depth"] == 6 and ob.mark(CLOUD) == 6


def test_an_outbox_opened_without_registering_has_the_cloud_as_its_one_consumer(tmp_path):
    ob = _filled(tmp_path / "o.db")
    ob.ack(6)
    ob.close()
    ob = Outbox(tmp_path / "o.db")  # e.g. a tool reading stats: opening it deletes nothing
    assert ob.stats()["depth"] == 6 and ob.consumers == (CLOUD,)


def test_the_bounds_drop_the_oldest_rows_whoever_still_needs_them_and_count_them(tmp_path):
    ob = Outbox(tmp_path / "o.db", max_bytes=1 << 16)
    ob.register([CLOUD, "mqtt"])
    for i in range(10):
        ob.put("event_end", b"%d" % i, clip=b"x" * 10000)
    ob.ack(10)
    st = ob.stats()
    assert st["dropped"] == 10 - st["depth"] > 0 and st["bytes"] <= 1 << 16
    assert _seqs(ob, ob.mark("mqtt"))[0] == st["next_seq"] - st["depth"]  # MQTT sees the gap, not an error
    ob.ack(10, "mqtt")
    assert ob.stats()["depth"] == 0


def test_consumer_names_are_checked(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    for bad in ("", "MQTT", "a b", "acked:x", "x" * 40):
        with pytest.raises(OutboxError, match="consumer name"):
            ob.register([bad])
    with pytest.raises(OutboxError, match="consumer name"):
        ob.ack(1, "no way")


def _recount(path) -> tuple[int, int]:
    with sqlite3.connect(str(path)) as db:
        return db.execute("SELECT COUNT(*), COALESCE(SUM(nbytes),0) FROM outbox").fetchone()


def test_running_totals_match_a_recount_with_three_consumers(tmp_path):
    rng = random.Random(13)
    ob = Outbox(tmp_path / "o.db", max_bytes=40_000, max_age_s=3600)
    ob.register([CLOUD, "mqtt", "webhook"])
    now = 10**18
    for step in range(300):
        r = rng.random()
        if r < 0.55:
            ob.put_many([("event", b"%d" % step + b"x" * rng.randrange(0, 900),
                          bytes(rng.randrange(0, 3000)) or None) for _ in range(rng.randrange(1, 4))], now_ns=now)
        elif r < 0.9:
            who = rng.choice([CLOUD, "mqtt", "webhook"])
            ob.ack(rng.randrange(ob.mark(who), ob.stats()["next_seq"]), who)
        else:
            now += int(rng.uniform(0, 2000) * 1e9)
        st = ob.stats()
        assert (st["depth"], st["bytes"]) == _recount(ob.path), step
        held = _seqs(ob)
        floor = min(ob.mark(c) for c in ob.consumers)
        assert all(s > floor for s in held), step  # nothing every consumer has is kept
        assert held == list(range(held[0], held[0] + len(held))) if held else True  # the rows stay one run


WRITER = textwrap.dedent("""
    import sys
    from edge_rt.outbox import Outbox
    ob = Outbox(sys.argv[1])
    ob.register(["cloud", "mqtt"])
    i = 0
    while True:
        seq = ob.put("event", b"%d" % i)
        print("put", seq, flush=True)  # printed only after put() returned: the record is durable
        if i % 3 == 0:
            ob.ack(seq - 1, "cloud")
            print("cloud", seq - 1, flush=True)  # printed only after ack() returned: the mark is durable
        if i % 5 == 0:
            ob.ack(seq - 4, "mqtt")
            print("mqtt", seq - 4, flush=True)
        i += 1
""")


@pytest.mark.parametrize("attempt", range(5))
def test_kill_9_keeps_every_mark_and_every_row_a_consumer_still_needs(tmp_path, attempt):
    db = tmp_path / "o.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    seen: dict[str, list[int]] = {"put": [], "cloud": [0], "mqtt": [0]}
    deadline = time.monotonic() + 20
    target = 60 + 41 * attempt
    while len(seen["put"]) < target and time.monotonic() < deadline:
        what, seq = proc.stdout.readline().split()
        seen[what].append(int(seq))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(seen["put"]) == target
    ob = Outbox(db)
    ob.register([CLOUD, "mqtt"])
    marks = {c: ob.mark(c) for c in (CLOUD, "mqtt")}
    assert marks[CLOUD] >= max(seen["cloud"]) and marks["mqtt"] >= max(seen["mqtt"])
    stored = set(_seqs(ob))
    floor = min(marks.values())
    assert {s for s in seen["put"] if s > floor} <= stored  # every row some consumer still needs is there
    assert all(s > floor for s in stored)                    # and none both have acked
    assert (ob.stats()["depth"], ob.stats()["bytes"]) == _recount(db)

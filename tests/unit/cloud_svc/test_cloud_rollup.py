"""The events' rollup (issue 14): every aggregate read through it equals the same aggregate read from the events
alone, whether the follower is current, behind or never ran, across changed reviews, events without a position,
a device that moved, and windows of every shape; the follower waits for young events and leads alone
(SQLite and MariaDB)."""
from __future__ import annotations

import random
import uuid

import pytest
import sqlalchemy as sa
from store_records import rec, start

from cloud_svc.domain import BatchIn, EventFilter
from cloud_svc.schema import event_rollup
from cloud_svc.store import rollup
from cloud_svc.store.queries import QueryStore
from cloud_svc.store.rollup import RollupStore

T0 = 1_700_000_000 * 10**9 + 123_456_789   # not on a minute
HOUR = 3600 * 10**9
LABELS = ["speech", "siren", "shout", "glass_break", "dog_bark"]
DISTRESS = ["glass_break", "shout"]
PLACES = {"a": [(52.52, 13.405)], "b": [(48.857, 2.352)], "c": [(48.9, 2.4)],
          "moved": [(51.5, -0.12), (51.6, -0.2)], "nowhere": [(None, None)]}


def _ingest(store, rng: random.Random, seqs: dict, n: int) -> None:
    batches = []
    for dev, spots in PLACES.items():
        recs = []
        for _ in range(n // len(PLACES)):
            seqs[dev] = seqs.get(dev, 0) + 1
            lat, lon = rng.choice(spots)
            if rng.random() < 0.1:
                t = T0 + rng.randrange(0, 80) * 60 * 10**9   # on a minute boundary
            else:
                t = T0 + rng.randrange(0, 80 * HOUR)
            recs.append(rec(seqs[dev], "event", start(uuid.uuid4().hex, rng.choice(LABELS), t, lat=lat, lon=lon)))
        batches.append(BatchIn(dev, 1, recs))
    store.ingest.commit(batches)


def _review(store, rng: random.Random, k: int) -> None:
    pks = [e.id for e in store.queries.list_events(EventFilter(limit=100000))]
    for pk in rng.sample(pks, k):
        decision = rng.choice(["real", "false_alarm", "wrong_label"])
        store.reviews.add(pk, decision, "ann", label="scream" if decision == "wrong_label" else None)


def _windows(rng: random.Random):
    yield None, None
    yield T0, None
    yield None, T0 + 40 * HOUR
    yield T0 - T0 % HOUR, T0 - T0 % HOUR + 24 * HOUR           # aligned to hours
    yield T0 + 5 * 10**9, T0 + 35 * 10**9                       # shorter than a minute
    yield T0 - T0 % (24 * HOUR), T0 - T0 % (24 * HOUR) + 48 * HOUR  # whole days
    for _ in range(12):
        s = T0 + rng.randrange(-HOUR, 80 * HOUR)
        yield s, s + rng.choice([60 * 10**9, HOUR, 6 * HOUR, 24 * HOUR, 70 * HOUR]) + rng.randrange(0, 10**9)


def _same(store, rng: random.Random) -> int:
    """Compares every aggregate through the rollup with the events alone; returns how many comparisons ran."""
    fast, ref = store.queries, QueryStore(store.db, use_rollup=False)
    assert fast.use_rollup
    done = 0
    for s, e in _windows(rng):
        for labels in ([], [rng.choice(LABELS)], rng.sample(LABELS, 2)):
            f = EventFilter(start_ns=s, end_ns=e, labels=labels)
            assert fast.count_matching(f) == ref.count_matching(f), (s, e, labels)
            for bucket in (5, 60, 300, 1800, 3600, 3 * 3600, 86400):
                assert fast.timeline(f, bucket) == ref.timeline(f, bucket), (s, e, labels, bucket)
            for cell in (1e-5, 0.066, 1.05, 10.0, rollup.GRID_DEG, rollup.GRID_DEG * 4, rollup.GRID_DEG * 64):
                got, got_missing = fast.map_cells(f, cell, DISTRESS)
                want, want_missing = ref.map_cells(f, cell, DISTRESS)
                assert got_missing == want_missing
                assert [(c.count, c.distress, c.event_pk, c.label, c.labels) for c in got] == \
                       [(c.count, c.distress, c.event_pk, c.label, c.labels) for c in want], (s, e, labels, cell)
                for a, b in zip(got, want):
                    assert a.lat == pytest.approx(b.lat, abs=1e-9) and a.lon == pytest.approx(b.lon, abs=1e-9)
            assert fast.false_alarms_by_device(f) == ref.false_alarms_by_device(f), (s, e, labels)
            assert fast.review_stats(f) == ref.review_stats(f), (s, e, labels)
            done += 1
    assert [(d.device_id, d.events) for d in fast.list_devices()] == \
           [(d.device_id, d.events) for d in ref.list_devices()]
    return done


def test_aggregates_through_the_rollup_equal_the_events_alone_at_every_stage(store):
    rng = random.Random(14)
    store.devices.add_devices(list(PLACES))
    seqs: dict = {}
    _ingest(store, rng, seqs, 300)
    _review(store, rng, 40)
    assert _same(store, rng) > 0                              # the follower never ran: all from the events
    assert store.rollup.step(batch=100, settle_s=0) == 100 + 40  # a third of the events, every review
    assert _same(store, rng) > 0                              # behind
    while store.rollup.step(batch=1000, settle_s=0):
        pass
    with store.db.read() as conn:
        pos, rpos = rollup.cursors_now(conn)
        top = conn.scalar(sa.text("SELECT MAX(id) FROM events"))
        assert pos == top and rpos > 0
        assert conn.scalar(sa.select(sa.func.sum(event_rollup.c.n))
                           .where(event_rollup.c.level == rollup.DEVICE_ALL.id)) == 300
    assert _same(store, rng) > 0                              # current
    _review(store, rng, 30)                                   # changed minds on rolled-up events, past the cursor
    _ingest(store, rng, seqs, 100)                            # events past the cursor
    assert _same(store, rng) > 0
    while store.rollup.step(batch=1000, settle_s=0):
        pass
    assert _same(store, rng) > 0
    with store.db.read() as conn:  # a row per (level, bucket, keys): the fleet's hours hold at most 81 x 5 rows
        rows = conn.scalar(sa.select(sa.func.count()).where(event_rollup.c.level == rollup.FLEET_HOUR.id))
        assert 5 < rows <= 81 * len(LABELS)
        moved = conn.execute(sa.select(event_rollup.c.lat).distinct().where(
            event_rollup.c.level == rollup.PLACE_DAY.id, event_rollup.c.device_id == "moved")).all()
        assert sorted(x[0] for x in moved) == [51.5, 51.6]   # a device that moved keeps both places


def test_young_events_wait_and_one_follower_leads(store):
    store.devices.add_devices(list(PLACES))
    _ingest(store, random.Random(1), {}, 50)
    with store.db.read() as conn:
        received = conn.scalar(sa.text("SELECT MAX(received_ns) FROM events"))
    assert store.rollup.step(settle_s=1.0, now_ns=received + 10**8) == 0  # too young; it takes the lease
    with store.db.read() as conn:
        assert rollup.cursors_now(conn)[0] < conn.scalar(sa.text("SELECT MAX(id) FROM events"))
    other = RollupStore(store.db)
    assert other.step(settle_s=0) == 0                        # the first follower's lease runs
    assert store.rollup.step(settle_s=0) == 50
    store.rollup.release()
    _ingest(store, random.Random(2), {"a": 100, "b": 100, "c": 100, "moved": 100, "nowhere": 100}, 50)
    assert other.step(settle_s=0) == 50                       # handed over at once
    with store.db.read() as conn:
        leases = conn.execute(sa.text("SELECT name, value FROM cursors ORDER BY name")).all()
    assert other.step(settle_s=0) == 0                        # nothing new: it writes nothing, not even its lease
    with store.db.read() as conn:
        assert conn.execute(sa.text("SELECT name, value FROM cursors ORDER BY name")).all() == leases
    assert _same(store, random.Random(3)) > 0


def test_split_covers_the_window_exactly():
    rng = random.Random(7)
    for i in range(1000):
        levels = (rollup.PLACE_DAY, rollup.PLACE_6H, rollup.PLACE_HOUR) if i % 2 else (rollup.PLACE_DAY,
                                                                                       rollup.PLACE_HOUR)
        s = rng.randrange(0, 10 * 24 * HOUR)
        e = s + rng.randrange(1, 5 * 24 * HOUR)
        cut = rollup.split(s, e, levels)
        parts = list(cut.edges)
        for level, lo, hi in cut.blocks:
            assert lo % (level.step_s * 10**9) == 0 and hi % (level.step_s * 10**9) == 0
            parts.append((lo, hi))
        parts.sort()
        assert sum(b - a for a, b in parts) == e - s
        assert all(a < b for a, b in parts)
        assert parts[0][0] == s and parts[-1][1] == e
        assert all(parts[i][1] == parts[i + 1][0] for i in range(len(parts) - 1))
        assert len(cut.blocks) <= 2 * len(levels) - 1 and (not cut.covered or all(b - a < HOUR for a, b in cut.edges))

"""The store's ingest: idempotent commits, watermarks over outbox gaps, verification sampling (SQLite and MariaDB)."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from store_records import CLASSES, end, rec, start

from cloud_svc.domain import AlertIn, BatchIn, EventFilter, HeartbeatIn, RejectIn
from cloud_svc.errors import StorageUnavailable
from cloud_svc.schema import event_ends, events, rejects, top_classes, verifications


def count(store, table, **where) -> int:
    q = sa.select(sa.func.count()).select_from(table)
    for k, v in where.items():
        q = q.where(table.c[k] == v)
    with store.engine.connect() as c:
        return int(c.scalar(q))


def test_a_replayed_batch_inserts_nothing_twice(store):
    store.devices.add_device("d1")
    e1, e2 = uuid.uuid4().hex, uuid.uuid4().hex
    batch = BatchIn("d1", 1, [rec(1, "event", start(e1)), rec(2, "event_end", end(e1)), rec(3, "event", start(e2)),
                              rec(4, "alert", AlertIn("distress", ["glass_break"], 1, 2, [e1, e2]))])
    first = store.ingest.commit([batch]).results[0]
    again = store.ingest.commit([batch]).results[0]
    assert (first.acked_seq, first.stored, first.duplicates) == (4, 4, 0)
    assert (again.acked_seq, again.stored, again.duplicates) == (4, 0, 4)
    assert count(store, events) == 2 and count(store, event_ends) == 1 and count(store, top_classes) == 3
    assert len(store.queries.list_alerts()) == 1


def test_records_past_the_watermark_that_were_stored_are_not_duplicated(store):
    """A gap the edge did not declare keeps the watermark; the replay after reconnect must still be a no-op."""
    store.devices.add_device("d1")
    ids = [uuid.uuid4().hex for _ in range(3)]
    late = BatchIn("d1", 1, [rec(3, "event", start(ids[2]))])  # seq 1..2 not seen, not declared dropped
    assert store.ingest.commit([late]).results[0].acked_seq == 0
    replay = BatchIn("d1", 1, [rec(1, "event", start(ids[0])), rec(2, "event", start(ids[1])),
                               rec(3, "event", start(ids[2]))])
    assert store.ingest.commit([replay]).results[0].acked_seq == 3
    assert count(store, events) == 3


def test_seqs_below_low_water_count_as_settled(store):
    """The edge's bounded outbox dropped seqs 1-9: the batch starts at 10 with low_water 10 and is acked."""
    store.devices.add_device("d1")
    r = store.ingest.commit([BatchIn("d1", 10, [rec(10, "event", start(uuid.uuid4().hex)),
                                                rec(11, "event", start(uuid.uuid4().hex))])]).results[0]
    assert r.acked_seq == 11
    assert store.devices.watermark("d1") == 11


def test_an_end_completes_its_event_and_its_classes_win(store):
    store.devices.add_device("d1")
    eid = uuid.uuid4().hex
    store.ingest.commit([BatchIn("d1", 1, [rec(1, "event", start(eid))])])
    [open_] = store.queries.list_events(EventFilter())
    assert open_.end_ns is None and open_.classes == CLASSES and open_.score == pytest.approx(0.6)
    store.ingest.commit([BatchIn("d1", 2, [rec(2, "event_end", end(eid))])])
    [done] = store.queries.list_events(EventFilter())
    assert done.seq == 1 and done.end_ns == 10**18 + 700_000_000 and done.score == pytest.approx(0.9)
    assert done.classes[0] == ("Shatter", pytest.approx(0.9))


def test_an_end_whose_start_was_dropped_creates_the_event(store):
    store.devices.add_device("d1")
    eid = uuid.uuid4().hex
    store.ingest.commit([BatchIn("d1", 7, [rec(7, "event_end", end(eid))])])
    [e] = store.queries.list_events(EventFilter())
    assert (e.seq, e.event_id, e.end_ns is not None) == (7, eid, True)


def test_distress_ends_get_a_verification_job_and_others_do_not(store):
    store.devices.add_device("d1")
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    store.ingest.commit([BatchIn("d1", 1, [rec(1, "event_end", end(a, "glass_break")),
                                           rec(2, "event_end", end(b, "siren"))])])
    by_label = {e.label: e for e in store.queries.list_events(EventFilter())}
    assert by_label["glass_break"].verification.status == "pending"
    assert by_label["glass_break"].verification.reason == "distress"
    assert by_label["siren"].verification is None


def test_the_random_sample_is_decided_by_the_event_id_so_replays_agree(store):
    from cloud_svc.store.ingest import sampled

    ids = [uuid.uuid4().hex for _ in range(4000)]
    share = sum(sampled(i, 0.1) for i in ids) / len(ids)
    assert 0.08 < share < 0.12
    assert all(sampled(i, 0.1) == sampled(i, 0.1) for i in ids[:50])
    assert not any(sampled(i, 0.0) for i in ids)


def test_an_invalid_record_is_dead_lettered_and_settles_its_seq(store):
    store.devices.add_device("d1")
    r = store.ingest.commit([BatchIn("d1", 1, [rec(1, "reject", RejectIn("batch.records[0].event.label", "bad")),
                                               rec(2, "event", start(uuid.uuid4().hex))])]).results[0]
    assert r.acked_seq == 2
    assert count(store, rejects, device_id="d1") == 1 and count(store, events) == 1


def test_a_device_alert_links_the_events_it_names(store):
    store.devices.add_device("d1")
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    out = store.ingest.commit([BatchIn("d1", 1, [rec(1, "event", start(a)), rec(2, "event", start(b, "shout")),
                                                 rec(3, "alert", AlertIn("distress", ["glass_break", "shout"], 1, 2,
                                                                         [a, b], 52.5, 13.4))])])
    assert out.alerts == 1
    [al] = store.queries.list_alerts()
    assert al.kind == "device" and al.device_id == "d1" and {x.event_id for x in al.events} == {a, b}


def test_heartbeats_record_health_and_time(store):
    store.devices.add_device("d1")
    store.devices.add_device("d2")
    store.ingest.commit([], [HeartbeatIn("d1", time.time_ns(), 3, 0, {"rtf": 40.0}, {"backend": "tflite"}),
                             HeartbeatIn("d2", time.time_ns(), 3, 5, {"outbox_dropped": 5.0}, {})])
    devs = {d.device_id: d for d in store.queries.list_devices()}
    assert devs["d1"].health == "ok" and devs["d1"].figures["rtf"] == 40.0 and devs["d1"].info["backend"] == "tflite"
    assert devs["d2"].health == "degraded"


def test_concurrent_commits_for_one_device_store_each_seq_once(store):
    """Two replicas committing the same device's replayed batches at once: the device row lock serializes them."""
    store.devices.add_device("d1")
    ids = [uuid.uuid4().hex for _ in range(200)]
    batch = BatchIn("d1", 1, [rec(i + 1, "event", start(ids[i])) for i in range(200)])
    errors = []

    def go():
        try:
            store.ingest.commit([batch])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert count(store, events) == 200 and store.devices.watermark("d1") == 200


def test_verification_rows_are_unique_per_event(store):
    store.devices.add_device("d1")
    eid = uuid.uuid4().hex
    b = BatchIn("d1", 1, [rec(1, "event_end", end(eid))])
    store.ingest.commit([b])
    with store.engine.begin() as c:  # a replica that lost its watermark would insert again: ignored
        c.execute(sa.update(sa.table("devices", sa.column("acked_seq"))).values(acked_seq=0))
    store.ingest.commit([b])
    assert count(store, verifications) == 1 and count(store, events) == 1


def test_a_rolled_back_commit_teaches_the_pk_cache_nothing(store, monkeypatch):
    from cloud_svc.sqlbulk import BulkWriter

    store.devices.add_device("d1")
    eid = uuid.uuid4().hex

    def failing(self, conn, table, *a, **kw):  # the last statement of a commit, after the events are in
        raise sa.exc.OperationalError("UPDATE devices", None, Exception("simulated outage"))

    with monkeypatch.context() as m:
        m.setattr(BulkWriter, "update_by_key", failing)
        with pytest.raises(StorageUnavailable, match="simulated outage"):
            store.ingest.commit([BatchIn("d1", 1, [rec(1, "event", start(eid))])])
    assert count(store, events) == 0  # rolled back

    # Only the end comes now (its start is lost): a pk remembered from the rolled-back insert would point at
    # no row, and the end would be dropped; the event must instead be created from its end.
    store.ingest.commit([BatchIn("d1", 2, [rec(2, "event_end", end(eid))])])
    store.ingest.commit([BatchIn("d1", 1, [rec(3, "event", start(eid2 := uuid.uuid4().hex))])])
    store.ingest.commit([BatchIn("d1", 1, [rec(4, "event_end", end(eid2))])])  # its pk comes from the cache
    with store.engine.connect() as c:
        rows = c.execute(sa.select(events.c.id, events.c.event_id, event_ends.c.seq)
                         .join(event_ends, event_ends.c.event_pk == events.c.id).order_by(event_ends.c.seq)).all()
    assert [(r.event_id, r.seq) for r in rows] == [(eid, 2), (eid2, 4)]
    assert count(store, events) == 2 and count(store, top_classes) == 3


def test_without_insert_returning_as_on_mysql_the_pks_are_looked_up(store, monkeypatch):
    from cloud_svc.sqlbulk import BulkWriter

    monkeypatch.setattr(BulkWriter, "returning_supported", staticmethod(lambda conn: False))
    store.devices.add_device("d1")
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    store.ingest.commit([BatchIn("d1", 1, [rec(1, "event", start(a)), rec(2, "event", start(b))])])
    store.ingest.commit([BatchIn("d1", 1, [rec(3, "event_end", end(a)), rec(4, "event_end", end(b))])])
    with store.engine.connect() as c:
        rows = c.execute(sa.select(events.c.event_id, event_ends.c.seq)
                         .join(event_ends, event_ends.c.event_pk == events.c.id).order_by(event_ends.c.seq)).all()
    assert [tuple(r) for r in rows] == [(a, 3), (b, 4)] and count(store, top_classes) == 4

"""The store's read models: event filters, verification agreement, clip lookup (SQLite and MariaDB)."""
from __future__ import annotations

import uuid

import pytest
from store_records import end, rec, start

from cloud_svc.domain import BatchIn, BBox, ClipIn, EventFilter, Verified, VerifyResult
from cloud_svc.errors import NotFound


def test_list_events_filters_by_label_device_time_box_and_verification(store):
    store.devices.add_device("d1")
    store.devices.add_device("d2")
    t0 = 10**18
    e = [uuid.uuid4().hex for _ in range(4)]
    store.ingest.commit([
        BatchIn("d1", 1, [rec(1, "event_end", end(e[0], "glass_break", t0)),
                          rec(2, "event", start(e[1], "siren", t0 + 5 * 10**9, lat=10.0, lon=179.5))]),
        BatchIn("d2", 1, [rec(1, "event", start(e[2], "siren", t0 + 9 * 10**9, lat=10.0, lon=-179.5)),
                          rec(2, "event", start(e[3], "dog_bark", t0 + 20 * 10**9, lat=None, lon=None))]),
    ])

    def ids(**kw):
        return {x.event_id for x in store.queries.list_events(EventFilter(**kw))}

    assert ids() == set(e)
    assert ids(labels=["siren"]) == {e[1], e[2]}
    assert ids(device_ids=["d2"]) == {e[2], e[3]}
    assert ids(start_ns=t0 + 1, end_ns=t0 + 10 * 10**9) == {e[1], e[2]}
    assert ids(bbox=BBox(9.0, 179.0, 11.0, -179.0)) == {e[1], e[2]}  # across the antimeridian
    assert ids(bbox=BBox(52.0, 13.0, 53.0, 14.0)) == {e[0]}
    assert ids(verified=Verified.PENDING) == {e[0]}
    assert ids(verified=Verified.NONE) == {e[1], e[2], e[3]}
    [job] = store.jobs.claim_jobs("w", 5, 60, 3)
    store.jobs.finish_job(job, VerifyResult("yamnet", ["siren"], {"glass_break": 0.1, "siren": 0.8}, False))
    assert ids(verified=Verified.DISAGREE) == {e[0]} and ids(verified=Verified.AGREE) == set()
    page = store.queries.list_events(EventFilter(limit=2))
    assert len(page) == 2 and ids(after_id=page[-1].id) == set(e) - {x.event_id for x in page}


def test_agreement_rate_per_label(store):
    store.devices.add_device("d1")
    ids = [uuid.uuid4().hex for _ in range(4)]
    store.ingest.commit([BatchIn("d1", 1, [rec(i + 1, "event_end", end(x, "glass_break" if i < 3 else "scream"))
                                           for i, x in enumerate(ids)])])
    for j in store.jobs.claim_jobs("w", 10, 60, 3):
        store.jobs.finish_job(j, VerifyResult("yamnet", [], {}, j.event_id != ids[0]))
    rates = {a.label: (a.verified, a.agreed, round(a.rate, 3)) for a in store.queries.agreement()}
    assert rates == {"glass_break": (3, 2, 0.667), "scream": (1, 1, 1.0)}


def test_clip_metadata_is_found_by_seq_or_event_id(store):
    store.devices.add_device("d1")
    eid = uuid.uuid4().hex
    clip = ClipIn("flac", 16000, 5, 1.0, "c" * 64, 1234)
    store.ingest.commit([BatchIn("d1", 1, [rec(1, "event", start(eid)), rec(2, "event_end", end(eid, clip=clip))])])
    assert store.queries.get_clip("d1", seq=1).sha256 == "c" * 64
    assert store.queries.get_clip("d1", event_id=eid).size == 1234
    with pytest.raises(NotFound):
        store.queries.get_clip("d1", seq=99)

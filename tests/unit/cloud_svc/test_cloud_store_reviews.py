"""The dashboard's writes and their read models: reviews (who, when, latest wins), per-device pushed thresholds,
and the thinned health history (SQLite and MariaDB)."""
from __future__ import annotations

import uuid

import pytest
from store_records import rec, start

from cloud_svc.domain import BatchIn, ClipIn, EventFilter, HeartbeatIn
from cloud_svc.errors import InvalidMessage, NotFound
from cloud_svc.store.devices import DEVICE_VERSION_BASE


def _events(store, n=2):
    store.devices.add_device("d1")
    ids = [uuid.uuid4().hex for _ in range(n)]
    clip = ClipIn("flac", 16000, 10**18, 1.0, "cd" * 32, 1234)
    store.ingest.commit([BatchIn("d1", 1, [rec(i + 1, "event", start(e, "shout", 10**18 + i))
                                           for i, e in enumerate(ids)])])
    pks = {e.event_id: e.id for e in store.queries.list_events(EventFilter())}
    return [pks[e] for e in ids], clip


def test_a_review_is_stored_with_who_and_when_and_the_latest_one_counts(store):
    (pk, other), _ = _events(store)
    first = store.reviews.add(pk, "false_alarm", "ann")
    second = store.reviews.add(pk, "wrong_label", "bob", label="scream", note="a child playing")
    assert (first.reviewer, first.decision, first.label) == ("ann", "false_alarm", None)
    assert second.created_ns >= first.created_ns > 0
    assert [r.decision for r in store.reviews.history(pk)] == ["false_alarm", "wrong_label"]
    latest = store.reviews.latest([pk, other])
    assert set(latest) == {pk} and latest[pk].label == "scream" and latest[pk].reviewer == "bob"


@pytest.mark.parametrize("kw, field", [
    ({"decision": "maybe"}, "decision"),
    ({"decision": "real", "reviewer": " "}, "reviewer"),
    ({"decision": "wrong_label"}, "label"),
    ({"decision": "wrong_label", "label": "kazoo"}, "label"),
])
def test_a_bad_review_is_refused_naming_the_field_and_nothing_is_stored(store, kw, field):
    (pk, _), _ = _events(store)
    args = {"reviewer": "ann", **kw}
    with pytest.raises(InvalidMessage) as err:
        store.reviews.add(pk, args.pop("decision"), args.pop("reviewer"), **args)
    assert err.value.field == field
    assert store.reviews.history(pk) == []


def test_reviewing_an_event_that_does_not_exist_is_not_found(store):
    with pytest.raises(NotFound, match="no event 12345"):
        store.reviews.add(12345, "real", "ann")


def test_per_device_thresholds_get_growing_versions_above_the_cloud_wide_ones(store):
    store.devices.add_device("d1")
    assert store.devices.config_for("d1") is None
    a = store.devices.set_config("d1", {"shout": 0.8}, "ann")
    b = store.devices.set_config("d1", {"shout": 0.7, "scream": 0.6}, "bob")
    assert DEVICE_VERSION_BASE < a.version < b.version
    got = store.devices.config_for("d1")
    assert got is not None and got.thresholds == {"shout": 0.7, "scream": 0.6} and got.set_by == "bob"
    with pytest.raises(NotFound):
        store.devices.set_config("nobody", {"shout": 0.5}, "ann")


def test_heartbeats_leave_a_health_history_thinned_to_one_sample_per_interval(db_url):
    from cloud_svc.store import Store

    s = Store.open(db_url, health_sample_s=3600.0)
    try:
        s.devices.add_device("d1")
        for i in range(3):
            s.ingest.commit([], [HeartbeatIn("d1", 10**18 + i, 5 + i, 0, {"rtf": 100.0 + i})])
        history = s.queries.health_history(["d1"])
        assert [h.figures["rtf"] for h in history["d1"]] == [100.0]  # the 2nd and 3rd fell in the same hour
        s.ingest.health_sample_ns = 0
        s.ingest.commit([], [HeartbeatIn("d1", 10**18 + 9, 9, 0, {"rtf": 150.0})])
        history = s.queries.health_history(["d1"])
        assert [h.figures["rtf"] for h in history["d1"]] == [100.0, 150.0]
        assert [h.outbox_depth for h in history["d1"]] == [5, 9]
    finally:
        s.close()

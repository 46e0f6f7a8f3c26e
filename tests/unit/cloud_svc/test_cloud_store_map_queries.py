"""The dashboard's read models: grid clusters that add up to the filter's count, paging and sorting, review
filters, timeline buckets, review agreement and false alarms per device (SQLite and MariaDB)."""
from __future__ import annotations

import uuid

from store_records import rec, start

from cloud_svc.domain import BatchIn, EventFilter, Reviewed

T0 = 1_700_000_000 * 10**9


def _seed(store):
    store.devices.add_devices(["berlin", "paris"])
    spots = {"berlin": (52.52, 13.405), "paris": (48.857, 2.352)}
    batches = []
    for dev, (lat, lon) in spots.items():
        recs = []
        for i in range(6):
            label = ["shout", "siren", "glass_break"][i % 3]
            recs.append(rec(i + 1, "event", start(uuid.uuid4().hex, label, T0 + i * 3600 * 10**9,
                                                  lat=lat + i * 1e-4, lon=lon)))
        batches.append(BatchIn(dev, 1, recs))
    batches.append(BatchIn("paris", 1, [rec(7, "event", start(uuid.uuid4().hex, "shout", T0, lat=None, lon=None))]))
    store.ingest.commit(batches)
    return {e.id: e for e in store.queries.list_events(EventFilter())}


def test_map_cells_add_up_to_the_filtered_count_and_split_with_zoom(store):
    evs = _seed(store)
    q = store.queries
    cells, missing = q.map_cells(EventFilter(), 10.0, ["shout", "glass_break"])
    assert sum(c.count for c in cells) + missing == q.count_matching(EventFilter()) == len(evs) == 13
    assert missing == 1
    assert len(cells) == 2  # Berlin and Paris are in different 10-degree cells
    berlin = next(c for c in cells if c.lat > 50)
    assert berlin.count == 6 and berlin.distress == 4 and berlin.labels == {"shout": 2, "siren": 2, "glass_break": 2}
    assert abs(berlin.lon - 13.405) < 1e-9
    world, _ = q.map_cells(EventFilter(), 90.0)
    assert [c.count for c in world] == [12]
    fine, _ = q.map_cells(EventFilter(), 1e-5)
    assert len(fine) == 12 and all(c.count == 1 for c in fine)
    assert {c.event_pk for c in fine} <= set(evs)
    shouts, missing = q.map_cells(EventFilter(labels=["shout"], device_ids=["paris"]), 10.0)
    assert [c.count for c in shouts] == [2] and missing == 1


def test_events_sort_page_and_filter_by_review(store):
    evs = _seed(store)
    q = store.queries
    by_time = q.list_events(EventFilter(order="start_ns", descending=True, limit=5, offset=0))
    assert [e.start_ns for e in by_time] == sorted((e.start_ns for e in evs.values()), reverse=True)[:5]
    page2 = q.list_events(EventFilter(order="start_ns", descending=True, limit=5, offset=5))
    assert not {e.id for e in by_time} & {e.id for e in page2}
    a, b, c = sorted(evs)[:3]
    store.reviews.add(a, "false_alarm", "ann")
    store.reviews.add(b, "real", "ann")
    store.reviews.add(b, "false_alarm", "bob")  # a changed mind: the latest counts
    store.reviews.add(c, "wrong_label", "ann", label="scream")

    def ids(r):
        f = EventFilter(reviewed=r)
        got = {e.id for e in q.list_events(f)}
        assert q.count_matching(f) == len(got)
        return got

    assert ids(Reviewed.FALSE_ALARM) == {a, b}
    assert ids(Reviewed.WRONG_LABEL) == {c}
    assert ids(Reviewed.REVIEWED) == {a, b, c}
    assert ids(Reviewed.NONE) == set(evs) - {a, b, c}
    assert q.get_event(b).review.reviewer == "bob"
    per_label = {x.label: x for x in q.review_stats(EventFilter())}
    assert sum(x.reviewed for x in per_label.values()) == 3
    assert sum(x.false_alarm for x in per_label.values()) == 2
    per_device = {x.device_id: x for x in q.false_alarms_by_device(EventFilter())}
    assert sum(x.events for x in per_device.values()) == 13
    assert sum(x.false_alarms for x in per_device.values()) == 2


def test_timeline_buckets_count_each_event_once(store):
    _seed(store)
    rows = store.queries.timeline(EventFilter(), 7200)
    assert sum(n for _, _, n in rows) == 13
    assert all(t % (7200 * 10**9) == 0 for t, _, _ in rows)
    assert {t for t, _, _ in rows} == {T0 - T0 % (7200 * 10**9) + k * 7200 * 10**9 for k in range(3)} | {
        T0 - T0 % (7200 * 10**9)}


def test_review_stats_and_false_alarms_in_a_window_count_only_its_events(store):
    evs = _seed(store)
    q = store.queries
    for pk, e in evs.items():  # every event reviewed; a changed mind on each early one
        store.reviews.add(pk, "real", "ann")
        if e.start_ns < T0 + 2 * 3600 * 10**9:
            store.reviews.add(pk, "false_alarm", "bob")
    lo, hi = T0 + 3600 * 10**9, T0 + 4 * 3600 * 10**9  # hours 1, 2 and 3 of each device
    inside = [e for e in evs.values() if lo <= e.start_ns < hi]
    f = EventFilter(start_ns=lo, end_ns=hi)
    per_label = {x.label: x for x in q.review_stats(f)}  # the window-first join order (STRAIGHT_JOIN on MariaDB)
    assert {lb: x.reviewed for lb, x in per_label.items()} == {
        lb: sum(1 for e in inside if e.label == lb) for lb in {e.label for e in inside}}
    early = sum(1 for e in inside if e.start_ns < T0 + 2 * 3600 * 10**9)
    assert sum(x.false_alarm for x in per_label.values()) == early
    assert sum(x.real for x in per_label.values()) == len(inside) - early
    per_device = {x.device_id: (x.events, x.reviewed, x.false_alarms) for x in q.false_alarms_by_device(f)}
    assert per_device == {d: (3, 3, 1) for d in ("berlin", "paris")}

"""Fleet correlation: the grid index and the correlator that turns nearby same-label events into one alert."""
from __future__ import annotations

import time
import uuid

import pytest

from cloud_svc.domain import BatchIn, EventIn, RecordIn
from cloud_svc.fleet import FleetIndex, Placed, haversine_m

R, T = 500.0, 10.0
NOW = time.time_ns()


def placed(pk, device, lat, lon, dt_s=0.0, label="glass_break") -> Placed:
    return Placed(pk, device, label, NOW + int(dt_s * 1e9), lat, lon, NOW)


@pytest.mark.parametrize("lat,lon,dlat_m,dlon_m", [(52.52, 13.40, 300, 300), (0.0, 179.999, 0, 400),
                                                   (-33.9, 151.2, -450, 0), (89.99, 10.0, 0, 200)])
def test_neighbours_within_the_radius_are_found_across_cell_edges(lat, lon, dlat_m, dlon_m):
    ix = FleetIndex(R, T, 60)
    lat2 = lat + dlat_m / 111_320
    lon2 = (lon + dlon_m / (111_320 * max(1e-6, abs(__import__("math").cos(__import__("math").radians(lat))))) + 180) \
        % 360 - 180
    other = placed(1, "b", lat2, lon2)
    assert haversine_m(lat, lon, lat2, lon2) <= R
    ix.add(other)
    assert ix.neighbours(placed(2, "a", lat, lon)) == [other]


def test_far_late_same_device_or_other_label_events_are_not_neighbours():
    ix = FleetIndex(R, T, 60)
    ix.add(placed(1, "b", 52.52 + 0.01, 13.40))             # 1.1 km away
    ix.add(placed(2, "c", 52.52, 13.40, dt_s=11))           # 11 s later
    ix.add(placed(3, "a", 52.52, 13.40))                    # the same device
    ix.add(placed(4, "d", 52.52, 13.40, label="siren"))     # another label
    assert ix.neighbours(placed(5, "a", 52.52, 13.40)) == []


def test_pruning_forgets_events_older_than_the_horizon():
    ix = FleetIndex(R, T, 60)
    ix.add(placed(1, "b", 1.0, 1.0))
    ix.prune(NOW + int(61e9))
    assert ix.size() == 0


def _start(eid, label, lat, lon, t):
    return EventIn(eid, label, t, None, 0.8, [("Glass", 0.8)], lat, lon)


def test_two_devices_hearing_the_same_label_nearby_make_one_fleet_alert(store):
    for d in ("a", "b", "c", "far"):
        store.devices.add_device(d)
    t = time.time_ns()
    store.ingest.commit([
        BatchIn("a", 1, [RecordIn(1, t, "event", _start(uuid.uuid4().hex, "glass_break", 52.5200, 13.4000, t))]),
        BatchIn("b", 1, [
            RecordIn(1, t, "event", _start(uuid.uuid4().hex, "glass_break", 52.5210, 13.4010, t + 10**9))]),
        BatchIn("c", 1, [
            RecordIn(1, t, "event", _start(uuid.uuid4().hex, "glass_break", 52.5205, 13.4005, t + 3 * 10**9)),
            RecordIn(2, t, "event", _start(uuid.uuid4().hex, "siren", 52.5205, 13.4005, t))]),
        BatchIn("far", 1, [RecordIn(1, t, "event", _start(uuid.uuid4().hex, "glass_break", 48.0, 11.0, t))]),
    ])
    ix = FleetIndex(R, T, 60)
    assert store.fleet.correlate(ix, settle_s=0.0)
    alerts = store.queries.list_alerts(kind="fleet")
    assert len(alerts) == 1
    a = alerts[0]
    assert a.labels == ["glass_break"] and a.device_count == 3
    assert sorted(e.device_id for e in a.events) == ["a", "b", "c"]
    # nothing new: nothing more
    assert store.fleet.correlate(ix, settle_s=0.0) == []
    assert len(store.queries.list_alerts(kind="fleet")) == 1


def test_a_restarted_correlator_links_new_events_to_the_existing_alert(store):
    for d in ("a", "b", "c"):
        store.devices.add_device(d)
    t = time.time_ns()
    store.ingest.commit([BatchIn("a", 1, [RecordIn(1, t, "event", _start(uuid.uuid4().hex, "gunshot", 1.0, 1.0, t))]),
                         BatchIn("b", 1, [RecordIn(1, t, "event",
                                                   _start(uuid.uuid4().hex, "gunshot", 1.001, 1.0, t))])])
    store.fleet.correlate(FleetIndex(R, T, 60), settle_s=0.0)
    store.ingest.commit([BatchIn("c", 1, [RecordIn(1, t, "event",
                                                   _start(uuid.uuid4().hex, "gunshot", 1.0, 1.001, t))])])
    fresh = FleetIndex(R, T, 60)  # a new process: warms up from the database
    store.fleet.correlate(fresh, settle_s=0.0)
    [a] = store.queries.list_alerts(kind="fleet")
    assert a.device_count == 3


def test_events_younger_than_the_settle_time_wait(store):
    for d in ("a", "b"):
        store.devices.add_device(d)
    t = time.time_ns()
    store.ingest.commit([BatchIn("a", 1, [RecordIn(1, t, "event", _start(uuid.uuid4().hex, "scream", 1.0, 1.0, t))]),
                         BatchIn("b", 1, [RecordIn(1, t, "event", _start(uuid.uuid4().hex, "scream", 1.0, 1.0, t))])])
    ix = FleetIndex(R, T, 60)
    assert store.fleet.correlate(ix, settle_s=30.0) == [] and ix.seen_id == 0
    assert store.fleet.correlate(ix, settle_s=0.0)


def test_a_correlator_that_loses_the_cursor_mid_step_starts_over_and_skips_nothing(store, monkeypatch):
    """Two correlators on one database: while one plans (on SQLite without the write lock), the other moves the
    cursor past only some of the events. The first must not write, and must not remember that it has seen the
    rest, or those would never be linked."""
    import sqlalchemy as sa

    from cloud_svc.schema import cursors

    for d in ("a", "b", "c", "d"):
        store.devices.add_device(d)
    t = time.time_ns()
    store.ingest.commit([BatchIn("a", 1, [RecordIn(1, t, "event", _start(uuid.uuid4().hex, "gunshot", 1.0, 1.0, t))]),
                         BatchIn("b", 1, [RecordIn(1, t, "event", _start(uuid.uuid4().hex, "gunshot", 1.0, 1.0, t))])])
    first_two = store.fleet.correlate(FleetIndex(R, T, 60), settle_s=0.0)  # the other correlator's earlier work
    assert len(first_two) == 1
    store.ingest.commit([BatchIn("c", 1, [RecordIn(1, t, "event", _start(uuid.uuid4().hex, "siren", 5.0, 5.0, t))]),
                         BatchIn("d", 1, [RecordIn(1, t, "event", _start(uuid.uuid4().hex, "siren", 5.0, 5.0, t))])])
    with store.engine.begin() as c:
        pos = c.scalar(sa.select(cursors.c.value))
    real_plan = type(store.fleet)._plan_links

    def plan_then_lose_the_race(self, *a, **kw):
        plan = real_plan(self, *a, **kw)
        with self.db.engine.begin() as c:  # the other correlator links the siren pair's first event only
            c.execute(cursors.update().values(value=pos + 1))
        return plan

    ix = FleetIndex(R, T, 60)
    ix.seen_id = pos  # it has seen what the other one saw
    if store.sqlite:  # MySQL's row lock makes this interleaving impossible there
        monkeypatch.setattr(type(store.fleet), "_plan_links", plan_then_lose_the_race)
        assert store.fleet.correlate(ix, settle_s=0.0) == []
        assert ix.seen_id == 0 and ix.size() == 0  # starts over from the stored cursor
        monkeypatch.undo()
        [siren] = store.fleet.correlate(ix, settle_s=0.0)  # and still links the pair across the cursor
        assert {a.id for a in store.queries.list_alerts(kind="fleet")} == {first_two[0], siren}
        with store.engine.begin() as c:
            assert c.scalar(sa.select(cursors.c.value)) == pos + 2
    else:
        assert store.fleet.correlate(ix, settle_s=0.0)

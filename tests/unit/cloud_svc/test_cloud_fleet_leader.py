"""One fleet correlator leads per database on MySQL: two servers' correlators over one MariaDB database, one
linking events and moving the cursor, the other following until the leader hands over or its lease runs out.
(Correlators on different Galera nodes racing for the lead: tests/system/test_galera_store.py.)"""
from __future__ import annotations

import time
import uuid

import pytest
import sqlalchemy as sa

from cloud_svc.domain import BatchIn, EventIn, RecordIn
from cloud_svc.fleet import FleetIndex, FleetStore
from cloud_svc.schema import cursors
from cloud_svc.store import Store
from support import wipe

R, T = 500.0, 10.0
_seq: dict[str, int] = {}


@pytest.fixture
def two_servers(_mariadb_session):
    """Two stores over one migrated, empty MariaDB database, as two `serve` processes would have."""
    a = Store.open(_mariadb_session.url)
    wipe(a.engine)
    b = Store.open(_mariadb_session.url)
    _seq.clear()
    yield a, b
    a.close()
    b.close()


def _pair_hears(store: Store, where: float, label: str = "gunshot") -> None:
    """Two devices `where` degrees east (far from any other pair) hear `label` at the same moment."""
    t = time.time_ns()
    batches = []
    for k in (0, 1):
        d = f"dev-{where:g}-{k}"
        if d not in _seq:
            store.devices.add_device(d)
            _seq[d] = 0
        _seq[d] += 1
        e = EventIn(uuid.uuid4().hex, label, t, None, 0.9, [("Gunshot, gunfire", 0.9)], 10.0, where + k * 1e-4)
        batches.append(BatchIn(d, _seq[d], [RecordIn(_seq[d], t, "event", e)]))
    store.ingest.commit(batches)


def _cursor(store: Store) -> int:
    with store.engine.connect() as c:
        return int(c.scalar(sa.select(cursors.c.value).where(cursors.c.name == "fleet")))


def _fleet_alerts(store: Store) -> int:
    return len(store.queries.list_alerts(kind="fleet"))


def test_the_second_server_follows_while_the_first_leads_and_takes_over_when_it_hands_over(two_servers):
    a, b = two_servers
    ia, ib = FleetIndex(R, T, 60), FleetIndex(R, T, 60)
    _pair_hears(a, 1.0)
    assert len(a.fleet.correlate(ia, settle_s=0.0)) == 1
    assert b.fleet.correlate(ib, settle_s=0.0) == []      # a leads: b only reads up to the cursor
    assert ib.seen_id == _cursor(a) == ia.seen_id and ib.size() == 2

    _pair_hears(b, 2.0)
    assert b.fleet.correlate(ib, settle_s=0.0) == [] and _fleet_alerts(a) == 1
    assert len(a.fleet.correlate(ia, settle_s=0.0)) == 1 and _fleet_alerts(a) == 2

    a.fleet.release()                                     # a clean stop hands the lead over at once
    _pair_hears(a, 3.0)
    assert len(b.fleet.correlate(ib, settle_s=0.0)) == 1 and _fleet_alerts(a) == 3
    _pair_hears(a, 4.0)
    assert a.fleet.correlate(ia, settle_s=0.0) == []      # now a follows
    assert len(b.fleet.correlate(ib, settle_s=0.0)) == 1
    assert _fleet_alerts(a) == 4 and _cursor(a) == ib.seen_id


def test_a_leader_that_stops_stepping_is_replaced_once_its_lease_runs_out(two_servers):
    a, b = two_servers
    fa = FleetStore(a.db, lease_s=0.5)
    ia, ib = FleetIndex(R, T, 60), FleetIndex(R, T, 60)
    _pair_hears(a, 1.0)
    assert len(fa.correlate(ia, settle_s=0.0)) == 1
    _pair_hears(a, 2.0)
    assert b.fleet.correlate(ib, settle_s=0.0) == []      # a's lease runs: b waits...
    time.sleep(0.6)
    assert len(b.fleet.correlate(ib, settle_s=0.0)) == 1  # ...and leads once a has not renewed it in time
    assert fa.correlate(ia, settle_s=0.0) == []           # the old leader, back, follows
    assert _fleet_alerts(a) == 2

"""The lease shared by the workers that run once per database (cloud_svc.store.lease): one holder at a time, taken
over once it runs out or is given back, and a fenced write of a holder that lost it rolls back."""
from __future__ import annotations

import time

import sqlalchemy as sa

from cloud_svc.schema import cursors
from cloud_svc.store.lease import Lease


def value(store, name: str) -> int:
    with store.engine.connect() as c:
        return int(c.scalar(sa.select(cursors.c.value).where(cursors.c.name == name)))


def test_one_holder_leads_until_it_gives_the_lease_back(store):
    a, b = Lease(store.db, "job:leader", 30), Lease(store.db, "job:leader", 30)
    assert a.hold() and not b.hold()
    assert a.hold() and a.token == value(store, "job:leader")   # kept without a write while it is fresh
    a.release()
    assert value(store, "job:leader") == 0 and a.token is None
    assert b.hold() and not a.hold()


def test_a_lease_that_ran_out_is_taken_and_its_old_holder_is_fenced_out(store):
    a, b = Lease(store.db, "job:leader", 0.3), Lease(store.db, "job:leader", 0.3)
    assert a.hold()
    time.sleep(0.4)                                  # a stalled past its lease
    assert b.hold()
    with store.db.write() as conn:                   # a's fenced write: nothing of it may commit
        assert a.fence(conn, time.time_ns()) is None
    with store.db.write() as conn:                   # b's commits, renewing the lease
        token = b.fence(conn, time.time_ns())
    b.committed(token)
    assert token is not None and value(store, "job:leader") == token
    assert not a.hold() and a.token is None


def test_a_holder_renews_once_half_of_its_lease_is_gone(store):
    a = Lease(store.db, "job:leader", 0.4)
    assert a.hold()
    first = a.token
    assert a.hold() and a.token == first             # more than half left: unchanged
    time.sleep(0.25)
    assert a.hold() and a.token > first              # renewed

"""The fleet correlator's storage: reads the new events in id order, holds the cursor, writes the fleet alerts."""
from __future__ import annotations

import logging
import time
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_svc.errors import WriteConflict
from cloud_svc.fleet.algorithm import M_PER_DEG_LAT, FleetIndex, Placed, haversine_m
from cloud_svc.schema import alert_events, alerts, cursors, events
from cloud_svc.store.base import Database
from cloud_svc.store.lease import LEASE_SUFFIX, Lease, cursor_value

log = logging.getLogger("cloud_svc.fleet")
LEASE_S = 10.0            # a leader that stops stepping (killed, cut off) is replaced this long after its last renewal


class _CursorMoved(Exception):
    """Raised inside a step's transaction (so it rolls back) when another correlator moved the cursor first."""


class FleetStore:
    """Correlation steps over the stored events; the caller keeps the in-memory FleetIndex between steps.

    One correlator leads per cursor and database, whichever server (or Galera node) each runs on: the leader
    links events past the cursor and moves it, the others only read the events up to the cursor into their own
    index, so that one of them can take over at once. Leadership is a lease (cloud_svc.store.lease: the row
    `<cursor>:leader` of `cursors`, whose value is its expiry in ns) taken and renewed by compare-and-set, and every
    advance of the cursor is a compare-and-set from the position the step started at, in the transaction that
    writes the step's fleet alerts: a second would-be leader's step therefore either fails Galera's certification
    (WriteConflict) or moves nothing, and rolls back whole.
    """

    def __init__(self, db: Database, *, lease_s: float = LEASE_S):
        self.db = db
        self.lease_s = lease_s
        self._leases: dict[str, Lease] = {}  # cursor -> this store's view of its lease

    def _lease(self, cursor: str) -> Lease:
        if cursor not in self._leases:
            self._leases[cursor] = Lease(self.db, cursor + LEASE_SUFFIX, self.lease_s)
        return self._leases[cursor]

    def correlate(self, index: FleetIndex, *, min_devices: int = 2, batch: int = 5000, settle_s: float = 2.0,
                  cursor: str = "fleet") -> list[int]:
        """Read the events stored since the last call, in id order, and link events of one label heard by
        >= min_devices devices within the index's radius and window into fleet alerts. Returns the alert ids
        created or extended (none when another correlator leads).

        Events younger than `settle_s` wait for the next call, so a transaction that took a smaller id but
        committed later is not skipped. A step that lost the cursor to another correlator, or failed, makes the
        index start over from the stored cursor on the next step, so no event is skipped. On SQLite, whose
        writers lock the whole database, the events are read outside the write lock (see `_correlate_sqlite`).
        """
        if self.db.sqlite:
            return self._correlate_sqlite(index, min_devices, batch, settle_s, cursor)
        now = time.time_ns()
        before = index.seen_id
        lease: Optional[int] = None
        try:
            with self.db.write() as conn:
                pos, lease = self._lead(conn, self._lease(cursor), cursor, now)
                plan = self._plan_links(conn, index, pos, lease is not None, now, min_devices, batch, settle_s)
                touched = {self._link_fleet(conn, p, near) for p, near in plan}
                if lease is not None and index.seen_id > pos:
                    moved = conn.execute(cursors.update().where(cursors.c.name == cursor, cursors.c.value == pos)
                                         .values(value=index.seen_id))
                    if moved.rowcount != 1:
                        raise _CursorMoved(f"cursor {cursor!r} is no longer at {pos}")
        except (WriteConflict, _CursorMoved) as exc:  # another correlator led this step: follow its cursor
            # The lease this store holds is unchanged: the next step finds in the lease row whether it still leads.
            log.info("fleet correlator: another correlator went first (%s); following its cursor", exc)
            index.reset()
            return []
        except BaseException:
            if index.seen_id != before:
                index.reset()
            raise
        if lease is not None:
            self._lease(cursor).committed(lease)
        return sorted(touched)

    def release(self, cursor: str = "fleet") -> None:
        """Give up the lease this store holds (a clean stop), so another correlator takes over at its next step."""
        lease = self._leases.pop(cursor, None)
        if lease is not None:
            lease.release()

    def _lead(self, conn: Connection, lease: Lease, cursor: str, now: int) -> tuple[int, Optional[int]]:
        """(the cursor's position, the lease token this store holds for the step, or None when it follows).

        Followers only read, without locks, so that the leader's writes (from another Galera node) never abort
        their transactions. A candidate (the holder, or anyone once the lease expired) locks the cursor row with
        SKIP LOCKED, which keeps correlators on one server or node apart, then renews or takes the lease by
        compare-and-set; across nodes, the certification of those writes lets only one of two candidates commit.
        """
        held = lease.candidate(conn, now)
        pos = self._cursor(conn, cursor, create=True)
        assert pos is not None  # created above
        if held is None:
            return pos, None  # another correlator's lease runs
        locked = self._cursor(conn, cursor, skip_locked=True)
        if locked is None:
            return pos, None  # another correlator on this node is in a step
        token = lease.take(conn, held, now)
        return (locked, token) if token is not None else (pos, None)

    def _correlate_sqlite(self, index: FleetIndex, min_devices: int, batch: int, settle_s: float,
                          cursor: str) -> list[int]:
        """The same step with the reading and planning in a read transaction (WAL readers do not block the
        ingest committers) and only the links and the cursor in a short write transaction. If the cursor moved
        in between (another process correlates this file too), or the write fails, the index starts over from
        the stored cursor on the next step, so no event is skipped."""
        now = time.time_ns()
        with self.db.read() as conn:
            pos = self._cursor(conn, cursor) or 0
            before = index.seen_id
            plan = self._plan_links(conn, index, pos, True, now, min_devices, batch, settle_s)
        if not plan and index.seen_id <= pos:
            return []
        try:
            with self.db.write() as conn:
                if self._cursor(conn, cursor, create=True) != pos:
                    index.reset()  # someone else went on from here: follow their cursor
                    return []
                touched = {self._link_fleet(conn, p, near) for p, near in plan}
                if index.seen_id > pos:
                    conn.execute(cursors.update().where(cursors.c.name == cursor).values(value=index.seen_id))
        except BaseException:
            if index.seen_id != before:
                index.reset()
            raise
        return sorted(touched)

    def _cursor(self, conn: Connection, name: str, *, create: bool = False,
                skip_locked: bool = False) -> Optional[int]:
        """The cursor's value (see cloud_svc.store.lease.cursor_value); None when skip_locked finds the row held
        by another correlator."""
        return cursor_value(self.db, conn, name, create=create, skip_locked=skip_locked)

    def _plan_links(self, conn: Connection, index: FleetIndex, pos: int, mine: bool, now: int, min_devices: int,
                    batch: int, settle_s: float) -> list[tuple[Placed, list[Placed]]]:
        """Add the settled new events to the index; for those beyond the cursor (when this correlator holds it)
        return each that completes a group with its neighbours, in id order."""
        e = events
        settled = now - int(settle_s * 1e9)
        if index.seen_id == 0 and pos:
            self._warm(conn, index, pos, now)
        rows = conn.execute(
            sa.select(e.c.id, e.c.device_id, e.c.label, e.c.start_ns, e.c.lat, e.c.lon, e.c.received_ns)
            .where(e.c.id > min(index.seen_id, pos), *(() if mine else (e.c.id <= pos,)))
            .order_by(e.c.id).limit(batch)).all()
        plan = []
        seen = last = index.seen_id
        for pk, device_id, label, start_ns, lat, lon, received_ns in rows:  # plain tuples: this loop is hot
            if received_ns > settled:
                break
            last = pk
            if pk <= seen or lat is None or lon is None:
                continue
            p = Placed(pk, device_id, label, start_ns, lat, lon, received_ns)
            if mine and pk > pos:
                near = index.neighbours(p) if index.covers(p, now) else self._near_in_db(conn, index, p)
                if near and len({c.device_id for c in near} | {device_id}) >= min_devices:
                    plan.append((p, near))
            index.add(p)
        index.seen_id = max(index.seen_id, last)
        return plan

    @staticmethod
    def _warm(conn: Connection, index: FleetIndex, pos: int, now: int) -> None:
        """After a restart: remember the recent events that earlier runs already correlated."""
        e = events
        for r in conn.execute(sa.select(e.c.id, e.c.device_id, e.c.label, e.c.start_ns, e.c.lat, e.c.lon,
                                        e.c.received_ns)
                              .where(e.c.start_ns >= now - index.horizon_ns, e.c.id <= pos,
                                     e.c.lat.is_not(None), e.c.lon.is_not(None)).order_by(e.c.id)):
            index.add(Placed(r.id, r.device_id, r.label, r.start_ns, r.lat, r.lon, r.received_ns))
        index.seen_id = pos

    @staticmethod
    def _near_in_db(conn: Connection, index: FleetIndex, p: Placed) -> list[Placed]:
        """The slow path for a late event whose neighbours the index has forgotten."""
        e = events
        dlat = index.radius_m / M_PER_DEG_LAT
        rows = conn.execute(sa.select(e.c.id, e.c.device_id, e.c.label, e.c.start_ns, e.c.lat, e.c.lon,
                                      e.c.received_ns)
                            .where(e.c.label == p.label, e.c.device_id != p.device_id, e.c.id < p.pk,
                                   e.c.start_ns.between(p.start_ns - index.window_ns, p.start_ns + index.window_ns),
                                   e.c.lat.between(p.lat - dlat, p.lat + dlat), e.c.lon.is_not(None))).all()
        return [Placed(*r) for r in rows if haversine_m(p.lat, p.lon, r.lat, r.lon) <= index.radius_m]

    def _link_fleet(self, conn: Connection, p: Placed, near: list[Placed]) -> int:
        members = [p.pk] + [c.pk for c in near]
        aid = conn.scalar(sa.select(sa.func.min(alert_events.c.alert_id))
                          .join(alerts, alerts.c.id == alert_events.c.alert_id)
                          .where(alerts.c.kind == "fleet", alerts.c.label == p.label,
                                 alert_events.c.event_pk.in_(members)))
        if aid is None:
            res = conn.execute(alerts.insert().values(
                kind="fleet", rule="fleet", label=p.label, labels=[p.label], device_id=None, seq=None,
                start_ns=p.start_ns, end_ns=p.start_ns, device_count=0, event_ids=[],
                created_ns=time.time_ns()))
            assert res.inserted_primary_key is not None  # a single-row INSERT always has one
            aid = res.inserted_primary_key[0]
        conn.execute(self.db.insert_ignore(alert_events), [{"alert_id": aid, "event_pk": m} for m in members])
        self._refresh_fleet_alert(conn, aid)
        return aid

    @staticmethod
    def _refresh_fleet_alert(conn: Connection, alert_id: int) -> None:
        rows = conn.execute(sa.select(events.c.device_id, events.c.event_id, events.c.start_ns, events.c.lat,
                                      events.c.lon).join(alert_events, alert_events.c.event_pk == events.c.id)
                            .where(alert_events.c.alert_id == alert_id)).all()
        conn.execute(alerts.update().where(alerts.c.id == alert_id).values(
            start_ns=min(r.start_ns for r in rows), end_ns=max(r.start_ns for r in rows),
            lat=sum(r.lat for r in rows) / len(rows), lon=sum(r.lon for r in rows) / len(rows),
            device_count=len({r.device_id for r in rows}), event_ids=sorted(r.event_id for r in rows)))

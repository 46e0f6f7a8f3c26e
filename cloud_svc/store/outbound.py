"""What the notification bridge reads and keeps: the events, ends, finished verifications and alerts stored after
a position, the devices' liveness and health, and the bridge's cursors and leases (rows of `cursors`). Nothing here
knows MQTT or webhooks."""
from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Optional, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_svc.schema import alerts, clips, cursors, devices, event_ends, events, top_classes, verifications
from cloud_svc.store.base import Database, chunks
from cloud_svc.store.lease import LEASE_SUFFIX, Lease, cursor_value

# The statuses of a verification that is over: its verdict is in (done: agree or disagree), the verifier had
# nothing to judge (skipped), or it was given up (failed). Each sets done_ns.
FINISHED = ("done", "skipped", "failed")


@dataclass(frozen=True)
class Verification:
    state: str                     # none | pending | agree | disagree | failed | skipped
    labels: tuple[str, ...] = ()


NO_VERIFICATION = Verification("none")


@dataclass(frozen=True)
class StoredEvent:
    """An event row as its start note needs it."""
    pk: int
    device_id: str
    event_id: str
    seq: int
    label: str
    score: float
    start_ns: int
    lat: Optional[float]
    lon: Optional[float]
    received_ns: int
    classes: tuple[tuple[str, float], ...]
    verification: Verification


@dataclass(frozen=True)
class StoredEnd:
    """An event_ends row with its event, clip and verification, as the end note needs it."""
    pk: int
    device_id: str
    event_id: str
    seq: int                       # the outbox seq of the end record
    label: str
    score: float                   # the final score
    start_ns: int
    end_ns: int
    lat: Optional[float]
    lon: Optional[float]
    received_ns: int
    classes: tuple[tuple[str, float], ...]
    clip_format: Optional[str]     # None: no clip stored
    clip_sample_rate: int
    clip_dropped: str
    verification: Verification


@dataclass(frozen=True)
class StoredVerdict:
    """A finished verification, with its event's end as the verified note repeats it."""
    end: StoredEnd
    done_ns: int                   # when the verification finished


@dataclass(frozen=True)
class StoredAlert:
    id: int
    kind: str
    rule: str
    labels: tuple[str, ...]
    device_id: Optional[str]
    seq: Optional[int]
    start_ns: int
    end_ns: int
    lat: Optional[float]
    lon: Optional[float]
    device_count: int
    event_ids: tuple[str, ...]
    created_ns: int


@dataclass(frozen=True)
class DeviceState:
    device_id: str
    revoked: bool
    last_heartbeat_ns: Optional[int]
    figures: dict[str, float]
    outbox_depth: Optional[int]


def verification_state(status: Optional[str], agree: Optional[bool]) -> str:
    """A verifications row's status (and verdict) as the state notes carry."""
    if status is None:
        return "none"
    if status in ("pending", "running"):
        return "pending"
    if status == "done":
        return "agree" if agree else "disagree" if agree is not None else "skipped"
    return status if status in ("failed", "skipped") else "pending"


class _Fenced(Exception):
    """Raised inside a cursor move's transaction (so it rolls back) when the mover may no longer move them."""


class OutboundStore:
    """Reads in key order, a page at a time; thread-safe like the rest of the store (a connection per call)."""

    def __init__(self, db: Database):
        self.db = db

    # ------------------------------------------------------------------------------------------ cursors
    def cursor(self, name: str, start: int) -> int:
        """The cursor's value; a cursor seen for the first time is created at `start` (where following begins)."""
        with self.db.read() as conn:
            value = cursor_value(self.db, conn, name)
        if value is None:
            with self.db.write() as conn:
                value = cursor_value(self.db, conn, name, create=True, start=start)
        assert value is not None  # created just above
        return value

    def lease(self, cursor_prefix: str, lease_s: float) -> Lease:
        """The lease of the bridge that keeps the cursors `cursor_prefix:*`: one bridge relays them at a time."""
        return Lease(self.db, cursor_prefix + LEASE_SUFFIX, lease_s)

    def move_cursors(self, moves: Sequence[tuple[str, int, int]], lease: Optional[Lease] = None) -> bool:
        """Moves each cursor (name, from, to) in one transaction, by compare-and-set from where its mover read it,
        and fenced by the mover's `lease` when given (renewing it). False, with nothing moved, when a cursor was
        not where its mover thought (another process moved it), or the lease was lost: the mover then reads the
        cursors again, or stands by."""
        now = time.time_ns()
        token: Optional[int] = None
        try:
            with self.db.write() as conn:
                if lease is not None:
                    token = lease.fence(conn, now)
                    if token is None:
                        raise _Fenced(f"lease {lease.name!r} was taken by another bridge")
                for name, old, new in moves:
                    moved = conn.execute(cursors.update().where(cursors.c.name == name, cursors.c.value == old)
                                         .values(value=int(new)))
                    if moved.rowcount != 1:
                        raise _Fenced(f"cursor {name!r} is no longer at {old}")
        except _Fenced:
            if lease is not None and token is None:
                lease.committed(None)
            return False
        if lease is not None:
            lease.committed(token)
        return True

    def heads(self) -> tuple[int, int]:
        """(the largest event id, the largest alert id): where a new follower of events and alerts starts."""
        with self.db.read() as conn:
            ev = conn.scalar(sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0)))
            al = conn.scalar(sa.select(sa.func.coalesce(sa.func.max(alerts.c.id), 0)))
        return int(ev or 0), int(al or 0)

    # ------------------------------------------------------------------------------------------ reading
    def events_after(self, after_id: int, limit: int) -> list[StoredEvent]:
        """Events with id > after_id, by id: what their start notes need (the classes seen at the start)."""
        e, v = events, verifications
        q = (sa.select(e.c.id, e.c.device_id, e.c.event_id, e.c.seq, e.c.label, e.c.score, e.c.start_ns, e.c.lat,
                       e.c.lon, e.c.received_ns, v.c.status, v.c.agree, v.c.labels)
             .select_from(e.outerjoin(v, v.c.event_pk == e.c.id))
             .where(e.c.id > after_id).order_by(e.c.id).limit(limit))
        with self.db.read() as conn:
            rows = conn.execute(q).all()
            classes = self._classes(conn, [r.id for r in rows], final=False)
        return [StoredEvent(int(r.id), r.device_id, r.event_id, int(r.seq), r.label, float(r.score), int(r.start_ns),
                            r.lat, r.lon, int(r.received_ns), classes.get(r.id, ()),
                            _verification(r.status, r.agree, r.labels)) for r in rows]

    def ends_after(self, after_ns: int, limit: int) -> list[StoredEnd]:
        """Ends stored (received_ns) after after_ns, by (received_ns, event pk), with their event, clip and
        verification: what their end notes need."""
        x = event_ends
        q = _ends_query().where(x.c.received_ns > after_ns).order_by(x.c.received_ns, x.c.event_pk).limit(limit)
        with self.db.read() as conn:
            rows = conn.execute(q).all()
            classes = self._classes(conn, [r.event_pk for r in rows], final=True)
        return [_stored_end(r, classes) for r in rows]

    def verdicts_after(self, after_ns: int, limit: int) -> list[StoredVerdict]:
        """Verifications that finished (done, skipped or failed; by done_ns) after after_ns, by (done_ns, event
        pk), with their event's end: what the verified notes need. A verification runs on an ended event only."""
        v = verifications
        q = (_ends_query().add_columns(v.c.done_ns)
             .where(v.c.status.in_(FINISHED), v.c.done_ns > after_ns)
             .order_by(v.c.done_ns, v.c.event_pk).limit(limit))
        with self.db.read() as conn:
            rows = conn.execute(q).all()
            classes = self._classes(conn, [r.event_pk for r in rows], final=True)
        return [StoredVerdict(_stored_end(r, classes), int(r.done_ns)) for r in rows]

    def alerts_after(self, after_id: int, limit: int) -> list[StoredAlert]:
        """Device and fleet alerts with id > after_id, by id, as they are now (a fleet alert grows as devices
        join it; what a note says is its state when read)."""
        a = alerts
        with self.db.read() as conn:
            rows = conn.execute(sa.select(a).where(a.c.id > after_id).order_by(a.c.id).limit(limit)).all()
        return [StoredAlert(int(r.id), r.kind, r.rule, tuple(r.labels or ()), r.device_id,
                            None if r.seq is None else int(r.seq), int(r.start_ns), int(r.end_ns), r.lat, r.lon,
                            int(r.device_count), tuple(r.event_ids or ()), int(r.created_ns)) for r in rows]

    def device_states(self) -> list[DeviceState]:
        """Every registered device: its last heartbeat and the figures and outbox depth that heartbeat reported."""
        d = devices
        with self.db.read() as conn:
            rows = conn.execute(sa.select(d.c.id, d.c.revoked_ns, d.c.last_heartbeat_ns, d.c.health)
                                .order_by(d.c.id)).all()
        out = []
        for r in rows:
            health = r.health or {}
            figures = {str(k): float(v) for k, v in (health.get("figures") or {}).items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
            depth = health.get("outbox_depth")
            out.append(DeviceState(r.id, r.revoked_ns is not None,
                                   None if r.last_heartbeat_ns is None else int(r.last_heartbeat_ns), figures,
                                   None if depth is None else int(depth)))
        return out

    @staticmethod
    def _classes(conn: Connection, pks: list[int], *, final: bool) -> dict[int, tuple[tuple[str, float], ...]]:
        """Each event's top classes at its start (final=False) or end (final=True; the start's when the end has
        none)."""
        found: dict[int, dict[bool, tuple[tuple[str, float], ...]]] = defaultdict(dict)
        for part in chunks(pks):
            for r in conn.execute(sa.select(top_classes).where(top_classes.c.event_pk.in_(part))):
                found[r.event_pk][bool(r.final)] = tuple((str(n), float(s)) for n, s in json.loads(r.classes))
        out = {}
        for pk, by_final in found.items():
            pick = by_final.get(final, by_final.get(not final))
            if pick is not None:
                out[pk] = pick
        return out


def _ends_query() -> sa.Select:
    """Ends with their event, clip and verification (outer: an end may have neither), unfiltered."""
    e, x, c, v = events, event_ends, clips, verifications
    return (sa.select(x.c.event_pk, e.c.device_id, e.c.event_id, x.c.seq, e.c.label, x.c.score, e.c.start_ns,
                      x.c.end_ns, e.c.lat, e.c.lon, x.c.received_ns, x.c.clip_dropped, c.c.format, c.c.sample_rate,
                      v.c.status, v.c.agree, v.c.labels)
            .select_from(x.join(e, e.c.id == x.c.event_pk).outerjoin(c, c.c.event_pk == x.c.event_pk)
                         .outerjoin(v, v.c.event_pk == x.c.event_pk)))


def _stored_end(r, classes: dict[int, tuple[tuple[str, float], ...]]) -> StoredEnd:
    return StoredEnd(int(r.event_pk), r.device_id, r.event_id, int(r.seq), r.label, float(r.score),
                     int(r.start_ns), int(r.end_ns), r.lat, r.lon, int(r.received_ns), classes.get(r.event_pk, ()),
                     r.format, int(r.sample_rate or 0), r.clip_dropped or "",
                     _verification(r.status, r.agree, r.labels))


def _verification(status: Optional[str], agree: Optional[bool], labels) -> Verification:
    state = verification_state(status, agree)
    return NO_VERIFICATION if state == "none" else Verification(state, tuple(str(x) for x in (labels or ())))

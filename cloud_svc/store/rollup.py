"""The events' rollup: counts that keep the dashboard's aggregates bounded as the store grows (issue 14).

One follower (a lease per database, as the fleet correlator and the bridges hold) reads the events and the reviews
in id order past its two cursors and adds them to `event_rollup`, at the levels of LEVELS: per label per minute, 5
minutes and hour for the whole fleet; per device, label and position per hour, 6 hours and day (the map, the
per-device page under a label filter); per device per hour, 6 hours, day and for all time (the per-device page, the
devices page); per label and cell of the map's grid (GRID_DEG) per hour, 6 hours and day (the map at zooms up to
10). A row also counts the current reviews of its events by decision: a review that replaces an earlier one (a
changed mind) moves its event's count from the old decision to the new.

A read over a window [s, e) takes the whole blocks of the window from the rollup (coarse ones in the middle, finer
towards the ends: `split`) and the rest from the events themselves: the ends finer than the finest level, and, in the
span the blocks cover, the events past the follower's cursor (and the reviews past its review cursor) in the same
snapshot. The answer is therefore exact whether the follower is current, behind or not running at all; only its
cost depends on it. Committers never touch the rollup: rows shared by a whole fleet, updated by every committer,
would be lock waits on one server and certification conflicts on Galera.

Events are rolled up once they are `settle_s` old (by received_ns), as the correlator does, so that a transaction
that took a smaller id and committed later is not passed over. Events are never deleted from the store; a retention
job that deletes them must subtract them here too.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_svc.errors import WriteConflict
from cloud_svc.schema import cursors, event_rollup, events, reviews
from cloud_svc.store.base import Database, chunks
from cloud_svc.store.lease import LEASE_SUFFIX, Lease, cursor_value

log = logging.getLogger("cloud_svc.rollup")

NO_POSITION = 1000.0       # lat and lon of a row whose events have no position (or of a level that keeps none)
NO_PK = 2 ** 62            # min_pk of a row that only counts reviews so far
EVENTS_CURSOR = "rollup:events"
REVIEWS_CURSOR = "rollup:reviews"
LEASE_S = 10.0
DECISIONS = {"real": "rv_real", "false_alarm": "rv_fa", "wrong_label": "rv_wl"}
NS = 10 ** 9


@dataclass(frozen=True)
class Level:
    """A level of the rollup: its time step (0: all time) and which of an event's keys its rows keep."""
    id: int
    step_s: int
    device: bool
    label: bool
    position: bool
    grid: bool = False     # keyed by the GRID_DEG cell of the position (lat, lon hold its row and column)


FLEET_MINUTE = Level(1, 60, False, True, False)
FLEET_HOUR = Level(2, 3600, False, True, False)
PLACE_HOUR = Level(3, 3600, True, True, True)
PLACE_DAY = Level(4, 86400, True, True, True)
DEVICE_HOUR = Level(5, 3600, True, False, False)
DEVICE_DAY = Level(6, 86400, True, False, False)
DEVICE_ALL = Level(7, 0, True, False, False)
PLACE_6H = Level(8, 6 * 3600, True, True, True)
DEVICE_6H = Level(9, 6 * 3600, True, False, False)
FLEET_5MIN = Level(10, 300, False, True, False)
GRID_HOUR = Level(11, 3600, False, True, False, grid=True)
GRID_6H = Level(12, 6 * 3600, False, True, False, grid=True)
GRID_DAY = Level(13, 86400, False, True, False, grid=True)
LEVELS = (FLEET_MINUTE, FLEET_5MIN, FLEET_HOUR, PLACE_HOUR, PLACE_6H, PLACE_DAY, DEVICE_HOUR, DEVICE_6H, DEVICE_DAY,
          DEVICE_ALL, GRID_HOUR, GRID_6H, GRID_DAY)
# The map's finest nested grid: the dashboard's cell at zoom 10 (360 / 2^10 * 48 / 256 degrees, exact in binary), so
# that the cell of every integer zoom up to 10 is a power-of-two multiple of it and its cells are whole grid cells.
GRID_DEG = 360.0 / 2 ** 10 * 48 / 256
FLEET = (FLEET_HOUR, FLEET_5MIN, FLEET_MINUTE)   # coarsest first, each step a multiple of the next


class _Lost(Exception):
    """Raised inside a step's transaction (so that it rolls back) when this follower no longer leads."""


# ------------------------------------------------------------------------------------------------ windows
def _ceil(x: int, step: int) -> int:
    return -(-x // step) * step


@dataclass
class Split:
    """A window cut for a read: `blocks` (level, first bucket, end bucket; None: open) cover [c0, c1) exactly;
    `edges` are the time ranges outside it, read from the events. `covered` is False when no block fits."""
    edges: list[tuple[Optional[int], Optional[int]]]
    c0: Optional[int]
    c1: Optional[int]
    blocks: list[tuple[Level, Optional[int], Optional[int]]]
    covered: bool = True


def split(start_ns: Optional[int], end_ns: Optional[int], levels: Sequence[Level]) -> Split:
    """Cut [start_ns, end_ns) (None: open) into whole buckets of `levels` (coarsest first, each step a multiple of
    the next) and the ends left over, which are finer than the finest level."""
    fine = levels[-1].step_s * NS
    c0 = None if start_ns is None else _ceil(start_ns, fine)
    c1 = None if end_ns is None else end_ns // fine * fine
    if c0 is not None and c1 is not None and c0 >= c1:
        return Split([(start_ns, end_ns)], None, None, [], covered=False)
    edges: list[tuple[Optional[int], Optional[int]]] = []
    if start_ns is not None and c0 is not None and start_ns < c0:
        edges.append((start_ns, c0))
    if end_ns is not None and c1 is not None and c1 < end_ns:
        edges.append((c1, end_ns))
    return Split(edges, c0, c1, _blocks(c0, c1, list(levels)))


def _blocks(a: Optional[int], b: Optional[int], levels: list[Level]):
    level = levels[0]
    if len(levels) == 1:
        return [(level, a, b)]
    step = level.step_s * NS
    lo = None if a is None else _ceil(a, step)
    hi = None if b is None else b // step * step
    if lo is not None and hi is not None and lo >= hi:
        return _blocks(a, b, levels[1:])
    out = [(level, lo, hi)]
    if a is not None and lo is not None and a < lo:
        out += _blocks(a, lo, levels[1:])
    if b is not None and hi is not None and hi < b:
        out += _blocks(hi, b, levels[1:])
    return out


def blocks_where(blocks: Iterable[tuple[Level, Optional[int], Optional[int]]]):
    """The rollup rows of `blocks`, as one condition."""
    r = event_rollup.c
    parts = []
    for level, lo, hi in blocks:
        conds = [r.level == level.id]
        if lo is not None:
            conds.append(r.bucket_ns >= lo)
        if hi is not None:
            conds.append(r.bucket_ns < hi)
        parts.append(sa.and_(*conds))
    return sa.or_(*parts) if parts else sa.false()


def cursors_now(conn: Connection) -> tuple[int, int]:
    """(events cursor, reviews cursor): everything up to them is in the rollup (0, 0 before the first step)."""
    found = dict(conn.execute(sa.select(cursors.c.name, cursors.c.value)
                              .where(cursors.c.name.in_([EVENTS_CURSOR, REVIEWS_CURSOR]))).all())
    return int(found.get(EVENTS_CURSOR, 0)), int(found.get(REVIEWS_CURSOR, 0))


@dataclass
class ReviewChange:
    """An event whose current review changed between two review ids: its keys, and the decision it had as of the
    first (None: not reviewed then) and has as of the second."""
    device_id: str
    label: str
    start_ns: int
    lat: Optional[float]
    lon: Optional[float]
    old: Optional[str]
    new: str


def reviewed_since(conn: Connection, after_review: int, *, start_ns: Optional[int] = None,
                   end_ns: Optional[int] = None, labels: Sequence[str] = ()) -> list[int]:
    """The events (starting in [start_ns, end_ns), of `labels` when given) reviewed after review `after_review`."""
    r, e = reviews, events
    q = (sa.select(r.c.event_pk).select_from(r.join(e, e.c.id == r.c.event_pk)).where(r.c.id > after_review)
         .distinct())
    if start_ns is not None:
        q = q.where(e.c.start_ns >= start_ns)
    if end_ns is not None:
        q = q.where(e.c.start_ns < end_ns)
    if labels:
        q = q.where(e.c.label.in_(list(labels)))
    return [int(x) for x in conn.scalars(q)]


def review_changes(conn: Connection, pos: int, hi: Optional[int], event_ids: Sequence[int]) -> list[ReviewChange]:
    """For each event of `event_ids` whose current review as of review `pos` and as of review `hi` (None: now)
    differ: both."""
    r, e = reviews, events
    out: list[ReviewChange] = []
    for part in chunks(sorted(event_ids)):
        q = sa.select(r.c.event_pk, sa.func.max(r.c.id)).where(r.c.event_pk.in_(part)).group_by(r.c.event_pk)
        old = {int(pk): int(rid) for pk, rid in conn.execute(q.where(r.c.id <= pos))}
        new = {int(pk): int(rid) for pk, rid in conn.execute(q if hi is None else q.where(r.c.id <= hi))}
        rids = sorted(set(old.values()) | set(new.values()))
        decision = {int(i): str(d) for i, d in conn.execute(sa.select(r.c.id, r.c.decision)
                                                             .where(r.c.id.in_(rids or [-1])))}
        for x in conn.execute(sa.select(e.c.id, e.c.device_id, e.c.label, e.c.start_ns, e.c.lat, e.c.lon)
                              .where(e.c.id.in_(part))):
            pk = int(x.id)
            was = decision[old[pk]] if pk in old else None
            if pk in new and decision[new[pk]] != was:
                out.append(ReviewChange(x.device_id, x.label, int(x.start_ns), x.lat, x.lon, was, decision[new[pk]]))
    return out


def keys(c: ReviewChange) -> list[tuple]:
    """The rollup rows an event counts in, one per level: (level, bucket_ns, device_id, label, lat, lon)."""
    out = []
    for level in LEVELS:
        step = level.step_s * NS
        lat = lon = NO_POSITION
        if c.lat is not None and c.lon is not None and level.grid:
            lat, lon = float(math.floor((c.lat + 90.0) / GRID_DEG)), float(math.floor((c.lon + 180.0) / GRID_DEG))
        elif c.lat is not None and c.lon is not None and level.position:
            lat, lon = float(c.lat), float(c.lon)
        out.append((level.id, c.start_ns // step * step if step else 0, c.device_id if level.device else "",
                    c.label if level.label else "", lat, lon))
    return out


# ------------------------------------------------------------------------------------------------ the follower
class RollupStore:
    """The follower's steps: one leads per database (a lease); the others wait, ready to take over."""

    def __init__(self, db: Database, *, lease_s: float = LEASE_S):
        self.db = db
        self.lease = Lease(db, EVENTS_CURSOR + LEASE_SUFFIX, lease_s)

    def step(self, *, batch: int = 20000, settle_s: float = 1.0, now_ns: Optional[int] = None) -> int:
        """Roll up the settled events and reviews past the cursors, at most `batch` of each, in one transaction
        that also moves the cursors. Returns how many events and reviews it rolled up (0 while another leads)."""
        now = time.time_ns() if now_ns is None else now_ns
        with self.db.read() as conn:  # nothing new: no write at all (a poll must not take SQLite's write lock)
            pos, rpos = cursors_now(conn)
            if (conn.scalar(sa.select(events.c.id).where(events.c.id > pos).limit(1)) is None
                    and conn.scalar(sa.select(reviews.c.id).where(reviews.c.id > rpos).limit(1)) is None):
                return 0
        if not self.lease.hold(now):
            return 0
        settled = now - int(settle_s * 1e9)
        try:
            with self.db.write() as conn:
                token = self.lease.fence(conn, now)
                if token is None:
                    raise _Lost("the rollup's lease went to another follower")
                done = self._events(conn, batch, settled) + self._reviews(conn, batch, settled)
        except (_Lost, WriteConflict) as exc:
            log.info("rollup: another follower went first (%s)", exc)
            self.lease.committed(None)
            return 0
        self.lease.committed(token)
        return done

    def release(self) -> None:
        self.lease.release()

    def _move(self, conn: Connection, name: str, pos: int, to: int) -> None:
        moved = conn.execute(cursors.update().where(cursors.c.name == name, cursors.c.value == pos).values(value=to))
        if moved.rowcount != 1:
            raise _Lost(f"cursor {name!r} is no longer at {pos}")

    def _settled(self, conn: Connection, name: str, table: sa.Table, at: sa.Column, batch: int,
                 settled: int) -> tuple[int, int, int]:
        """(cursor `name`, the last id of `table` past it before the first row whose `at` is after `settled`, how
        many rows that is; at most `batch`)."""
        pos = cursor_value(self.db, conn, name, create=True)
        assert pos is not None
        hi, n = pos, 0
        for pk, t in conn.execute(sa.select(table.c.id, at).where(table.c.id > pos).order_by(table.c.id).limit(batch)):
            if t > settled:
                break
            hi, n = pk, n + 1
        return pos, hi, n

    def _events(self, conn: Connection, batch: int, settled: int) -> int:
        pos, hi, n = self._settled(conn, EVENTS_CURSOR, events, events.c.received_ns, batch, settled)
        if hi == pos:
            return 0
        for level in LEVELS:
            conn.execute(sa.text(self._insert_select(level)), {"lo": pos, "hi": hi})
        self._move(conn, EVENTS_CURSOR, pos, hi)
        return n

    def _insert_select(self, level: Level) -> str:
        step = level.step_s * NS
        div = "/" if self.db.sqlite else "DIV"
        bucket = f"(start_ns {div} {step}) * {step}" if step else "0"
        nopos = "(lat IS NULL OR lon IS NULL)"
        if level.grid:
            floor = "CAST({} AS INTEGER)" if self.db.sqlite else "FLOOR({})"  # of values >= 0
            lat = f"CASE WHEN {nopos} THEN {NO_POSITION!r} ELSE {floor.format(f'(lat + 90.0) / {GRID_DEG!r}')} END"
            lon = f"CASE WHEN {nopos} THEN {NO_POSITION!r} ELSE {floor.format(f'(lon + 180.0) / {GRID_DEG!r}')} END"
            sums = "COALESCE(SUM(lat), 0), COALESCE(SUM(lon), 0)"
        else:
            lat = f"CASE WHEN {nopos} THEN {NO_POSITION!r} ELSE lat END" if level.position else repr(NO_POSITION)
            lon = f"CASE WHEN {nopos} THEN {NO_POSITION!r} ELSE lon END" if level.position else repr(NO_POSITION)
            sums = "0, 0"
        device = "device_id" if level.device else "''"
        label = "label" if level.label else "''"
        head = (f"INSERT INTO event_rollup (level, bucket_ns, device_id, label, lat, lon, n, min_pk, lat_sum, lon_sum, "
                f"rv_real, rv_fa, rv_wl) SELECT {level.id}, {bucket}, {device}, {label}, {lat}, {lon}, COUNT(*), "
                f"MIN(id), {sums}, 0, 0, 0 FROM events WHERE id > :lo AND id <= :hi GROUP BY 1, 2, 3, 4, 5, 6 ")
        if self.db.sqlite:
            return head + ("ON CONFLICT (level, bucket_ns, device_id, label, lat, lon) DO UPDATE SET "
                           "n = n + excluded.n, min_pk = min(min_pk, excluded.min_pk), "
                           "lat_sum = lat_sum + excluded.lat_sum, lon_sum = lon_sum + excluded.lon_sum")
        return head + ("ON DUPLICATE KEY UPDATE n = n + VALUES(n), min_pk = LEAST(min_pk, VALUES(min_pk)), "
                       "lat_sum = lat_sum + VALUES(lat_sum), lon_sum = lon_sum + VALUES(lon_sum)")

    def _reviews(self, conn: Connection, batch: int, settled: int) -> int:
        pos, hi, n = self._settled(conn, REVIEWS_CURSOR, reviews, reviews.c.created_ns, batch, settled)
        if hi == pos:
            return 0
        ids = [int(x) for x in conn.scalars(sa.select(reviews.c.event_pk).where(reviews.c.id > pos,
                                                                                 reviews.c.id <= hi).distinct())]
        deltas: dict[tuple, dict[str, int]] = {}
        for c in review_changes(conn, pos, hi, ids):
            for decision, sign in ((c.old, -1), (c.new, +1)):
                col = DECISIONS.get(decision or "")
                if col is None:
                    continue
                for key in keys(c):
                    d = deltas.setdefault(key, {"rv_real": 0, "rv_fa": 0, "rv_wl": 0})
                    d[col] += sign
        rows = [{"level": k[0], "bucket_ns": k[1], "device_id": k[2], "label": k[3], "lat": k[4], "lon": k[5],
                 "n": 0, "min_pk": NO_PK, **d} for k, d in deltas.items() if any(d.values())]
        if rows:
            conn.execute(sa.text(self._upsert_reviews()), rows)
        self._move(conn, REVIEWS_CURSOR, pos, hi)
        return n

    def _upsert_reviews(self) -> str:
        head = ("INSERT INTO event_rollup (level, bucket_ns, device_id, label, lat, lon, n, min_pk, lat_sum, lon_sum, "
                "rv_real, rv_fa, rv_wl) VALUES (:level, :bucket_ns, :device_id, :label, :lat, :lon, :n, :min_pk, 0, 0, "
                ":rv_real, :rv_fa, :rv_wl) ")
        cols = ("rv_real", "rv_fa", "rv_wl")
        if self.db.sqlite:
            return head + ("ON CONFLICT (level, bucket_ns, device_id, label, lat, lon) DO UPDATE SET "
                           + ", ".join(f"{c} = {c} + excluded.{c}" for c in cols))
        return head + "ON DUPLICATE KEY UPDATE " + ", ".join(f"{c} = {c} + VALUES({c})" for c in cols)

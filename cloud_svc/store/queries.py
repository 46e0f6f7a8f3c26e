"""Read models over the stored data: events, devices and their health, clips, alerts, verification agreement.

What the Query servicer answers and what the dashboard shows; nothing here writes."""
from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any, Optional, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_svc.domain import (
    EVENT_ORDER,
    Agreement,
    AlertEventRef,
    AlertView,
    ClipView,
    DeviceFalseAlarms,
    DeviceView,
    EventFilter,
    EventView,
    HealthSample,
    LabelReviews,
    MapCell,
    Reviewed,
    ReviewView,
    VerificationView,
    Verified,
)
from cloud_svc.errors import InvalidMessage, NotFound
from cloud_svc.schema import (
    CELL_ROW,
    CELLS_PER_DEG,
    alert_events,
    alerts,
    clips,
    device_health,
    devices,
    event_ends,
    event_rollup,
    events,
    reviews,
    top_classes,
    verifications,
)
from cloud_svc.store import rollup
from cloud_svc.store.base import Database, chunks
from cloud_svc.store.reviews import is_current

DEGRADED_FIGURES = ("outbox_dropped", "ring_overruns", "loop_errors")
_DECISION_INDEX = {d: i for i, d in enumerate(rollup.DECISIONS)}  # real, false_alarm, wrong_label


def cell_ranges(b, most: int = 64) -> Optional[list[int]]:
    """The values of events.cell that events inside box `b` may have (None when more than `most`): every cell
    the box touches, and the next one up in each direction, since MySQL rounds where SQLite truncates."""
    def span(lo: float, hi: float, origin: float) -> range:
        return range(math.floor((lo + origin) * CELLS_PER_DEG), math.floor((hi + origin) * CELLS_PER_DEG) + 2)

    ys = span(b.min_lat, b.max_lat, 90.0)
    if b.min_lon <= b.max_lon:
        xs = list(span(b.min_lon, b.max_lon, 180.0))
    else:  # the box crosses the antimeridian
        xs = list(span(b.min_lon, 180.0, 180.0)) + list(span(-180.0, b.max_lon, 180.0))
    if len(ys) * len(xs) > most:
        return None
    return [y * CELL_ROW + x for y in ys for x in xs]


def _grid_shift(cell_deg: float) -> Optional[int]:
    """k when `cell_deg` is exactly 2^k cells of the rollup's map grid (rollup.GRID_DEG), else None."""
    ratio = cell_deg / rollup.GRID_DEG
    k = round(math.log2(ratio)) if ratio >= 1 else -1
    return k if 0 <= k <= 30 and rollup.GRID_DEG * 2 ** k == cell_deg else None


class QueryStore:
    """Queries; a device whose last heartbeat is older than `stale_after_s` is listed as stale."""

    def __init__(self, db: Database, *, stale_after_s: float = 120.0, use_rollup: bool = True):
        self.db = db
        self.use_rollup = use_rollup
        self.stale_after_ns = int(stale_after_s * 1e9)

    def _where(self, q, f: EventFilter, *, joined=None):
        """`q` (selecting from events) narrowed to filter `f`; `joined`: the alias of the current reviews when q
        already outer-joins them and verifications (list_events), else they are joined here when needed."""
        e, v = events, verifications
        if f.ids is not None:
            q = q.where(e.c.id.in_(f.ids or [-1]))
        if f.after_id:
            q = q.where(e.c.id > f.after_id)
        if f.start_ns is not None:
            q = q.where(e.c.start_ns >= f.start_ns)
        if f.end_ns is not None:
            q = q.where(e.c.start_ns < f.end_ns)
        if f.labels:
            q = q.where(e.c.label.in_(f.labels))
        if f.device_ids:
            q = q.where(e.c.device_id.in_(f.device_ids))
        if f.bbox is not None:
            b = f.bbox
            cells = cell_ranges(b) if f.labels else None
            if cells is not None:  # the cells under the box first (ix_events_label_cell_start_ns_lat_lon)
                q = q.where(e.c.cell.in_(cells))
            q = q.where(e.c.lat.between(b.min_lat, b.max_lat))
            if b.min_lon <= b.max_lon:
                q = q.where(e.c.lon.between(b.min_lon, b.max_lon))
            else:  # the box crosses the antimeridian
                q = q.where(sa.or_(e.c.lon >= b.min_lon, e.c.lon <= b.max_lon))
        verified = {
            Verified.DONE: v.c.status == "done",
            Verified.AGREE: sa.and_(v.c.status == "done", v.c.agree.is_(True)),
            Verified.DISAGREE: sa.and_(v.c.status == "done", v.c.agree.is_(False)),
            Verified.PENDING: v.c.status.in_(["pending", "running"]),
            Verified.NONE: v.c.id.is_(None),
        }.get(f.verified)
        if verified is not None:
            if joined is None:
                q = q.outerjoin(v, v.c.event_pk == e.c.id)
            q = q.where(verified)
        if f.reviewed is not Reviewed.ANY:
            rv = joined
            if rv is None:
                rv = reviews.alias("r")
                q = q.outerjoin(rv, sa.and_(rv.c.event_pk == e.c.id, is_current(rv)))
            q = q.where({
                Reviewed.NONE: rv.c.id.is_(None),
                Reviewed.REVIEWED: rv.c.id.is_not(None),
            }.get(f.reviewed, rv.c.decision == f.reviewed.value))
        return q

    def list_events(self, f: EventFilter) -> list[EventView]:
        """Events matching `f`, by id after `f.after_id` (the Query API's keyset paging), or sorted by `f.order`
        from `f.offset` (the dashboard's pages)."""
        if f.order not in EVENT_ORDER:
            raise InvalidMessage("order", f"{f.order!r} is not one of {list(EVENT_ORDER)}")
        e, x, c, v = events, event_ends, clips, verifications
        rv = reviews.alias("r")
        q = (sa.select(e, x.c.end_ns, x.c.score.label("final_score"), x.c.clip_dropped,
                       c.c.sha256.label("clip_sha256"), c.c.size.label("clip_size"),
                       c.c.format.label("clip_format"), c.c.sample_rate.label("clip_rate"),
                       c.c.uri.label("clip_uri"), c.c.start_ns.label("clip_start_ns"),
                       c.c.preroll_s.label("clip_preroll_s"), v.c.status.label("v_status"),
                       v.c.reason.label("v_reason"), v.c.verifier.label("v_verifier"), v.c.labels.label("v_labels"),
                       v.c.scores.label("v_scores"), v.c.agree.label("v_agree"), v.c.error.label("v_error"),
                       rv.c.id.label("r_id"), rv.c.decision.label("r_decision"), rv.c.label.label("r_label"),
                       rv.c.reviewer.label("r_reviewer"), rv.c.note.label("r_note"),
                       rv.c.created_ns.label("r_created_ns"))
             .select_from(e.outerjoin(x, x.c.event_pk == e.c.id).outerjoin(c, c.c.event_pk == e.c.id)
                          .outerjoin(v, v.c.event_pk == e.c.id)
                          .outerjoin(rv, sa.and_(rv.c.event_pk == e.c.id, is_current(rv)))))
        col = sa.func.coalesce(x.c.score, e.c.score) if f.order == "score" else e.c[f.order]  # the shown score
        order = (col.desc() if f.descending else col, e.c.id.desc() if f.descending else e.c.id)
        # A deferred join (issue 14): the page's ids first, filtered and sorted on the events alone (from an index's
        # entries where one covers the filter, with no row read), then only those rows with their ends, clips,
        # verifications and reviews. Reading and joining every match before the sort cost a random row read per
        # match: 69 ms for a 7-day window at 1M events. The score order sorts on the ends' score: one query.
        page = None
        if f.order != "score" and f.ids is None:
            page = self._where(sa.select(e.c.id).select_from(e), f).order_by(*order).limit(f.limit).offset(f.offset)
            if f.order == "id" and (f.start_ns is not None or f.end_ns is not None or f.labels):
                # With ORDER BY id LIMIT n, MariaDB prefers walking the primary key in order and testing every row,
                # which reads the whole table when the matches are few or late (3 s at 10M events). A range of the
                # time or label index, then a sort of its matches, costs what the window holds instead.
                for dialect in ("mysql", "mariadb"):
                    page = page.with_hint(e, "IGNORE INDEX FOR ORDER BY (PRIMARY)", dialect)
        else:
            q = self._where(q, f, joined=rv).limit(f.limit).offset(f.offset)
        q = q.order_by(*order)
        with self.db.read() as conn:  # one transaction: the ids and their rows from one snapshot
            if page is not None:
                q = q.where(e.c.id.in_(list(conn.scalars(page)) or [-1]))
            rows = conn.execute(q).all()
            cls = self._classes(conn, [r.id for r in rows])
        out = []
        for r in rows:
            clip = ClipView(r.clip_format, r.clip_rate, r.clip_sha256, r.clip_size, r.clip_uri, r.clip_start_ns,
                            r.clip_preroll_s) if r.clip_sha256 else None
            ver = VerificationView(r.v_status, r.v_reason, r.v_verifier, list(r.v_labels or []),
                                   dict(r.v_scores or {}), r.v_agree, r.v_error) if r.v_status else None
            rev = ReviewView(int(r.r_id), int(r.id), r.r_decision, r.r_label, r.r_reviewer, r.r_note,
                             int(r.r_created_ns)) if r.r_id is not None else None
            score = r.final_score if r.final_score is not None else r.score
            out.append(EventView(r.id, r.device_id, r.seq, r.event_id, r.label, r.start_ns, r.end_ns, score,
                                 cls.get(r.id, []), r.lat, r.lon, r.backend, r.model_sha256, r.received_ns, clip,
                                 r.clip_dropped, ver, rev))
        return out

    def get_event(self, pk: int) -> EventView:
        found = self.list_events(EventFilter(ids=[pk], limit=1))
        if not found:
            raise NotFound(f"no event {pk}")
        return found[0]

    # ------------------------------------------------------------------------------------------ aggregates
    # Each aggregate over a time window reads the window's whole blocks from the rollup (cloud_svc.store.rollup),
    # with, in one snapshot, the events and reviews the rollup has not reached yet and the window's ends finer than
    # its finest level from the events. Filters the rollup keeps no key for (devices, a box, verification, review
    # state) read the events alone, as does a QueryStore made with use_rollup=False (the reference the tests compare
    # against).
    def _rollable(self, f: EventFilter) -> bool:
        return (self.use_rollup and f.ids is None and not f.after_id and not f.device_ids and f.bbox is None
                and f.verified is Verified.ANY and f.reviewed is Reviewed.ANY)

    def _over(self, f: EventFilter, levels: Sequence[rollup.Level], raw) -> Optional[rollup.Split]:
        """Runs raw(g) on what the rollup cannot answer of `f` (each g is `f` over a part of its window): all of `f`
        when it is not rollable or no level fits, else the window's ends finer than `levels`' finest. Returns the
        split whose blocks the caller reads from the rollup, with the events past its cursor; None when none fits."""
        if not levels or not self._rollable(f):
            raw(f)
            return None
        cut = rollup.split(f.start_ns, f.end_ns, levels)
        for a, b in cut.edges:
            raw(replace(f, start_ns=a, end_ns=b))
        return cut if cut.covered else None

    @staticmethod
    def _rows(f: EventFilter, cut: rollup.Split, *cols):
        """SELECT cols FROM event_rollup over the blocks of `cut`, of f's labels."""
        q = sa.select(*cols).where(rollup.blocks_where(cut.blocks))
        return q.where(event_rollup.c.label.in_(f.labels)) if f.labels else q

    def count_matching(self, f: EventFilter) -> int:
        """How many events match `f` (its paging fields aside)."""
        counts: list[int] = []
        with self.db.read() as conn:
            cut = self._over(f, rollup.FLEET, lambda g: counts.append(self._count(conn, g)))
            if cut is not None:
                pos, _ = rollup.cursors_now(conn)
                counts.append(int(conn.scalar(self._rows(f, cut, sa.func.coalesce(sa.func.sum(event_rollup.c.n), 0)))))
                counts.append(self._count(conn, replace(f, start_ns=cut.c0, end_ns=cut.c1, after_id=pos)))
        return sum(counts)

    def _count(self, conn: Connection, f: EventFilter) -> int:
        return int(conn.execute(self._where(sa.select(sa.func.count()).select_from(events), f)).scalar_one())

    def _floor(self, x):
        """floor() of a non-negative expression: SQLite's CAST truncates (and it may lack floor()); MySQL's
        CAST rounds, so it gets FLOOR."""
        return sa.cast(x, sa.BigInteger) if self.db.sqlite else sa.func.floor(x)

    def map_cells(self, f: EventFilter, cell_deg: float, distress_labels: Sequence[str] = (),
                  max_cells: int = 5000) -> tuple[list[MapCell], int]:
        """Events matching `f` that have a position, aggregated on a grid of `cell_deg` degrees (server-side
        clustering: what the map draws), and how many matching events have no position.

        One statement: the parts (the rollup's blocks, the window's ends and the events past the rollup's cursor,
        each grouped by cell and label) are added up by the database, which sends each cell's labels once."""
        parts: list[Any] = []  # Selects of one shape (mypy 2.4 crashes expanding union_all's overloads over them)
        # Cells of the map's grid or a power-of-two multiple of them (every integer zoom up to 10) add up whole grid
        # cells (floor((x / g) / 2^k) == floor(floor(x / g) / 2^k), exactly in binary floating point); any other
        # size groups the positions of each device.
        shift = _grid_shift(cell_deg)
        levels = ((rollup.GRID_DAY, rollup.GRID_6H, rollup.GRID_HOUR) if shift is not None
                  else (rollup.PLACE_DAY, rollup.PLACE_6H, rollup.PLACE_HOUR))
        with self.db.read() as conn:
            cut = self._over(f, levels, lambda g: parts.append(self._cells_raw(g, cell_deg)))
            if cut is not None:
                pos, _ = rollup.cursors_now(conn)
                r = event_rollup.c
                nopos = r.lat == rollup.NO_POSITION
                if shift is not None:
                    gy, gx = self._floor(r.lat / 2 ** shift), self._floor(r.lon / 2 ** shift)
                    lat_sum, lon_sum = sa.func.sum(r.lat_sum), sa.func.sum(r.lon_sum)
                else:
                    gy, gx = self._floor((r.lat + 90.0) / cell_deg), self._floor((r.lon + 180.0) / cell_deg)
                    lat_sum, lon_sum = sa.func.sum(r.lat * r.n), sa.func.sum(r.lon * r.n)
                gy = sa.case((nopos, sa.null()), else_=gy).label("gy")
                gx = sa.case((nopos, sa.null()), else_=gx).label("gx")
                parts.append(self._rows(f, cut, gy, gx, r.label, sa.func.sum(r.n).label("n"),
                                        lat_sum.label("lat"), lon_sum.label("lon"),
                                        sa.func.min(r.min_pk).label("pk"))
                             .where(r.n > 0).group_by(gy, gx, r.label))
                parts.append(self._cells_raw(replace(f, start_ns=cut.c0, end_ns=cut.c1, after_id=pos),
                                             cell_deg))
            union: Any = sa.union_all
            u = (union(*parts) if len(parts) > 1 else parts[0]).subquery()
            q = (sa.select(u.c.gy, u.c.gx, u.c.label, sa.func.sum(u.c.n).label("n"), sa.func.sum(u.c.lat).label("lat"),
                           sa.func.sum(u.c.lon).label("lon"), sa.func.min(u.c.pk).label("pk"))
                 .group_by(u.c.gy, u.c.gx, u.c.label))
            rows = conn.execute(q).all()
        distress = set(distress_labels)
        cells: dict[tuple[int, int], MapCell] = {}
        sums: dict[tuple[int, int], list[float]] = {}
        missing = 0
        for gy, gx, label, n, lat_sum, lon_sum, pk in rows:
            n = int(n)
            if gy is None or gx is None:
                missing += n
                continue
            key = (int(gy), int(gx))
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = MapCell(0.0, 0.0, 0, 0, int(pk), label, {})
                sums[key] = [0.0, 0.0]
            cell.count += n
            cell.distress += n if label in distress else 0
            cell.labels[label] = n
            cell.event_pk = min(cell.event_pk, int(pk))
            sums[key][0] += float(lat_sum)
            sums[key][1] += float(lon_sum)
        for key, cell in cells.items():
            cell.lat, cell.lon = sums[key][0] / cell.count, sums[key][1] / cell.count
            cell.label = max(cell.labels.items(), key=lambda kv: (kv[1], kv[0]))[0]
        out = sorted(cells.values(), key=lambda c: (-c.count, c.event_pk))
        return out[:max_cells], missing

    def _cells_raw(self, f: EventFilter, cell_deg: float):
        """SELECT gy, gx, label, n, lat (sum), lon (sum), pk (first) of the events of `f` per grid cell and label;
        gy and gx NULL for the events without a position."""
        e = events
        nopos = sa.or_(e.c.lat.is_(None), e.c.lon.is_(None))
        gy = sa.case((nopos, sa.null()), else_=self._floor((e.c.lat + 90.0) / cell_deg)).label("gy")  # >= 0
        gx = sa.case((nopos, sa.null()), else_=self._floor((e.c.lon + 180.0) / cell_deg)).label("gx")
        q = sa.select(gy, gx, e.c.label, sa.func.count().label("n"), sa.func.sum(e.c.lat).label("lat"),
                      sa.func.sum(e.c.lon).label("lon"), sa.func.min(e.c.id).label("pk")).select_from(e)
        return self._where(q, f).group_by(gy, gx, e.c.label)

    def timeline(self, f: EventFilter, bucket_s: int) -> list[tuple[int, str, int]]:
        """(bucket start ns, label, events) for events matching `f`, in buckets of `bucket_s` seconds."""
        step = int(bucket_s * 1e9)
        counts: dict[tuple[int, str], int] = defaultdict(int)
        with self.db.read() as conn:
            levels = [lv for lv in rollup.FLEET if step % (lv.step_s * rollup.NS) == 0]  # what fits
            cut = self._over(f, levels, lambda g: self._timeline_raw(conn, g, step, counts))
            if cut is not None:
                pos, _ = rollup.cursors_now(conn)
                r = event_rollup.c
                q = self._rows(f, cut, r.bucket_ns, r.label, sa.func.sum(r.n)).group_by(r.bucket_ns, r.label)
                for bucket_ns, label, n in conn.execute(q):
                    counts[(int(bucket_ns) // step * step, label)] += int(n)
                self._timeline_raw(conn, replace(f, start_ns=cut.c0, end_ns=cut.c1, after_id=pos), step, counts)
        return [(b, label, n) for (b, label), n in sorted(counts.items()) if n]

    def _timeline_raw(self, conn: Connection, f: EventFilter, step: int, counts: dict) -> None:
        b = self._floor(events.c.start_ns / step).label("b")
        q = self._where(sa.select(b, events.c.label, sa.func.count().label("n")).select_from(events), f)
        for r in conn.execute(q.group_by(b, events.c.label)):
            counts[(int(r.b) * step, r.label)] += int(r.n)

    def review_stats(self, f: EventFilter) -> list[LabelReviews]:
        """Per edge label: how reviewers judged the events matching `f` (current reviews)."""
        acc: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # label -> [real, false alarm, wrong label]
        with self.db.read() as conn:
            cut = self._over(f, rollup.FLEET, lambda g: self._review_stats_raw(conn, g, acc))
            if cut is not None:
                _, rpos = rollup.cursors_now(conn)
                r = event_rollup.c
                q = self._rows(f, cut, r.label, sa.func.sum(r.rv_real), sa.func.sum(r.rv_fa),
                               sa.func.sum(r.rv_wl)).group_by(r.label)
                for label, real, fa, wl in conn.execute(q):
                    v = acc[label]
                    v[0], v[1], v[2] = v[0] + int(real), v[1] + int(fa), v[2] + int(wl)
                for c in self._changes(conn, rpos, cut, f):
                    for decision, sign in ((c.old, -1), (c.new, 1)):
                        if decision in _DECISION_INDEX:
                            acc[c.label][_DECISION_INDEX[decision]] += sign
        out = [LabelReviews(label, sum(v), v[0], v[1], v[2]) for label, v in sorted(acc.items())]
        return [x for x in out if x.reviewed]

    @staticmethod
    def _changes(conn: Connection, rpos: int, cut: rollup.Split, f: EventFilter) -> list[rollup.ReviewChange]:
        """How the current reviews of the events in the span of `cut` changed after review `rpos`."""
        ids = rollup.reviewed_since(conn, rpos, start_ns=cut.c0, end_ns=cut.c1, labels=f.labels)
        return rollup.review_changes(conn, rpos, None, ids)

    def _review_stats_raw(self, conn: Connection, f: EventFilter, acc: dict) -> None:
        r = reviews.alias("r")

        def n(decision: str):
            return sa.func.sum(sa.case((r.c.decision == decision, 1), else_=0))

        q = (sa.select(events.c.label, n("real").label("real"), n("false_alarm").label("fa"),
                       n("wrong_label").label("wl"))
             .select_from(events.join(r, r.c.event_pk == events.c.id)).where(is_current(r)))
        q = self._where(q, f).group_by(events.c.label)
        if f.start_ns is not None or f.end_ns is not None:
            # The events in the window first, then their reviews by ix_reviews_event_pk_id. Left to itself MariaDB
            # reads every review ever made and looks each event up by pk: a random read per review (issue 14:
            # 3.3 s at 4.5M events, 48k reviews, for a 6-hour window).
            for dialect in ("mysql", "mariadb"):
                q = q.prefix_with("STRAIGHT_JOIN", dialect=dialect)
        for x in conn.execute(q):
            a = acc[x.label]
            a[0], a[1], a[2] = a[0] + int(x.real or 0), a[1] + int(x.fa or 0), a[2] + int(x.wl or 0)

    def false_alarms_by_device(self, f: EventFilter) -> list[DeviceFalseAlarms]:
        """Per device: events matching `f`, how many were reviewed, and how many of those were false alarms."""
        acc: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # device -> [events, reviewed, false alarms]
        with self.db.read() as conn:
            levels = ((rollup.PLACE_DAY, rollup.PLACE_6H, rollup.PLACE_HOUR) if f.labels
                      else (rollup.DEVICE_DAY, rollup.DEVICE_6H, rollup.DEVICE_HOUR))
            cut = self._over(f, levels, lambda g: self._false_alarms_raw(conn, g, acc))
            if cut is not None:
                pos, rpos = rollup.cursors_now(conn)
                r = event_rollup.c
                q = self._rows(f, cut, r.device_id, sa.func.sum(r.n), sa.func.sum(r.rv_real + r.rv_fa + r.rv_wl),
                               sa.func.sum(r.rv_fa)).group_by(r.device_id)
                for device_id, n, reviewed, fa in conn.execute(q):
                    v = acc[device_id]
                    v[0], v[1], v[2] = v[0] + int(n), v[1] + int(reviewed), v[2] + int(fa)
                tail = self._where(sa.select(events.c.device_id, sa.func.count()).select_from(events),
                                   replace(f, start_ns=cut.c0, end_ns=cut.c1, after_id=pos))
                for device_id, n in conn.execute(tail.group_by(events.c.device_id)):
                    acc[device_id][0] += int(n)
                for c in self._changes(conn, rpos, cut, f):
                    v = acc[c.device_id]
                    if c.old is not None:
                        v[1] -= 1
                        v[2] -= c.old == "false_alarm"
                    v[1] += 1
                    v[2] += c.new == "false_alarm"
        return [DeviceFalseAlarms(d, *v) for d, v in sorted(acc.items()) if v[0]]

    def _false_alarms_raw(self, conn: Connection, f: EventFilter, acc: dict) -> None:
        r = reviews.alias("r")
        q = (sa.select(events.c.device_id, sa.func.count().label("n"), sa.func.count(r.c.id).label("reviewed"),
                       sa.func.sum(sa.case((r.c.decision == "false_alarm", 1), else_=0)).label("fa"))
             .select_from(events.outerjoin(r, sa.and_(r.c.event_pk == events.c.id, is_current(r)))))
        for x in conn.execute(self._where(q, f).group_by(events.c.device_id)):
            a = acc[x.device_id]
            a[0], a[1], a[2] = a[0] + int(x.n), a[1] + int(x.reviewed or 0), a[2] + int(x.fa or 0)

    def labels_seen(self) -> list[str]:
        with self.db.read() as conn:
            return [str(x) for x in conn.scalars(sa.select(events.c.label).distinct().order_by(events.c.label))]

    def health_history(self, device_ids: Sequence[str], since_ns: Optional[int] = None,
                       limit_per_device: int = 500) -> dict[str, list[HealthSample]]:
        """The latest health samples of each device (at most `limit_per_device`), oldest first."""
        out: dict[str, list[HealthSample]] = {}
        with self.db.read() as conn:
            for d in device_ids:
                q = (sa.select(device_health).where(device_health.c.device_id == d)
                     .order_by(device_health.c.ts_ns.desc()).limit(limit_per_device))
                if since_ns is not None:
                    q = q.where(device_health.c.ts_ns >= since_ns)
                rows = conn.execute(q).all()
                out[d] = [HealthSample(int(x.ts_ns), {k: float(v) for k, v in dict(x.figures).items()},
                                       int(x.outbox_depth)) for x in reversed(rows)]
        return out

    @staticmethod
    def _classes(conn: Connection, pks: list[int]) -> dict[int, list[tuple[str, float]]]:
        """The latest top classes of each event (the end's when it ended)."""
        out: dict[int, tuple[bool, list]] = {}
        for part in chunks(pks):
            for r in conn.execute(sa.select(top_classes).where(top_classes.c.event_pk.in_(part))):
                if r.event_pk not in out or r.final:
                    out[r.event_pk] = (r.final, [(str(n), float(sc)) for n, sc in json.loads(r.classes)])
        return {pk: v[1] for pk, v in out.items()}

    def count_events(self, device_id: Optional[str] = None) -> int:
        q = sa.select(sa.func.count()).select_from(events)
        if device_id:
            q = q.where(events.c.device_id == device_id)
        with self.db.read() as conn:
            return int(conn.execute(q).scalar_one())  # COUNT(*): always one row

    def get_clip(self, device_id: str, *, seq: Optional[int] = None, event_id: Optional[str] = None) -> ClipView:
        q = sa.select(clips).join(events, events.c.id == clips.c.event_pk).where(events.c.device_id == device_id)
        q = q.where(events.c.seq == seq) if event_id is None else q.where(events.c.event_id == event_id)
        with self.db.read() as conn:
            r = conn.execute(q).first()
        if r is None:
            raise NotFound(f"no clip for device {device_id!r} event {event_id or seq}")
        return ClipView(r.format, r.sample_rate, r.sha256, r.size, r.uri, r.start_ns, r.preroll_s)

    def list_devices(self) -> list[DeviceView]:
        now = time.time_ns()
        counts: dict[str, int] = defaultdict(int)
        with self.db.read() as conn:
            rows = conn.execute(sa.select(devices).order_by(devices.c.id)).all()
            pos = 0
            if self.use_rollup:  # the all-time counts, and the events past the rollup's cursor
                pos, _ = rollup.cursors_now(conn)
                counts.update((d, int(n)) for d, n in conn.execute(
                    sa.select(event_rollup.c.device_id, event_rollup.c.n)
                    .where(event_rollup.c.level == rollup.DEVICE_ALL.id)))
            for d, n in conn.execute(sa.select(events.c.device_id, sa.func.count()).where(events.c.id > pos)
                                     .group_by(events.c.device_id)):
                counts[d] += int(n)
        out = []
        for r in rows:
            health = r.health or {}
            figures = {k: float(v) for k, v in (health.get("figures") or {}).items()}
            if r.last_heartbeat_ns is None:
                state = "never"
            elif now - r.last_heartbeat_ns > self.stale_after_ns:
                state = "stale"
            elif any(figures.get(k, 0) > 0 for k in DEGRADED_FIGURES):
                state = "degraded"
            else:
                state = "ok"
            out.append(DeviceView(r.id, r.revoked_ns is not None, int(r.acked_seq), r.created_ns,
                                  r.last_heartbeat_ns, state, figures, dict(health.get("info") or {}), r.lat, r.lon,
                                  counts.get(r.id, 0)))
        return out

    def list_alerts(self, *, start_ns: Optional[int] = None, end_ns: Optional[int] = None, kind: str = "",
                    limit: int = 1000, after_id: int = 0, created_since_ns: Optional[int] = None) -> list[AlertView]:
        q = sa.select(alerts).where(alerts.c.id > after_id).order_by(alerts.c.id).limit(limit)
        if start_ns is not None:
            q = q.where(alerts.c.start_ns >= start_ns)
        if end_ns is not None:
            q = q.where(alerts.c.start_ns < end_ns)
        if created_since_ns is not None:
            q = q.where(alerts.c.created_ns >= created_since_ns)
        if kind:
            q = q.where(alerts.c.kind == kind)
        with self.db.read() as conn:
            rows = conn.execute(q).all()
            links: dict[int, list[AlertEventRef]] = defaultdict(list)
            for part in chunks([r.id for r in rows]):
                lq = (sa.select(alert_events.c.alert_id, events.c.device_id, events.c.seq, events.c.event_id,
                                events.c.label, events.c.lat, events.c.lon, events.c.id)
                      .join(events, events.c.id == alert_events.c.event_pk)
                      .where(alert_events.c.alert_id.in_(part)).order_by(events.c.start_ns, events.c.id))
                for r in conn.execute(lq):
                    links[r.alert_id].append(AlertEventRef(r.device_id, r.seq, r.event_id, r.label, r.lat, r.lon,
                                                           int(r.id)))
        return [AlertView(r.id, r.kind, r.rule, list(r.labels or []), r.device_id, r.start_ns, r.end_ns, r.lat, r.lon,
                          r.device_count, r.created_ns, links.get(r.id, [])) for r in rows]

    def last_alert_id(self) -> int:
        with self.db.read() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(alerts.c.id), 0))).scalar_one())

    def agreement(self, start_ns: Optional[int] = None, end_ns: Optional[int] = None) -> list[Agreement]:
        v, e = verifications, events
        q = (sa.select(e.c.label, sa.func.count().label("n"),
                       sa.func.sum(sa.case((v.c.agree.is_(True), 1), else_=0)).label("agreed"))
             .join(e, e.c.id == v.c.event_pk)
             .where(v.c.status == "done", v.c.agree.is_not(None)).group_by(e.c.label).order_by(e.c.label))
        if start_ns is not None:
            q = q.where(e.c.start_ns >= start_ns)
        if end_ns is not None:
            q = q.where(e.c.start_ns < end_ns)
        with self.db.read() as conn:
            return [Agreement(r.label, int(r.n), int(r.agreed or 0)) for r in conn.execute(q)]

    def verification_counts(self) -> dict[str, int]:
        with self.db.read() as conn:
            return {r.status: int(r.n) for r in conn.execute(
                sa.select(verifications.c.status, sa.func.count().label("n")).group_by(verifications.c.status))}

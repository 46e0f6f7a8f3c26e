"""Read models over the stored data: events, devices and their health, clips, alerts, verification agreement.

What the Query servicer answers and what the dashboard shows; nothing here writes."""
from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_svc.domain import (
    Agreement,
    AlertEventRef,
    AlertView,
    ClipView,
    DeviceView,
    EventFilter,
    EventView,
    VerificationView,
    Verified,
)
from cloud_svc.errors import NotFound
from cloud_svc.schema import alert_events, alerts, clips, devices, event_ends, events, top_classes, verifications
from cloud_svc.store.base import Database, chunks

DEGRADED_FIGURES = ("outbox_dropped", "ring_overruns", "loop_errors")


class QueryStore:
    """Queries; a device whose last heartbeat is older than `stale_after_s` is listed as stale."""

    def __init__(self, db: Database, *, stale_after_s: float = 120.0):
        self.db = db
        self.stale_after_ns = int(stale_after_s * 1e9)

    def list_events(self, f: EventFilter) -> list[EventView]:
        e, x, c, v = events, event_ends, clips, verifications
        q = (sa.select(e, x.c.end_ns, x.c.score.label("final_score"), x.c.clip_dropped,
                       c.c.sha256.label("clip_sha256"), c.c.size.label("clip_size"),
                       c.c.format.label("clip_format"), c.c.sample_rate.label("clip_rate"),
                       c.c.uri.label("clip_uri"), c.c.start_ns.label("clip_start_ns"),
                       c.c.preroll_s.label("clip_preroll_s"), v.c.status.label("v_status"),
                       v.c.reason.label("v_reason"), v.c.verifier.label("v_verifier"), v.c.labels.label("v_labels"),
                       v.c.scores.label("v_scores"), v.c.agree.label("v_agree"), v.c.error.label("v_error"))
             .select_from(e.outerjoin(x, x.c.event_pk == e.c.id).outerjoin(c, c.c.event_pk == e.c.id)
                          .outerjoin(v, v.c.event_pk == e.c.id))
             .where(e.c.id > f.after_id).order_by(e.c.id).limit(f.limit))
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
            q = q.where(verified)
        with self.db.read() as conn:
            rows = conn.execute(q).all()
            cls = self._classes(conn, [r.id for r in rows])
        out = []
        for r in rows:
            clip = ClipView(r.clip_format, r.clip_rate, r.clip_sha256, r.clip_size, r.clip_uri, r.clip_start_ns,
                            r.clip_preroll_s) if r.clip_sha256 else None
            ver = VerificationView(r.v_status, r.v_reason, r.v_verifier, list(r.v_labels or []),
                                   dict(r.v_scores or {}), r.v_agree, r.v_error) if r.v_status else None
            score = r.final_score if r.final_score is not None else r.score
            out.append(EventView(r.id, r.device_id, r.seq, r.event_id, r.label, r.start_ns, r.end_ns, score,
                                 cls.get(r.id, []), r.lat, r.lon, r.backend, r.model_sha256, r.received_ns, clip,
                                 r.clip_dropped, ver))
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
        counts = sa.select(events.c.device_id, sa.func.count().label("n")).group_by(events.c.device_id).subquery()
        q = sa.select(devices, counts.c.n).outerjoin(counts, counts.c.device_id == devices.c.id).order_by(devices.c.id)
        now = time.time_ns()
        with self.db.read() as conn:
            rows = conn.execute(q).all()
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
                                  int(r.n or 0)))
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
                                events.c.label)
                      .join(events, events.c.id == alert_events.c.event_pk)
                      .where(alert_events.c.alert_id.in_(part)).order_by(events.c.start_ns, events.c.id))
                for r in conn.execute(lq):
                    links[r.alert_id].append(AlertEventRef(r.device_id, r.seq, r.event_id, r.label))
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

"""The repository: the only code that opens DB connections; idempotent ingest, queries, job claiming."""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import secrets
import threading
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloud_svc import db
from cloud_svc.domain import (Agreement, AlertEventRef, AlertIn, AlertView, BatchIn, ClipView, CommitResult,
                              DeviceView, EventFilter, EventIn, EventView, HeartbeatIn, RecordIn, Verified,
                              VerificationView, VerifyJob, VerifyResult)
from cloud_svc.errors import AlreadyExists, NotFound, StorageUnavailable, Unauthenticated
from cloud_svc.fleet import FleetStore
from cloud_svc.schema import alert_events, alerts, clips, devices, event_ends, events, top_classes, verifications
from cloud_svc.sqlbulk import BulkWriter
from cloud_svc.store.base import Database

log = logging.getLogger("cloud_svc.repository")

TOKEN_BYTES = 32          # 256 random bits: a plain sha256 of the token is a safe thing to store
TOKEN_PREFIX = "ert_"
IN_CHUNK = 1000           # ids per IN (...) list
DEGRADED_FIGURES = ("outbox_dropped", "ring_overruns", "loop_errors")
EVENT_COLUMNS = ("device_id", "seq", "event_id", "label", "start_ns", "score", "lat", "lon", "backend",
                 "model_sha256", "inference_ms", "created_ns", "received_ns")
PK_CACHE_SIZE = 200_000  # (device_id, event_id) -> pk pairs kept per process: some tens of MB at most
END_COLUMNS = ("event_pk", "seq", "end_ns", "score", "embedding_f16", "clip_dropped", "created_ns", "received_ns")
_quote = json.encoder.encode_basestring  # C: a JSON string literal


def _json(classes: list[tuple[str, float]]) -> str:
    """[[name, score], ...] as compact JSON, by hand: several times faster than json.dumps for this shape."""
    return "[" + ",".join(f"[{_quote(n)},{float(s)!r}]" for n, s in classes) + "]"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def sampled(event_id: str, rate: float) -> bool:
    """The random verification sample, decided by the event's uuid so that replays decide the same."""
    if rate <= 0.0:
        return False
    try:
        return int(event_id[:8], 16) / float(1 << 32) < rate
    except ValueError:
        return False


def _chunks(seq: Sequence, n: int = IN_CHUNK) -> Iterator[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


@dataclass(frozen=True)
class CommitOutcome:
    results: list[CommitResult]
    alerts: int  # device alerts stored (Subscribe listeners are woken when > 0)


class Repository:
    """Thread-safe (one engine, a connection per call). Transient DB failures surface as StorageUnavailable."""

    def __init__(self, engine: Engine, *, distress_labels: Iterable[str] = (), sample_rate: float = 0.0,
                 stale_after_s: float = 120.0, clip_uri: Optional[Callable[[str], str]] = None):
        self.engine = engine
        self.clip_uri = clip_uri  # sha256 -> where the clip store keeps it
        self.sqlite = db.is_sqlite(engine)
        self.distress_labels = frozenset(distress_labels)
        self.sample_rate = sample_rate
        self.stale_after_ns = int(stale_after_s * 1e9)
        self._ignore = "OR IGNORE" if self.sqlite else "IGNORE"
        self._bulk = BulkWriter(engine.dialect)
        self._pk_cache: dict[tuple[str, str], int] = {}
        self._pk_lock = threading.Lock()
        self.fleet = FleetStore(Database(engine))

    @classmethod
    def open(cls, url: str, **kw) -> "Repository":
        return cls(db.make_engine(url), **kw)

    def close(self) -> None:
        self.engine.dispose()

    def upgrade(self) -> str:
        return db.upgrade(self.engine)

    # ------------------------------------------------------------------------------------------ plumbing
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction; on SQLite it takes the write lock at BEGIN (IMMEDIATE)."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(sqlite_immediate=True)
                with conn.begin():
                    yield conn
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise StorageUnavailable(f"database error: {getattr(exc, 'orig', exc)}") from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                with conn.begin():
                    yield conn
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise StorageUnavailable(f"database error: {getattr(exc, 'orig', exc)}") from exc

    def _insert_ignore(self, table: sa.Table):
        return table.insert().prefix_with(self._ignore)

    def ping(self) -> None:
        with self._read() as conn:
            conn.execute(sa.text("SELECT 1"))

    # ------------------------------------------------------------------------------------------ devices
    def add_device(self, device_id: str) -> str:
        """Register a device and return its new token (only the token's hash is stored)."""
        token = new_token()
        now = time.time_ns()
        with self._write() as conn:
            if conn.execute(sa.select(devices.c.id).where(devices.c.id == device_id)).first() is not None:
                raise AlreadyExists(f"device {device_id!r} exists; use `devices rotate {device_id}` for a new token")
            conn.execute(devices.insert().values(id=device_id, token_hash=hash_token(token), token_issued_ns=now,
                                                 created_ns=now, acked_seq=0))
        return token

    def add_devices(self, device_ids: Sequence[str]) -> dict[str, str]:
        """Bulk registration (fleet provisioning, benchmarks): id -> token."""
        now = time.time_ns()
        tokens = {d: new_token() for d in device_ids}
        with self._write() as conn:
            conn.execute(devices.insert(), [{"id": d, "token_hash": hash_token(t), "token_issued_ns": now,
                                             "created_ns": now, "acked_seq": 0} for d, t in tokens.items()])
        return tokens

    def rotate_token(self, device_id: str) -> str:
        """Issue a new token; the old one stops working at once. A revoked device is reinstated."""
        token = new_token()
        with self._write() as conn:
            n = conn.execute(devices.update().where(devices.c.id == device_id).values(
                token_hash=hash_token(token), token_issued_ns=time.time_ns(), revoked_ns=None)).rowcount
        if not n:
            raise NotFound(f"no device {device_id!r}")
        return token

    def revoke_device(self, device_id: str) -> None:
        with self._write() as conn:
            n = conn.execute(devices.update().where(devices.c.id == device_id).values(
                revoked_ns=time.time_ns(), token_hash=None)).rowcount
        if not n:
            raise NotFound(f"no device {device_id!r}")

    def authenticate(self, token: str) -> str:
        """The device a bearer token belongs to; Unauthenticated for unknown tokens and revoked devices."""
        if not token:
            raise Unauthenticated("missing bearer token")
        with self._read() as conn:
            row = conn.execute(sa.select(devices.c.id, devices.c.revoked_ns).where(
                devices.c.token_hash == hash_token(token))).first()
        if row is None:
            raise Unauthenticated("unknown or revoked token")
        if row.revoked_ns is not None:
            raise Unauthenticated(f"device {row.id!r} is revoked")
        return row.id

    def active_tokens(self, token_hashes: Sequence[str]) -> dict[str, str]:
        """token hash -> device, for those of the given hashes that still belong to a device that is not revoked."""
        out: dict[str, str] = {}
        with self._read() as conn:
            for part in _chunks(sorted(token_hashes)):
                for h, d, revoked in self._bulk.select_in(conn, "devices", ("token_hash", "id", "revoked_ns"),
                                                          "token_hash", part):
                    if revoked is None:
                        out[h] = d
        return out

    def watermark(self, device_id: str) -> int:
        with self._read() as conn:
            v = conn.scalar(sa.select(devices.c.acked_seq).where(devices.c.id == device_id))
        if v is None:
            raise NotFound(f"no device {device_id!r}")
        return int(v)

    def hello(self, device_id: str, agent: str = "") -> int:
        """A device connected: its watermark (what it may trim); its agent string is noted when it changed."""
        with self._read() as conn:
            row = conn.execute(sa.select(devices.c.acked_seq, devices.c.agent).where(devices.c.id == device_id)).first()
        if row is None:
            raise NotFound(f"no device {device_id!r}")
        if agent and agent[:128] != row.agent:
            with self._write() as conn:
                conn.execute(devices.update().where(devices.c.id == device_id).values(agent=agent[:128]))
        return int(row.acked_seq)

    # ------------------------------------------------------------------------------------------ ingest
    def commit(self, batches: Sequence[BatchIn], heartbeats: Sequence[HeartbeatIn] = ()) -> CommitOutcome:
        """Store a group of batches (from any devices) in one transaction and return each batch's watermark.

        Per device: records at or below the stored watermark are replays and skipped; the watermark then
        advances over every seq that is stored now or lies below the batch's low_water (dropped on the
        edge). Every row is inserted with its natural key and duplicates are ignored, so anything that still
        slips through is a no-op; nothing on this path is ever updated but the device rows.
        """
        now = time.time_ns()
        with self._write() as conn:
            ids = sorted({b.device_id for b in batches} | {h.device_id for h in heartbeats})
            marks: dict[str, int] = {}
            for part in _chunks(ids):  # in id order, so that concurrent committers cannot deadlock
                marks.update((d, int(m)) for d, m in self._bulk.select_in(conn, "devices", ("id", "acked_seq"), "id",
                                                                          part, for_update=True))
            recs: list[tuple[str, RecordIn]] = []
            alert_recs, reject_rows = [], []
            results: list[CommitResult] = []
            positions: dict[str, tuple[float, float]] = {}
            before = dict(marks)
            for b in batches:
                if b.device_id not in marks:  # deleted while connected: nothing to attach records to
                    results.append(CommitResult(0, 0, len(b.records)))
                    continue
                w = marks[b.device_id]
                settled = max(w, b.low_water - 1)
                stored = dup = 0
                for r in b.records:
                    if r.seq <= w:
                        dup += 1
                        continue
                    if r.seq <= settled + 1:
                        settled = max(settled, r.seq)
                    stored += 1
                    p = r.payload
                    if r.kind in ("event", "event_end"):
                        recs.append((b.device_id, r))
                    elif r.kind == "alert":
                        alert_recs.append((b.device_id, r.seq, p))
                    elif r.kind == "reject":
                        reject_rows.append((b.device_id, r.seq, p.field[:256], p.reason[:512], now))
                    if isinstance(p, (EventIn, AlertIn)) and p.lat is not None and p.lon is not None:
                        positions[b.device_id] = (p.lat, p.lon)
                marks[b.device_id] = settled
                results.append(CommitResult(settled, stored, dup))
            learned: dict[tuple[str, str], int] = {}
            if recs:
                learned = self._events(conn, recs, now)
            n_alerts = self._device_alerts(conn, alert_recs, now) if alert_recs else 0
            self._bulk.insert(conn, "rejects", ("device_id", "seq", "field", "reason", "received_ns"), reject_rows,
                              ignore=True)
            changed = {d: m for d, m in marks.items() if m != before[d]}
            self._bulk.update_by_key(conn, "devices", "id", {
                "acked_seq": changed, "lat": {d: p[0] for d, p in positions.items()},
                "lon": {d: p[1] for d, p in positions.items()}})
            for h in heartbeats:
                if h.device_id in marks:
                    conn.execute(devices.update().where(devices.c.id == h.device_id).values(
                        last_heartbeat_ns=now, health={"figures": h.figures, "info": h.info,
                                                       "outbox_depth": h.outbox_depth,
                                                       "outbox_dropped": h.outbox_dropped, "sent_ns": h.sent_ns}))
        self._remember_pks(learned)  # only now: a rolled-back transaction's pks never existed
        return CommitOutcome(results, n_alerts)

    def _remember_pks(self, learned: dict[tuple[str, str], int]) -> None:
        """Keep committed (device_id, event_id) -> pk pairs (never changed once stored), so an event's end,
        which usually comes to the same server seconds after its start, needs no lookup. Bounded, oldest out."""
        if not learned:
            return
        with self._pk_lock:
            cache = self._pk_cache
            cache.update(learned)
            excess = len(cache) - PK_CACHE_SIZE
            if excess > 0:
                for key in list(itertools.islice(cache, excess)):
                    del cache[key]

    def _events(self, conn: Connection, recs: list[tuple[str, RecordIn]], now: int) -> dict[tuple[str, str], int]:
        """Event starts -> events; ends -> event_ends (creating the event when its start never came);
        top classes, clips and verification jobs beside them. Returns the event pks this call learned from the
        database, for the cache once the transaction commits."""
        bulk = self._bulk
        new = bulk.insert(conn, "events", EVENT_COLUMNS,
                          [self._event_row(d, r, now) for d, r in recs if r.kind == "event"], ignore=True,
                          returning=("id", "device_id", "event_id"))
        pks = {(d, e): pk for pk, d, e in new}  # rows this statement inserted (MariaDB; MySQL, SQLite: none)
        fresh = dict(pks)
        unknown = set()
        for d, r in recs:  # ends of events stored by earlier commits: their pks are usually remembered
            key = (d, r.payload.event_id)
            if key not in pks:
                pk = self._pk_cache.get(key)
                if pk is None:
                    unknown.add(r.payload.event_id)
                else:
                    pks[key] = pk

        def look_up(event_ids: set[str]) -> None:
            found = self._event_pks(conn, sorted(event_ids))
            pks.update(found)
            fresh.update(found)

        if unknown:
            look_up(unknown)

        orphans = [(d, r) for d, r in recs if r.kind == "event_end" and (d, r.payload.event_id) not in pks]
        if orphans:
            bulk.insert(conn, "events", EVENT_COLUMNS, [self._event_row(d, r, now) for d, r in orphans], ignore=True)
            look_up({r.payload.event_id for _, r in orphans})
        end_rows, class_rows, clip_rows, jobs = [], [], [], []
        for d, r in recs:
            e: EventIn = r.payload
            pk = pks.get((d, e.event_id))
            if pk is None:
                continue
            final = r.kind == "event_end"
            class_rows.append((pk, final, _json(e.classes)))
            if not final:
                continue
            end_rows.append((pk, r.seq, e.end_ns, e.score, e.embedding, e.clip_dropped, r.created_ns, now))
            if e.clip is not None and e.clip.sha256:
                c = e.clip
                clip_rows.append((pk, c.sha256, c.size, c.format, c.sample_rate, c.start_ns, c.preroll_s,
                                  self._clip_uri(c.sha256), now))
            reason = "distress" if e.label in self.distress_labels else (
                "sample" if sampled(e.event_id, self.sample_rate) else None)
            if reason:
                jobs.append((pk, reason, "pending", 0, now))
        bulk.insert(conn, "event_ends", END_COLUMNS, end_rows, ignore=True)
        bulk.insert(conn, "top_classes", ("event_pk", "final", "classes"), class_rows, ignore=True)
        bulk.insert(conn, "clips", ("event_pk", "sha256", "size", "format", "sample_rate", "start_ns", "preroll_s",
                                    "uri", "created_ns"), clip_rows, ignore=True)
        bulk.insert(conn, "verifications", ("event_pk", "reason", "status", "attempts", "created_ns"), jobs,
                    ignore=True)
        return fresh

    @staticmethod
    def _event_row(device_id: str, r: RecordIn, now: int) -> tuple:
        e: EventIn = r.payload
        return (device_id, r.seq, e.event_id, e.label, e.start_ns, e.score, e.lat, e.lon, e.backend, e.model_sha256,
                e.inference_ms, r.created_ns, now)

    def _event_pks(self, conn: Connection, event_ids: list[str]) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for part in _chunks(event_ids):
            for pk, device_id, event_id in self._bulk.select_in(conn, "events", ("id", "device_id", "event_id"),
                                                                "event_id", part):
                out[(device_id, event_id)] = pk
        return out

    def _clip_uri(self, sha256: str) -> str:
        return self.clip_uri(sha256) if self.clip_uri else f"sha256:{sha256}"

    def _device_alerts(self, conn: Connection, recs: list, now: int) -> int:
        n = 0
        for device_id, seq, a in recs:
            res = conn.execute(self._insert_ignore(alerts).values(
                kind="device", rule=a.rule, label=None, labels=a.labels, device_id=device_id, seq=seq,
                start_ns=a.start_ns, end_ns=a.end_ns, lat=a.lat, lon=a.lon, device_count=1, event_ids=a.event_ids,
                created_ns=now))
            if not res.rowcount:
                continue
            n += 1
            alert_id = res.inserted_primary_key[0] if res.inserted_primary_key else None
            if alert_id is None:
                alert_id = conn.scalar(sa.select(alerts.c.id).where(alerts.c.device_id == device_id,
                                                                    alerts.c.seq == seq))
            if a.event_ids:
                pks = conn.scalars(sa.select(events.c.id).where(events.c.event_id.in_(a.event_ids),
                                                                events.c.device_id == device_id)).all()
                if pks:
                    conn.execute(self._insert_ignore(alert_events), [{"alert_id": alert_id, "event_pk": pk}
                                                                     for pk in pks])
        return n

    # ------------------------------------------------------------------------------------------ queries
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
        with self._read() as conn:
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
        for part in _chunks(pks):
            for r in conn.execute(sa.select(top_classes).where(top_classes.c.event_pk.in_(part))):
                if r.event_pk not in out or r.final:
                    out[r.event_pk] = (r.final, [(str(n), float(sc)) for n, sc in json.loads(r.classes)])
        return {pk: v[1] for pk, v in out.items()}

    def count_events(self, device_id: Optional[str] = None) -> int:
        q = sa.select(sa.func.count()).select_from(events)
        if device_id:
            q = q.where(events.c.device_id == device_id)
        with self._read() as conn:
            return int(conn.scalar(q))

    def get_clip(self, device_id: str, *, seq: Optional[int] = None, event_id: Optional[str] = None) -> ClipView:
        q = sa.select(clips).join(events, events.c.id == clips.c.event_pk).where(events.c.device_id == device_id)
        q = q.where(events.c.seq == seq) if event_id is None else q.where(events.c.event_id == event_id)
        with self._read() as conn:
            r = conn.execute(q).first()
        if r is None:
            raise NotFound(f"no clip for device {device_id!r} event {event_id or seq}")
        return ClipView(r.format, r.sample_rate, r.sha256, r.size, r.uri, r.start_ns, r.preroll_s)

    def list_devices(self) -> list[DeviceView]:
        counts = sa.select(events.c.device_id, sa.func.count().label("n")).group_by(events.c.device_id).subquery()
        q = sa.select(devices, counts.c.n).outerjoin(counts, counts.c.device_id == devices.c.id).order_by(devices.c.id)
        now = time.time_ns()
        with self._read() as conn:
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
        with self._read() as conn:
            rows = conn.execute(q).all()
            links: dict[int, list[AlertEventRef]] = defaultdict(list)
            for part in _chunks([r.id for r in rows]):
                lq = (sa.select(alert_events.c.alert_id, events.c.device_id, events.c.seq, events.c.event_id,
                                events.c.label)
                      .join(events, events.c.id == alert_events.c.event_pk)
                      .where(alert_events.c.alert_id.in_(part)).order_by(events.c.start_ns, events.c.id))
                for r in conn.execute(lq):
                    links[r.alert_id].append(AlertEventRef(r.device_id, r.seq, r.event_id, r.label))
        return [AlertView(r.id, r.kind, r.rule, list(r.labels or []), r.device_id, r.start_ns, r.end_ns, r.lat, r.lon,
                          r.device_count, r.created_ns, links.get(r.id, [])) for r in rows]

    def last_alert_id(self) -> int:
        with self._read() as conn:
            return int(conn.scalar(sa.select(sa.func.coalesce(sa.func.max(alerts.c.id), 0))))

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
        with self._read() as conn:
            return [Agreement(r.label, int(r.n), int(r.agreed or 0)) for r in conn.execute(q)]

    # ------------------------------------------------------------------------------------------ verification
    def claim_jobs(self, worker: str, n: int, lease_s: float, max_attempts: int) -> list[VerifyJob]:
        """Claim up to n jobs: FOR UPDATE SKIP LOCKED on MySQL; on SQLite the IMMEDIATE transaction serializes
        claimers, which is the same guarantee. Jobs whose claim expired (a worker died) are claimed again."""
        v = verifications
        now = time.time_ns()
        stale = now - int(lease_s * 1e9)
        token = uuid.uuid4().hex
        with self._write() as conn:
            conn.execute(v.update().where(v.c.status == "running", v.c.claimed_ns < stale,
                                          v.c.attempts >= max_attempts).values(
                status="failed", error="gave up: claimed too often without finishing", done_ns=now))
            q = (sa.select(v.c.id).where(sa.or_(v.c.status == "pending",
                                                sa.and_(v.c.status == "running", v.c.claimed_ns < stale)))
                 .order_by(v.c.id).limit(n).with_for_update(skip_locked=True))
            ids = conn.scalars(q).all()
            if not ids:
                return []
            conn.execute(v.update().where(v.c.id.in_(ids)).values(
                status="running", claim_token=token, claimed_by=worker[:128], claimed_ns=now,
                attempts=v.c.attempts + 1))
            rows = conn.execute(
                sa.select(v.c.id, v.c.event_pk, v.c.reason, v.c.attempts, events.c.device_id, events.c.event_id,
                          events.c.label, clips.c.format, clips.c.sample_rate, clips.c.sha256, clips.c.size,
                          clips.c.uri, clips.c.start_ns, clips.c.preroll_s)
                .join(events, events.c.id == v.c.event_pk).outerjoin(clips, clips.c.event_pk == v.c.event_pk)
                .where(v.c.claim_token == token).order_by(v.c.id)).all()
        return [VerifyJob(r.id, r.event_pk, r.device_id, r.event_id, r.label, r.reason, r.attempts,
                          ClipView(r.format, r.sample_rate, r.sha256, r.size, r.uri, r.start_ns, r.preroll_s)
                          if r.sha256 else None) for r in rows]

    def finish_job(self, job: VerifyJob, result: VerifyResult) -> None:
        v = verifications
        status = "done" if result.agree is not None else "skipped"
        with self._write() as conn:
            conn.execute(v.update().where(v.c.id == job.id, v.c.status == "running").values(
                status=status, verifier=result.verifier, labels=result.labels,
                scores={k: round(float(s), 5) for k, s in result.scores.items()}, agree=result.agree,
                error=(result.note or None) and result.note[:512], done_ns=time.time_ns(), claim_token=None))

    def fail_job(self, job: VerifyJob, error: str, max_attempts: int) -> None:
        v = verifications
        status = "failed" if job.attempts >= max_attempts else "pending"
        with self._write() as conn:
            conn.execute(v.update().where(v.c.id == job.id, v.c.status == "running").values(
                status=status, error=error[:512], claim_token=None,
                done_ns=time.time_ns() if status == "failed" else None))

    def verification_counts(self) -> dict[str, int]:
        with self._read() as conn:
            return {r.status: int(r.n) for r in conn.execute(
                sa.select(verifications.c.status, sa.func.count().label("n")).group_by(verifications.c.status))}
